"""Interpolation between two images of the same model and steps, as a strip of frames.

Modes (the reference code's ``interpolate(q1, q2, space=..., method=...)``):

- ``lerp``: decode with x_T = (1 - a) x_T^A + a x_T^B and likewise every z_t;
- ``slerp``: the same with spherical interpolation,
  ``slerp(u, v, a) = sin((1 - a) theta) / sin(theta) u + sin(a theta) / sin(theta) v``,
  theta the angle between u and v flattened; x_T is one vector and the variance noise of
  all steps another (as the reference does). Where u and v are (anti)parallel
  (|cos theta| > 0.9995) or one is zero, it falls back to lerp;
- ``h``: decode A with ``a * (h_B - h_A)`` added to h at every step (h of image A moved
  toward image B's).

Frame k of N has a = k / (N - 1): the first frame is image A, the last (in noise space)
image B. Frames are decoded under A's prompt (text-to-image models).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from ..core.progress import CancelToken, Progress, ProgressFn
from .model import DiffusionModel
from .sampler import EditSpec, edit_batch, run_chain
from .trajectory import Trajectory

MODES = ("lerp", "slerp", "h")
DOT_THRESHOLD = 0.9995  # the reference's slerp: above this |cos theta|, lerp


def lerp(u: torch.Tensor, v: torch.Tensor, a: float) -> torch.Tensor:
    return (1 - a) * u + a * v


def slerp(u: torch.Tensor, v: torch.Tensor, a: float, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    """Spherical interpolation of ``u`` and ``v`` (any shape, the same), in float64."""
    u64, v64 = u.double(), v.double()
    nu, nv = float(u64.norm()), float(v64.norm())
    if nu == 0 or nv == 0:
        return lerp(u, v, a)
    cos = float((u64.flatten() @ v64.flatten()) / (nu * nv))
    if abs(cos) > dot_threshold:
        return lerp(u, v, a)
    theta = math.acos(max(-1.0, min(1.0, cos)))
    s = math.sin(theta)
    return (math.sin((1 - a) * theta) / s * u64 + math.sin(a * theta) / s * v64).to(u.dtype)


def alphas_for(frames: int) -> List[float]:
    frames = int(frames)
    if frames < 2:
        raise ValueError("an interpolation needs at least 2 frames")
    return [k / (frames - 1) for k in range(frames)]


def check_pair(a: Trajectory, b: Trajectory, mode: str) -> None:
    """Raise ValueError unless ``a`` and ``b`` can be interpolated in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation mode '{mode}' (use one of {', '.join(MODES)})")
    if a.fingerprint != b.fingerprint:
        raise ValueError("the two images were made with different models")
    if a.h_space != b.h_space:
        raise ValueError(f"the two trajectories record h at different points ('{a.h_space}', '{b.h_space}')")
    if not torch.equal(a.timesteps.long(), b.timesteps.long()):
        raise ValueError(f"the two images have different steps ({a.steps} and {b.steps}) or timesteps")
    if a.x_T.shape != b.x_T.shape or a.hs.shape != b.hs.shape:
        raise ValueError("the two trajectories have different shapes")
    if mode != "h" and not torch.equal(a.etas.float(), b.etas.float()):
        raise ValueError("interpolating in noise space needs both images made with the same eta schedule")


def interpolation_noise(a: Trajectory, b: Trajectory, alpha: float, mode: str):
    """(x_T, zs) of frame ``alpha`` in a noise-space ``mode`` (lerp or slerp)."""
    f = slerp if mode == "slerp" else lerp
    return f(a.x_T.float(), b.x_T.float(), alpha), f(a.zs.float(), b.zs.float(), alpha)


@dataclass
class Interpolation:
    x_0: torch.Tensor  # (N, C, H, W)
    alphas: List[float]
    x_T: Optional[torch.Tensor] = None  # (N, C, H, W): noise modes
    zs: Optional[torch.Tensor] = None  # (N, T, C, H, W): noise modes


def interpolate(model: DiffusionModel, a: Trajectory, b: Trajectory, mode: str = "slerp",
                frames: int = 5, alphas: Optional[Sequence[float]] = None, batch_size: int = 8,
                progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Interpolation:
    """Frames from image ``a`` toward image ``b`` (see the module's docstring)."""
    check_pair(a, b, mode)
    al = [float(v) for v in alphas] if alphas is not None else alphas_for(frames)
    batch_size = max(1, int(batch_size))
    if mode == "h":
        d = (b.hs.float() - a.hs.float())
        xs = []
        for k in range(0, len(al), batch_size):
            chunk = al[k:k + batch_size]
            xs.append(edit_batch(model, a, [[EditSpec(d, s)] for s in chunk],
                                 progress=progress, cancel=cancel).x_0)
        return Interpolation(torch.cat(xs), al)
    model.use_conditioning(a.origin)
    noise = [interpolation_noise(a, b, s, mode) for s in al]
    x_T = torch.stack([n[0] for n in noise])
    zs = torch.stack([n[1] for n in noise])
    n_batches = (len(al) + batch_size - 1) // batch_size
    prog = Progress(n_batches * a.steps, progress, cancel, "interpolating")
    out = []
    for k in range(0, len(al), batch_size):
        res = run_chain(model, x_T[k:k + batch_size], zs[k:k + batch_size], a.etas, a.timesteps, a.h_space,
                        keep_xs=False, progress=prog)
        out.append(res.x_0.cpu())
    return Interpolation(torch.cat(out), al, x_T, zs)
