"""Mask-contained Jacobian directions: the most change inside a mask per change outside.

The paper's masked directions are the top right singular vectors of ``M J`` (eps
restricted to the mask M). They maximise ``||M J v||`` but say nothing about what
``v`` does outside the mask, and on a small model the strongest in-mask directions
often move the whole image. This objective asks for directions whose change lands in
the mask:

    maximise  ||M J v||^2 / (||(1 - M) J v||^2 + reg ||v||^2)

a symmetric-definite generalized eigenproblem ``A v = lam B v`` with
``A = J^T M^2 J`` and ``B = J^T (1-M)^2 J + reg I``. ``reg`` is ``rho`` times the mean
gain ``||J v||^2`` of a random unit vector, so a direction must change the image at
least as much as a ``rho``-fraction of a typical direction to score.

It is solved by a block LOBPCG-style iteration: the search space ``[V, R, P]``
(current vectors, their residuals, the previous update) is projected with one batch of
JVPs for the new columns (``J S`` is carried linearly), the small pencil is solved
exactly (Cholesky of the projected B), and residuals cost one batch of VJPs. Only
products with J are used, as in :mod:`.jacobian`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ...core.progress import CancelToken, check


@dataclass
class ContainedResult:
    vectors: torch.Tensor  # (D, k) float64, unit vectors, best ratio first
    ratios: torch.Tensor  # (k,) generalized eigenvalues
    inside: torch.Tensor  # (k,) ||M J v||
    outside: torch.Tensor  # (k,) ||(1-M) J v||
    iterations: int
    residual: float
    converged: bool
    reg: float = 0.0  # the regulariser used (rho x the gain of the start vectors)


def _orthonormal(S: torch.Tensor, JS: torch.Tensor, drop: float = 1e-10):
    """An orthonormal basis of the columns of S (D, n), with the same map applied to the
    rows of JS (n, M). Columns are scaled to unit norm first (so small residuals keep
    their direction near convergence) and the Gram orthonormalisation runs twice
    (the second pass restores orthogonality lost to rounding); dependent columns go."""
    for _ in range(2):
        n = S.norm(dim=0)
        ok = n > 1e-300
        S, JS = S[:, ok] / n[ok], JS[ok] / n[ok, None]
        G = S.T @ S
        lam, U = torch.linalg.eigh((G + G.T) / 2)
        keep = lam > drop * float(lam.max())
        T = U[:, keep] / lam[keep].sqrt()
        S, JS = S @ T, T.T @ JS
    return S, JS


def contained_directions(jmv: Callable, jtmv: Callable, dim: int, weights: torch.Tensor, k: int,
                         rho: float = 0.1, oversample: int = 2, tol: float = 1e-3,
                         max_iter: int = 60, generator: Optional[torch.Generator] = None,
                         cancel: Optional[CancelToken] = None,
                         on_iteration: Optional[Callable[[int, float], None]] = None
                         ) -> ContainedResult:
    """Top-k vectors of the pencil (J^T M^2 J, J^T (1-M)^2 J + reg I).

    ``jmv`` maps (p, dim) rows to (p, n_out) rows of the *unmasked* J; ``jtmv`` the
    transpose; ``weights`` (n_out,) in [0, 1] is the mask on the output.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if not rho > 0:
        raise ValueError("rho must be > 0")
    w_in = weights.double().reshape(1, -1)
    w_out = 1.0 - w_in
    p = min(dim, k + max(0, int(oversample)))
    V = torch.linalg.qr(torch.randn(dim, p, generator=generator, dtype=torch.float64))[0]
    JV = jmv(V.T).double().cpu()
    if not torch.isfinite(JV).all():
        raise FloatingPointError("the Jacobian products are not finite")
    typical = float((JV ** 2).sum(1).mean())
    if typical <= 1e-300:  # J is zero: nothing changes anywhere
        z = torch.zeros(k, dtype=torch.float64)
        return ContainedResult(V[:, :k], z, z.clone(), z.clone(), 0, 0.0, True, 0.0)
    reg = rho * typical
    P = JP = None
    R = JR = None
    it = 0
    while True:
        check(cancel)
        it += 1
        blocks = [(X, JX) for X, JX in ((V, JV), (R, JR), (P, JP)) if X is not None]
        S, JS = _orthonormal(torch.cat([b for b, _ in blocks], 1), torch.cat([j for _, j in blocks], 0))
        Ai = JS * w_in
        Bo = JS * w_out
        A = Ai @ Ai.T
        B = Bo @ Bo.T + reg * torch.eye(S.shape[1], dtype=torch.float64)
        L = torch.linalg.cholesky((B + B.T) / 2)
        Li = torch.linalg.inv(L)
        C = Li @ A @ Li.T
        mu, Y = torch.linalg.eigh((C + C.T) / 2)
        mu, Y = mu.flip(0)[:p], Y.flip(1)[:, :p]
        Y = Li.T @ Y  # B-orthonormal coefficients
        Vn = S @ Y
        nrm = Vn.norm(dim=0).clamp(min=1e-300)
        Vn, Y = Vn / nrm, Y / nrm
        JVn = Y.T @ JS
        # the update outside the old span (LOBPCG's P), carried with its J-image
        # (a difference of unit vectors: columns that almost cancel carry only rounding in
        # their J-image, so they are left out rather than normalised up)
        coef = torch.linalg.lstsq(V, Vn).solution
        P, JP = Vn - V @ coef, JVn - coef.T @ JV
        big = P.norm(dim=0) > 1e-6
        P, JP = (P[:, big], JP[big]) if bool(big.any()) else (None, None)
        V, JV, lam = Vn, JVn, mu
        # residuals r_j = A v_j - lam_j B v_j, from one batch of VJPs
        AB = jtmv(torch.cat([JV * w_in ** 2, JV * w_out ** 2], 0)).double().cpu()
        Av, Bv = AB[:p].T, AB[p:].T + reg * V
        Rf = Av - Bv * lam
        res = Rf.norm(dim=0) / (Av.norm(dim=0) + lam.abs() * Bv.norm(dim=0)).clamp(min=1e-300)
        residual = float(res[:k].max())
        if on_iteration is not None:
            on_iteration(it, residual)
        if residual <= tol or it >= max_iter:
            break
        R = Rf
        JR = jmv(R.T).double().cpu()
    inside = (JV[:k] * w_in).norm(dim=1)
    outside = (JV[:k] * w_out).norm(dim=1)
    return ContainedResult(vectors=V[:, :k].contiguous(), ratios=lam[:k].clone(), inside=inside,
                           outside=outside, iterations=it, residual=residual,
                           converged=residual <= tol, reg=reg)
