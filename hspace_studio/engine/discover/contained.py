"""Masked edits that stay in the mask: one step's directions with the most change of
eps inside the mask per change outside.

The paper's masked directions (top singular vectors of the mask-restricted
J = d eps_s / d h_s) maximise the change inside the mask and say nothing about the rest
of the image; on a small model they move the whole face. Here the ratio problem of
:mod:`.local` is solved on the unmasked J at one step s, with the mask splitting its
output, and each direction is applied at step s only. Products with J are the
downstream-only JVPs/VJPs of :mod:`.jacobian` (the upstream part of the UNet is cached).

(Measured on the default model by ``hspace-studio evaluate``: the share of the final
image's pixel change inside a 2-px-dilated eye mask is 10% for the paper's masked
directions and 41-51% for these at 0.25-0.1 |h|; mouth 4% and 25-33%. See
``resources/MODEL_CARD.md``.)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

import torch

from ...core.progress import CancelToken, ProgressFn
from ..directions import DirectionSet
from ..model import DiffusionModel
from ..sampler import decode, prepare_scheduler
from ..trajectory import Trajectory
from ..masks import prepare_mask
from .jacobian import DownstreamEps, JacobianOperator
from .local import contained_directions


@dataclass
class ContainedJacobianResult:
    directions: DirectionSet
    step: int
    ratios: List[float]
    inside: List[float]
    outside: List[float]
    iterations: int
    residual: float
    converged: bool
    seconds: float

    def summary(self) -> str:
        share = ", ".join(f"{i * i / max(i * i + o * o, 1e-300):.0%}" for i, o in zip(self.inside, self.outside))
        s = (f"step {self.step}: {self.iterations} iterations, residual {self.residual:.1e}, "
             f"{self.seconds:.1f} s; squared change of eps inside the mask: {share}")
        return s + ("" if self.converged else " (not converged)")


def contained_jacobian_directions(model: DiffusionModel, traj: Trajectory, mask, step: int,
                                  k: int = 1, rho: float = 0.1, tol: float = 1e-3,
                                  max_iter: int = 40, oversample: int = 2, init_seed: int = 0,
                                  progress: Optional[ProgressFn] = None,
                                  cancel: Optional[CancelToken] = None) -> ContainedJacobianResult:
    """k directions at step ``step`` of ``traj`` whose change of eps there stays in ``mask``.

    The set has the trajectory's timesteps and is zero at every step but ``step``.
    """
    t0 = time.perf_counter()
    traj.check_model(model.fingerprint, traj.h_space)
    if mask is None:
        raise ValueError("contained directions need a mask")
    if not 0 <= int(step) < traj.steps:
        raise ValueError(f"step {step} out of range (the trajectory has steps 0..{traj.steps - 1})")
    weights, mask_info = prepare_mask(mask, model)
    if float(weights.sum()) == 0:
        raise ValueError("the mask is empty")
    prepare_scheduler(model, traj.timesteps)
    if traj.xs is None:
        decode(model, traj, None, cancel)

    def on_iteration(it, res):
        if progress is not None:
            progress(min(it, max_iter), max_iter, f"contained directions: iteration {it}, residual {res:.1e}")

    x = traj.xs[step][None]
    with DownstreamEps(model, x, traj.timesteps[step].to(model.device), traj.h_space, None) as fn:
        op = JacobianOperator(fn, fn.h0)
        w = weights.expand(1, *x.shape[1:]).reshape(-1).cpu()
        r = contained_directions(op.jmv, op.jtmv, op.dim, w, k, rho=rho, oversample=oversample, tol=tol,
                                 max_iter=max_iter, generator=torch.Generator().manual_seed(int(init_seed)),
                                 cancel=cancel, on_iteration=on_iteration)
    delta = torch.zeros((k, traj.steps, *op.shape))
    V = r.vectors.T.float().reshape(k, *op.shape)
    for j in range(k):  # sign: the largest entry positive
        if V[j].flatten()[V[j].abs().argmax()] < 0:
            V[j] = -V[j]
    delta[:, step] = V.cpu()
    ratios, inside, outside = ([float(v) for v in t] for t in (r.ratios, r.inside, r.outside))
    params = {"method": "jacobian", "objective": "contained", "k": int(k), "rho": float(rho),
              "tol": float(tol), "max_iter": int(max_iter), "oversample": int(oversample),
              "init_seed": int(init_seed), "step": int(step), "source": dict(traj.origin),
              "steps": traj.steps, "mask": mask_info,
              "inside": inside, "outside": outside,
              "convergence": {"iterations": r.iterations, "residual": float(r.residual),
                              "converged": bool(r.converged)}}
    ds = DirectionSet(delta_h=delta, timesteps=traj.timesteps.clone().long(),
                      fingerprint=model.weights_fingerprint, h_space=traj.h_space, method="jacobian",
                      labels=[f"J {j} (contained, step {step})" for j in range(k)],
                      values=[[v] * traj.steps for v in ratios], params=params)
    return ContainedJacobianResult(directions=ds, step=int(step), ratios=ratios, inside=inside, outside=outside,
                                   iterations=r.iterations, residual=r.residual, converged=r.converged,
                                   seconds=time.perf_counter() - t0)
