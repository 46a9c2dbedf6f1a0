"""Top singular vectors of an operator known only by products: block Krylov with restarts.

``krylov_svd(jmv, jtmv, dim, k)`` finds the top-k right singular vectors of J from
row-batched products ``J V`` and ``J^T W`` (J^T J is never formed). It is a block
Davidson / thick-restart Lanczos method on J^T J:

- the basis Q starts from k + 2 vectors (a warm start, or random) and grows by a block
  of p vectors per iteration (p = 1 by default): the eigen-residuals
  ``J^T J y - s^2 y`` of the Ritz vectors not yet accurate (the block is filled with
  the residuals of the next Ritz vectors), orthogonalised against Q. Without restarts
  this spans the same block Krylov space as block Lanczos, so the top of the spectrum
  converges at Lanczos' rate (set by the square root of the relative gap), where plain
  subspace iteration converges at the ratio of the singular values;
- Rayleigh-Ritz on the whole basis every iteration, from the J-images of the basis
  (``(JQ)(JQ)^T``: symmetric and positive semi-definite in floating point);
- when the basis reaches its size cap (set from the memory it may take), it restarts
  from its best ``k + p`` Ritz vectors, whose products are linear combinations of the
  stored ones (no product is repeated).

**What the result guarantees.** For each Ritz pair (y, s^2) the residual r bounds the
angle to the true singular vector by ``sin angle <= |r| / gap`` (Davis-Kahan), gap being
the distance from s^2 to the rest of the spectrum (estimated by the other Ritz values).
Singular values closer than ``equal_rel`` (relative) are a *cluster*: the individual
vectors inside it are not determined by J to any useful accuracy (any rotation inside
the cluster changes the image equally), so the bound is given for the subspace the
cluster spans (``|R_C|_F / gap_C``). Iteration stops when the residual is at most
``tol`` (relative to s_1^2), or when every direction's angle bound (or its cluster's) is
at most ``angle_tol`` radians, whichever comes first; :class:`KrylovSVD` reports both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from ...core.progress import CancelToken, check


@dataclass
class KrylovSVD:
    vectors: torch.Tensor  # (D, k) float64, orthonormal right singular vectors
    values: torch.Tensor  # (k,) float64, singular values, descending
    iterations: int
    products: int  # J^T J products (one per vector)
    residual: float  # max over the k of ||J^T J v - s^2 v|| / s_1^2
    converged: bool
    basis: torch.Tensor  # (D, q) the best Ritz vectors (a warm start for a nearby operator)
    angles: List[float] = field(default_factory=list)  # per direction: bound on its angle (radians)
    clusters: List[Tuple[int, ...]] = field(default_factory=list)  # groups of nearly equal values
    stopped_by: str = ""  # "residual", "angle", "max_iter" or "zero"

    def accuracy_text(self) -> str:
        """What the reached accuracy means for the directions, in one line."""
        parts = []
        for c in self.clusters:
            a = math.degrees(self.angles[c[0]])
            if len(c) == 1:
                parts.append(f"J {c[0]} within {_deg(a)}")
            else:
                names = ", ".join(str(j) for j in c if j < len(self.values))
                extra = sum(1 for j in c if j >= len(self.values))
                more = f" and {extra} not kept" if extra else ""
                parts.append(f"J {names}{more}: nearly equal singular values, their span within {_deg(a)}"
                             " (single vectors in it are not determined)")
        return f"residual {self.residual:.1e}; " + "; ".join(parts)


def _deg(a: float) -> str:
    if not math.isfinite(a) or a >= 90:
        return "an unknown angle"
    return f"{a:.2g}°" if a >= 0.01 else "0.01°"


def _orthogonalise(W: torch.Tensor, Q: Optional[torch.Tensor], drop: float = 1e-8) -> torch.Tensor:
    """Columns of W made orthonormal to Q and to each other (twice, classical Gram-Schmidt);
    columns that vanish against Q are dropped."""
    norms = W.norm(dim=0).clamp(min=1e-300)
    W = W / norms
    for _ in range(2):
        if Q is not None and Q.shape[1]:
            W = W - Q @ (Q.T @ W)
    keep = W.norm(dim=0) > drop
    W = W[:, keep]
    if W.shape[1] == 0:
        return W
    U, s, _ = torch.linalg.svd(W, full_matrices=False)
    U = U[:, s > drop * max(float(s[0]), 1e-300)]
    if Q is not None and Q.shape[1]:
        U = U - Q @ (Q.T @ U)
        U = torch.linalg.qr(U)[0]
    return U


def _clusters(lam: torch.Tensor, k: int, equal_rel: float) -> List[Tuple[int, ...]]:
    """Runs of nearly equal singular values that touch the top k (may reach past k)."""
    s = lam.clamp(min=0).sqrt()
    out: List[Tuple[int, ...]] = []
    j = 0
    while j < k:
        grp = [j]
        while grp[-1] + 1 < len(s) and s[grp[-1]] - s[grp[-1] + 1] <= equal_rel * s[grp[-1]]:
            grp.append(grp[-1] + 1)
        out.append(tuple(grp))
        j = grp[-1] + 1
    return out


def angle_bounds(lam: torch.Tensor, rnorm: torch.Tensor, k: int, equal_rel: float
                 ) -> Tuple[List[float], List[Tuple[int, ...]]]:
    """Per direction (of the top k) a bound on its angle, or its cluster's subspace angle.

    ``lam`` are all Ritz values (descending), ``rnorm`` their residual norms (absolute).
    The gap of a group is the distance from its Ritz values to the nearest Ritz value
    outside it, less that value's own residual (an eigenvalue lies within it).
    """
    clusters = _clusters(lam, k, equal_rel)
    bounds = [math.inf] * k
    n = len(lam)
    for c in clusters:
        inside = set(c)
        gap = math.inf
        for i in range(n):
            if i in inside:
                continue
            d = min(abs(float(lam[j] - lam[i])) for j in c) - float(rnorm[i])
            gap = min(gap, d)
        if len(c) == n:  # nothing outside the basis to compare with
            gap = float(lam[c[-1]]) if float(lam[c[-1]]) > 0 else math.inf
        rc = float(rnorm[list(c)].pow(2).sum().sqrt())
        sin = rc / gap if gap > 0 else math.inf
        a = math.asin(sin) if sin < 1 else math.pi / 2
        for j in c:
            if j < k:
                bounds[j] = a
    return bounds, clusters


def krylov_svd(jmv: Callable, jtmv: Callable, dim: int, k: int, block: int = 1, start: Optional[int] = None,
               tol: float = 1e-4, angle_tol: Optional[float] = None, equal_rel: float = 1e-3,
               max_iter: int = 100, init: Optional[torch.Tensor] = None,
               max_basis: Optional[int] = None, memory_bytes: float = 2e9,
               generator: Optional[torch.Generator] = None,
               cancel: Optional[CancelToken] = None,
               on_iteration: Optional[Callable[[int, float], None]] = None) -> KrylovSVD:
    """Top-k right singular vectors of J from ``jmv`` ((p, dim) -> (p, M)) and ``jtmv``.

    The basis starts from ``start`` vectors (default k + 2: ``init``, e.g. the previous
    step's ``basis``, filled up with random ones) and grows by ``block`` vectors per batch
    of products (one: Lanczos' own order, the fewest products when the top of the spectrum
    is dense; more: fewer, larger batches); ``max_iter`` batches at most. ``max_basis`` (default: what
    ``memory_bytes`` allows for the basis and its products, at most 200 vectors).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if k > dim:
        raise ValueError(f"k = {k} is more than the {dim} dimensions of h")
    if not tol > 0:
        raise ValueError("tol must be > 0")
    p = max(1, min(int(block), dim))
    if max_basis is None:
        max_basis = int(min(200, max(memory_bytes // (16 * dim), 0)))
    max_basis = max(int(max_basis), k + 2 + 2 * p)
    max_basis = min(max_basis, dim)

    def product(V):  # V (dim, q) -> (J V as rows (q, M), J^T J V (dim, q))
        JV = jmv(V.T).double().cpu()
        if not torch.isfinite(JV).all():
            raise FloatingPointError("the Jacobian products are not finite")
        return JV, jtmv(JV).double().cpu().T

    q = min(dim, max(k, p, int(start) if start is not None else k + 2))
    if init is not None:
        V = init.double().cpu().reshape(dim, -1)[:, :q]
    else:
        V = torch.empty(dim, 0, dtype=torch.float64)
    if V.shape[1] < q:
        V = torch.cat([V, torch.randn(dim, q - V.shape[1], generator=generator, dtype=torch.float64)], 1)
    Q = _orthogonalise(V, None)
    check(cancel)
    JQ, AQ = product(Q)
    products = Q.shape[1]
    it = 0
    while True:
        it += 1
        T = JQ @ JQ.T
        lam, S = torch.linalg.eigh((T + T.T) / 2)
        lam, S = lam.flip(0).clamp(min=0), S.flip(1)
        if float(lam[0]) <= 1e-300:  # J is zero
            Y = Q @ S
            return KrylovSVD(Y[:, :k].contiguous(), torch.zeros(k, dtype=torch.float64), it, products,
                             0.0, True, Y[:, :q], [0.0] * k, [(j,) for j in range(k)], "zero")
        Y = Q @ S
        AY = AQ @ S
        R = AY - Y * lam
        rn = R.norm(dim=0)
        res = rn / lam[0]
        residual = float(res[:k].max())
        angles, clusters = angle_bounds(lam, rn, k, equal_rel)
        if on_iteration is not None:
            on_iteration(it, residual)
        stopped = ("residual" if residual <= tol else
                   "angle" if angle_tol is not None and max(angles) <= angle_tol else "")
        if stopped or it >= max_iter or Q.shape[1] >= dim:
            keep = min(Y.shape[1], max(q, k + p))
            return KrylovSVD(Y[:, :k].contiguous(), lam[:k].sqrt(), it, products, residual,
                             bool(stopped), Y[:, :keep].contiguous(), angles, clusters,
                             stopped or "max_iter")
        check(cancel)
        # the next block: residuals of the Ritz vectors that are not accurate yet, in order
        todo = [j for j in range(k) if res[j] > tol]
        rest = [j for j in range(k, R.shape[1]) if j not in todo]
        sel = (todo + rest)[:p]
        if Q.shape[1] + len(sel) > max_basis:  # thick restart from the best Ritz vectors
            keep = min(Y.shape[1], max(q, k + p, max_basis // 2))
            Q, AQ, JQ = Y[:, :keep].contiguous(), AY[:, :keep].contiguous(), S[:, :keep].T @ JQ
        W = _orthogonalise(R[:, sel], Q)
        if W.shape[1] < len(sel):  # the residuals lie in the basis: add fresh directions
            extra = torch.randn(dim, len(sel) - W.shape[1], generator=generator, dtype=torch.float64)
            W = torch.cat([W, _orthogonalise(extra, torch.cat([Q, W], 1))], 1)
        if W.shape[1] == 0:
            W = _orthogonalise(torch.randn(dim, 1, generator=generator, dtype=torch.float64), Q)
        JW, AW = product(W)
        products += W.shape[1]
        Q = torch.cat([Q, W], 1)
        AQ = torch.cat([AQ, AW], 1)
        JQ = torch.cat([JQ, JW], 0)
