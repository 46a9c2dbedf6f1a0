"""Image-specific directions: the top right singular vectors of J_t = d eps_t / d h_t.

For one trajectory (a seed, a saved trajectory or an inverted image) and every chosen
step t, the k directions in h-space that change the noise estimate eps_t the most,
optionally with eps restricted to a mask (the paper's image-specific, and masked,
edits). J_t is never formed:

- **downstream only**: the denoiser (:meth:`.denoiser.Denoiser.downstream`) runs once per
  step, caching the outputs of everything upstream of h (a UNet's ``conv_in``, time
  embedding, down blocks and the part of the mid-block before h; a transformer's embedders
  and the blocks up to h); while the step is analysed those modules return their cached
  values and h is injected by the denoiser's hook, so ``eps(h)`` costs only the network
  from h on. No diffusers forward code is copied;
- **a Krylov method** (:mod:`.krylov`: block Davidson / thick-restart Lanczos on J^T J)
  from ``k + oversample`` vectors, growing by ``block`` vectors per iteration (one by
  default: the fewest products on the flat spectra of real networks): ``W = J V`` (batched forward-mode
  JVPs: ``torch.func.vmap`` over ``torch.func.jvp``, the primal shared) and ``Z = J^T W``
  (batched VJPs through one ``torch.func.vjp`` per step whose graph is reused by every
  iteration). It stops when the eigen-residual ``||J^T J y - s^2 y|| / s_1^2`` is below
  ``tol`` or every direction is known to within ``angle_tol`` (a Davis-Kahan bound from
  its residual and the gap to the other singular values; directions with nearly equal
  singular values are reported as the subspace they span). The Ritz vectors of step t
  start the next step (warm start);
- signs are aligned across steps (each step's vector points the same way as the sum of
  the previous steps' vectors; the first step's largest entry is positive).

``eps`` is ``model.predict_eps(output, x, t)``, so v-prediction models work; for a flow
model it is the predicted velocity (``model.jacobian_output``).

Directions are unit vectors per step (``delta_h[k, t]``); ``values`` are the singular
values. ``DirectionSet.steps_delta(k, at_step)`` applies one step's vector at every
step (the paper's way for masked edits). With ``steps_subset`` the set holds only those
steps' timesteps (a trajectory with other steps gets each step's nearest one).

Masks are in image pixels (a PNG path, a numpy array from the GUI's brush or a tensor);
they are fitted to the model's image size like images are, then area-resized to the
resolution of x (the latent resolution for latent models) and used as soft weights on
eps. The recipe stores the mask's SHA-256, its path, coverage and (for binary masks) its
run-length encoding, which :func:`mask_from_rle` turns back into the mask.
"""
from __future__ import annotations

import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch

from ...core.progress import CancelToken, ProgressFn, check
from ..directions import DirectionSet
from ..group_norm_ad import fast_group_norm_ad
from ..masks import mask_from_rle, mask_to_rle, prepare_mask  # noqa: F401 (re-exported)
from ..model import DiffusionModel
from ..sampler import decode, prepare_scheduler
from ..trajectory import Trajectory
from .krylov import krylov_svd



# ------------------------------------------------------------ eps(h), downstream only

class DownstreamEps:
    """``eps_t(h)`` at one step, evaluated only through the network downstream of h
    (:meth:`.denoiser.Denoiser.downstream`).

    Use as a context manager: entering runs the network once on ``x`` (1, C, H, W) at
    timestep ``t`` to cache the upstream outputs and h (``self.h0``, (1, C', H', W'));
    leaving restores the model. Calling it with h of shape (B, C', H', W') returns the
    (masked) eps flattened to (B, M).
    """

    def __init__(self, model: DiffusionModel, x: torch.Tensor, t, h_space: str,
                 mask: Optional[torch.Tensor] = None):
        self.model = model
        self.x = x.to(model.device, torch.float32)
        self.t = t
        self.h_space = h_space
        self.mask = mask
        self.h0: Optional[torch.Tensor] = None
        self._fn = None
        self._stack: Optional[ExitStack] = None

    def __enter__(self) -> "DownstreamEps":
        stack = ExitStack()
        self.h0, self._fn = stack.enter_context(
            self.model.denoiser.downstream(self.model.network_input(self.x, self.t).to(self.model.dtype),
                                           self.t, self.h_space))
        self._stack = stack
        return self

    def __exit__(self, *exc):
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        return False

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        x = self.x if n == 1 else self.x.expand(n, *self.x.shape[1:])
        out = self._fn(h)
        eps = self.model.jacobian_output(out.float(), x, self.t)
        if self.mask is not None:
            eps = eps * self.mask
        return eps.reshape(n, -1)


class JacobianOperator:
    """Batched products with J = d eps / d h at one step: ``J V`` and ``J^T W``.

    Vectors are rows: ``jmv`` maps (p, D) to (p, M) and ``jtmv`` (p, M) to (p, D).
    ``batching="vmap"`` shares one primal between the p vectors (``vmap`` of
    ``jvp``, and ``vmap`` of one ``vjp``'s function); ``"batch"`` runs the network on a
    batch of p copies of h. ``"auto"`` tries vmap and falls back to batch.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], h0: torch.Tensor,
                 batching: str = "auto"):
        if batching not in ("auto", "vmap", "batch"):
            raise ValueError(f"unknown batching '{batching}' (auto, vmap or batch)")
        self.fn = fn
        self.h0 = h0
        self.shape = tuple(h0.shape[1:])
        self.dim = int(np.prod(self.shape))
        self.batching = batching
        self._vjp1 = None
        self._vjpB = {}

    def _jmv_vmap(self, V):
        h0 = self.h0

        def one(v):
            return torch.func.jvp(self.fn, (h0,), (v[None],))[1][0]

        return torch.func.vmap(one)(V)

    def _jtmv_vmap(self, W):
        if self._vjp1 is None:
            _, self._vjp1 = torch.func.vjp(self.fn, self.h0)
        fn = self._vjp1
        return torch.func.vmap(lambda w: fn(w[None])[0][0])(W)

    def _jmv_batch(self, V):
        hB = self.h0.expand(V.shape[0], *self.shape).contiguous()
        return torch.func.jvp(self.fn, (hB,), (V,))[1]

    def _jtmv_batch(self, W):
        p = W.shape[0]
        if p not in self._vjpB:
            self._vjpB = {p: torch.func.vjp(self.fn, self.h0.expand(p, *self.shape).contiguous())[1]}
        return self._vjpB[p](W)[0]

    def _run(self, name, arg):
        if self.batching in ("vmap", "auto"):
            try:
                return getattr(self, f"_{name}_vmap")(arg)
            except (RuntimeError, NotImplementedError):
                if self.batching == "vmap":
                    raise
                self.batching = "batch"  # some layer has no vmap rule
        return getattr(self, f"_{name}_batch")(arg)

    def jmv(self, V: torch.Tensor) -> torch.Tensor:
        V = V.reshape(V.shape[0], *self.shape).to(self.h0.device, self.h0.dtype)
        with fast_group_norm_ad():  # GroupNorm's JVP in three passes (the VJP keeps torch's kernel)
            return self._run("jmv", V).reshape(V.shape[0], -1)

    def jtmv(self, W: torch.Tensor) -> torch.Tensor:
        W = W.to(self.h0.device, torch.float32)
        return self._run("jtmv", W).reshape(W.shape[0], -1)


# ------------------------------------------------------------------------ signs

def align_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip (S, k, D) per-step vectors so each points the way of the previous steps' sum.

    The first step's vector has its largest-magnitude entry positive.
    """
    out = vectors.clone()
    S, K = out.shape[:2]
    for j in range(K):
        v0 = out[0, j]
        if v0[v0.abs().argmax()] < 0:
            out[0, j] = -v0
        ref = out[0, j].clone()
        for s in range(1, S):
            if torch.dot(out[s, j], ref) < 0:
                out[s, j] = -out[s, j]
            ref = ref + out[s, j]
    return out


# ----------------------------------------------------------------------------- driver

@dataclass
class JacobianResult:
    directions: DirectionSet
    singular_values: torch.Tensor  # (S, k)
    step_indices: List[int]
    iterations: List[int]
    residuals: List[float]
    converged: List[bool]
    seconds: float
    notes: List[str] = field(default_factory=list)
    products: List[int] = field(default_factory=list)  # J^T J products (vectors) per step
    accuracy: List[str] = field(default_factory=list)  # per step: what the residual means

    def summary(self) -> str:
        bad = [i for i, c in zip(self.step_indices, self.converged) if not c]
        s = (f"{len(self.step_indices)} step(s), {sum(self.iterations)} iterations "
             f"({sum(self.products)} products), max residual {max(self.residuals):.1e}, "
             f"{self.seconds:.1f} s")
        if bad:
            s += f"; not converged at step(s) {bad}"
        return s


def parse_steps_subset(spec, steps: int) -> List[int]:
    """Step indices from a list like ``[0, 3]``, ``"0,3,5"`` or ``"2-5"`` (inclusive)."""
    if spec is None:
        return list(range(steps))
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    out: List[int] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if m is None:
                raise ValueError(f"bad step list '{item}' (use e.g. 0,3,5 or 2-5)")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            out += list(range(min(lo, hi), max(lo, hi) + 1))
    for s in out:
        if not 0 <= s < steps:
            raise ValueError(f"step {s} out of range (the trajectory has steps 0..{steps - 1})")
    out = sorted(set(out))
    if not out:
        raise ValueError("the step subset is empty")
    return out


def jacobian_directions(model: DiffusionModel, traj: Trajectory, k: int = 3, mask=None,
                        steps_subset=None, tol: float = 1e-4, angle_tol: Optional[float] = 1.0,
                        max_iter: int = 100,
                        oversample: int = 2, block: int = 1, init_seed: int = 0, warm_start: bool = True,
                        batching: str = "auto", progress: Optional[ProgressFn] = None,
                        cancel: Optional[CancelToken] = None) -> JacobianResult:
    """Top-k right singular vectors of d eps_t / d h_t at the chosen steps of ``traj``.

    ``mask`` is None, a PNG path or an (H, W) array in image pixels; ``steps_subset``
    is None (all steps) or step indices (see :func:`parse_steps_subset`). A step stops when
    its residual is below ``tol`` or every direction (or cluster of directions with nearly
    equal singular values) is known to within ``angle_tol`` degrees (None or 0: residual only).
    """
    t0 = time.perf_counter()
    traj.check_model(model.fingerprint, traj.h_space)
    model.use_conditioning(traj.origin)  # eps of the guided output, under the image's prompt
    if not (tol > 0):
        raise ValueError("tol must be > 0")
    if int(max_iter) < 1:
        raise ValueError("max_iter must be at least 1")
    if angle_tol is not None and not 0 <= angle_tol < 90:
        raise ValueError("angle_tol must be between 0 and 90 degrees")
    angle_tol = angle_tol or None  # 0: the residual rule only
    steps = parse_steps_subset(steps_subset, traj.steps)
    weights, mask_info = prepare_mask(mask, model)
    prepare_scheduler(model, traj.timesteps)
    notes: List[str] = []
    total = len(steps) + (traj.steps if traj.xs is None else 0)
    done = [0]

    def report(msg, advance=True):
        done[0] += int(advance)
        if progress is not None:
            progress(min(done[0], total), total, msg)

    if traj.xs is None:  # a loaded trajectory: replay it to get x_t of every step
        decode(model, traj, lambda d, t, m: report("replaying the trajectory"), cancel)
    gen = torch.Generator().manual_seed(int(init_seed))
    vecs, sigmas, iters, resids, conv, prods, acc, angles, clusters = [], [], [], [], [], [], [], [], []
    basis = None
    shape = None
    for n, i in enumerate(steps):
        check(cancel)
        x = traj.xs[i][None]
        t = traj.timesteps[i].to(model.device)
        with DownstreamEps(model, x, t, traj.h_space, weights) as fn:
            op = JacobianOperator(fn, fn.h0, batching)
            shape = op.shape
            r = krylov_svd(op.jmv, op.jtmv, op.dim, k, block=block, start=k + max(0, int(oversample)), tol=tol,
                           angle_tol=None if angle_tol is None else np.radians(angle_tol),
                           max_iter=max_iter, init=basis if warm_start else None, generator=gen,
                           cancel=cancel,
                           on_iteration=lambda it, res: report(
                               f"jacobian: step {n + 1}/{len(steps)}, iteration {it}, residual {res:.1e}",
                               advance=False))
            if op.batching == "batch" and batching == "auto" and "batch" not in notes:
                notes.append("batch")
        basis = r.basis
        vecs.append(r.vectors.T)  # (k, D)
        sigmas.append(r.values)
        iters.append(r.iterations)
        resids.append(r.residual)
        conv.append(r.converged)
        prods.append(r.products)
        acc.append(r.accuracy_text())
        angles.append([round(float(np.degrees(a)), 4) for a in r.angles])
        clusters.append([list(c) for c in r.clusters if len(c) > 1])
        report(f"jacobian: step {n + 1}/{len(steps)} ({r.iterations} iterations; {acc[-1]})")
    V = align_signs(torch.stack(vecs))  # (S, k, D)
    delta = V.permute(1, 0, 2).reshape(k, len(steps), *shape).float()
    sig = torch.stack(sigmas)  # (S, k)
    params = {
        "method": "jacobian", "k": int(k), "tol": float(tol),
        "angle_tol": None if angle_tol is None else float(angle_tol), "max_iter": int(max_iter),
        "oversample": int(oversample), "block": int(block), "init_seed": int(init_seed), "warm_start": bool(warm_start),
        "steps_subset": steps, "source": dict(traj.origin), "steps": traj.steps,
        "eta": traj.etas.tolist() if not torch.all(traj.etas == traj.etas[0]) else float(traj.etas[0]),
        "mask": mask_info or None,
        "convergence": {"iterations": iters, "residuals": [float(r) for r in resids],
                        "converged": conv, "products": prods, "angle_bounds_deg": angles,
                        "clusters": clusters},
        "accuracy": _accuracy_line(acc, resids, steps),
    }
    if notes:
        params["batching"] = "batch (vmap unavailable)"
    if not all(conv):
        bad = ", ".join(str(i) for i, c in zip(steps, conv) if not c)
        params["warnings"] = [f"not converged within {max_iter} iterations at step(s) {bad}: "
                              "the directions are less accurate than asked"]
    labels = [f"J {j}" + (" (masked)" if mask_info else "") for j in range(k)]
    ds = DirectionSet(delta_h=delta.cpu(), timesteps=traj.timesteps[steps].clone().long(),
                      fingerprint=model.weights_fingerprint, h_space=traj.h_space, method="jacobian",
                      labels=labels, values=sig.T.tolist(), params=params)
    return JacobianResult(directions=ds, singular_values=sig.float(), step_indices=steps,
                          iterations=iters, residuals=resids, converged=conv,
                          seconds=time.perf_counter() - t0,
                          notes=["vmap unavailable: used batched copies"] if notes else [],
                          products=prods, accuracy=acc)


def _accuracy_line(acc: List[str], resids: List[float], steps: List[int]) -> str:
    """One line for the whole set: the one step's accuracy, or the worst residual's step's."""
    if len(acc) == 1:
        return acc[0]
    worst = max(range(len(acc)), key=lambda n: resids[n])
    return f"worst step {steps[worst]}: {acc[worst]}"
