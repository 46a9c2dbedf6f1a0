"""The streaming accumulators of :mod:`.pca`: exact covariance, exact Gram (rows kept),
and scikit-learn's IncrementalPCA; each takes batches of rows and gives the top components
and their variances (see :mod:`.pca` for when each is used and what it costs)."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

class CovarianceAccumulator:
    """Exact streaming PCA: float64 sum and scatter matrix of the (shifted) rows.

    The scatter matrix is updated in place by BLAS (``dsyrk``, upper triangle), so an
    update needs no D x D temporary.
    """

    solver = "covariance"

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.n = 0
        self.shift: Optional[np.ndarray] = None
        self.s = np.zeros(self.dim)
        self.S = np.zeros((self.dim, self.dim), order="F")

    def update(self, X: np.ndarray) -> None:
        from scipy.linalg.blas import dsyrk

        X = np.asarray(X, dtype=np.float64).reshape(-1, self.dim)
        if X.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = X.mean(0)
        Y = X - self.shift
        self.s += Y.sum(0)
        # S += Y^T Y (upper triangle), in place
        out = dsyrk(1.0, Y, beta=1.0, c=self.S, trans=1, lower=0, overwrite_c=1)
        if out is not self.S:  # pragma: no cover - BLAS made a copy
            self.S = out
        self.n += X.shape[0]

    def result(self, k: int):
        """(components (k, D), explained variance (k,), ratios (k,), mean (D,))."""
        from scipy.linalg.blas import dsyr

        if self.n < 2:
            raise ValueError("PCA needs at least 2 samples")
        mean_shifted = self.s / self.n
        C = dsyr(-float(self.n), mean_shifted, a=self.S, lower=0, overwrite_a=1)  # upper triangle
        C /= self.n - 1
        self.S = None  # C now owns the memory; the accumulator is spent
        total = float(np.trace(C))
        lam, vec = np.linalg.eigh(C, UPLO="U")
        del C
        order = np.argsort(lam)[::-1][:k]
        lam = np.clip(lam[order], 0, None)
        comps = vec[:, order].T.copy()
        del vec
        ratio = lam / total if total > 0 else np.zeros_like(lam)
        return comps, lam, ratio, self.shift + mean_shifted

    def combine(self) -> None:
        """Combine the ranks' statistics (torch.distributed) into rank 0's accumulator
        (the others' are then spent).

        Each rank centres its scatter matrix on its own mean; the sums of those and of
        the between-rank terms ``n_r (mean_r - mean)(mean_r - mean)^T`` are reduced in
        float64 (Chan et al.'s pairwise update), so the result equals one process's to
        float tolerance. Afterwards the accumulator holds all samples (shift = mean).
        """
        from scipy.linalg.blas import dsyr

        from .. import distributed as dist

        # only the upper triangle of S is used (here, in result()), updated in place
        n_r = self.n
        mean_r = np.zeros(self.dim)
        if n_r > 0:
            m_s = self.s / n_r
            self.S = dsyr(-float(n_r), m_s, a=self.S, lower=0, overwrite_a=1)  # centred on mean_r
            mean_r = self.shift + m_s
        tot = dist.all_reduce_sum(np.concatenate([[float(n_r)], n_r * mean_r]))
        n = int(round(tot[0]))
        mean = tot[1:] / max(n, 1)
        if n_r > 0:
            self.S = dsyr(float(n_r), mean_r - mean, a=self.S, lower=0, overwrite_a=1)
        # S is Fortran-ordered: its transpose is a C-contiguous view, summed in place
        self.S = np.asfortranarray(dist.reduce_sum_to_main(np.asfortranarray(self.S).T).T)
        self.s = np.zeros(self.dim)
        self.shift = mean
        self.n = n

    @staticmethod
    def bytes_needed(dim: int) -> int:
        return 8 * dim * dim + 3 * 8 * dim

    @staticmethod
    def work_bytes(dim: int, batch: int) -> int:
        """An update's float64 copies of the batch; the eigendecomposition's copy and vectors."""
        return max(2 * 8 * dim * batch, 2 * 8 * dim * dim)


class GramAccumulator:
    """Exact PCA through the N x N Gram matrix of the rows, which it keeps (float32).

    At the end the centred Gram matrix is accumulated in float64 over column chunks, its
    top eigenvectors give the components (``X^T u / s``), so no float64 copy of the
    rows is made. Costs N x D x 4 bytes: only chosen while N <= D and the rows fit the
    budget (then it is far cheaper than a D x D covariance).
    """

    solver = "gram"
    CHUNK_BYTES = 16 * 2**20

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.rows: List[np.ndarray] = []
        self.n = 0

    def update(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float32).reshape(-1, self.dim)
        self.rows.append(X.copy())
        self.n += X.shape[0]

    @classmethod
    def _chunk(cls, n: int) -> int:
        return max(1, cls.CHUNK_BYTES // (8 * max(1, n)))

    def result(self, k: int):
        if self.n < 2:
            raise ValueError("PCA needs at least 2 samples")
        X = np.concatenate(self.rows)  # (N, D) float32
        self.rows = []
        n, c = self.n, self._chunk(self.n)
        mean = np.zeros(self.dim)
        G = np.zeros((n, n))
        for j in range(0, self.dim, c):
            Y = X[:, j:j + c].astype(np.float64)
            mean[j:j + c] = Y.mean(0)
            Y -= mean[j:j + c]
            G += Y @ Y.T
        del Y
        total = float(np.trace(G)) / (n - 1)
        lam, U = np.linalg.eigh(G)
        del G
        order = np.argsort(lam)[::-1][:k]
        lam = np.clip(lam[order], 0, None)
        U = U[:, order]
        S = np.sqrt(lam)
        comps = np.zeros((len(order), self.dim))
        for j in range(0, self.dim, c):
            Y = X[:, j:j + c].astype(np.float64) - mean[j:j + c]
            comps[:, j:j + c] = (U.T @ Y)
        del X
        comps /= np.where(S > 0, S, 1.0)[:, None]
        ev = lam / (n - 1)
        ratio = ev / total if total > 0 else np.zeros_like(ev)
        return comps, ev, ratio, mean

    def combine(self) -> None:
        """Rank 0 gets all ranks' rows, in rank order (torch.distributed); the others' are
        then spent."""
        from .. import distributed as dist

        parts = dist.gather_object_to_main(self.rows)
        self.rows = [r for part in parts for r in part] if parts is not None else []
        self.n = sum(r.shape[0] for r in self.rows)

    @staticmethod
    def bytes_needed(dim: int, n: int) -> int:
        return 4 * dim * n

    @classmethod
    def work_bytes(cls, dim: int, n: int, k: int = 0) -> int:
        """The concatenated rows, the Gram matrix and its eigenvectors, one float64 chunk
        (and its product), the components."""
        return 4 * dim * n + 8 * 3 * n * n + 2 * 8 * n * cls._chunk(n) + 8 * k * dim + 8 * dim


class IncrementalAccumulator:
    """scikit-learn ``IncrementalPCA`` fed from a float32 buffer of >= ``flush_rows`` rows."""

    solver = "incremental"

    def __init__(self, dim: int, kept: int, flush_rows: int):
        from sklearn.decomposition import IncrementalPCA

        self.dim = int(dim)
        self.kept = int(kept)
        self.flush_rows = max(int(flush_rows), self.kept)
        self.ipca = IncrementalPCA(n_components=self.kept, copy=False)
        self.buf: List[np.ndarray] = []
        self.nbuf = 0
        self.n = 0

    def update(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float32).reshape(-1, self.dim)
        self.buf.append(X.copy())
        self.nbuf += X.shape[0]
        self.n += X.shape[0]
        if self.nbuf >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.buf:
            return
        X = np.concatenate(self.buf, dtype=np.float64)
        self.buf, self.nbuf = [], 0
        self.ipca.partial_fit(X)
        del X
        # sklearn keeps components_ as a view of the whole SVD factor: keep only the rows
        self.ipca.components_ = np.ascontiguousarray(self.ipca.components_).copy()

    def result(self, k: int):
        if self.n < 2:
            raise ValueError("PCA needs at least 2 samples")
        if not hasattr(self.ipca, "components_") or self.ipca.components_ is None:
            if self.nbuf < self.kept:  # fewer samples than kept components: shrink
                from sklearn.decomposition import IncrementalPCA

                self.ipca = IncrementalPCA(n_components=min(self.nbuf, self.dim), copy=False)
        self._flush()
        p = self.ipca
        k = min(k, p.components_.shape[0])
        return (p.components_[:k].copy(), p.explained_variance_[:k].copy(),
                p.explained_variance_ratio_[:k].copy(), p.mean_.copy())

    @staticmethod
    def bytes_needed(dim: int, kept: int, flush_rows: int, batch: int) -> int:
        """Persistent state: components, mean, variance (float64), the float32 buffer."""
        return 8 * dim * (kept + 4) + 4 * dim * (max(kept, flush_rows) + batch)

    @staticmethod
    def work_bytes(dim: int, kept: int, flush_rows: int, batch: int) -> int:
        """Transient memory of one ``partial_fit``: the float64 batch, the stacked matrix
        and its SVD factors (a few copies), LAPACK's work arrays."""
        rows = max(kept, flush_rows) + batch
        r = rows + kept + 1
        return 8 * dim * (2 * rows + 3 * r) + 8 * (8 * r * r + 4 * r)


# ---------------------------------------------------------------------------- plan
