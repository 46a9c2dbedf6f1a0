"""First-order slider previews: the edited image as a linear function of the scales.

For a trajectory and a set of active directions (:class:`~.sampler.EditSpec`), one
:meth:`LinearPreview.prepare` computes, at the current scales ``s0`` (the linearisation
point),

- the exact edited image at ``s0`` (``image0``; pixels, i.e. ``model.to_pixels(x_0)``),
- the derivative of the image with respect to each direction's scale (``dimage``).

Every slider move is then an array operation,
``image(s) = image0 + sum_k (s_k - s0_k) * dimage_k`` — microseconds to a few
milliseconds whatever the model — which the GUI can show at once while the exact decode
of ``s`` runs; the exact image replaces it when it arrives.

The derivative is taken through the cached chain from the first edited step on
(``traj.xs`` holds the input of every step; earlier steps are not recomputed), by

- ``method="jvp"``: forward-mode differentiation (``torch.func`` ``jvp``, vectorised over
  the directions with ``vmap`` so that the primal chain runs once; per-direction ``jvp``
  where a layer has no batching rule). The chain is :func:`~.sampler.run_chain` itself
  (its ``torch.no_grad`` does not switch forward-mode AD off) under
  :func:`~.denoiser.forward_ad_safe` (math attention, contiguous GroupNorm
  inputs). The primal is the exact edit at ``s0``.
- ``method="fd"``: a central difference of exact decodes at ``s0 +- h e_k``, all decoded
  in one batch with the exact image (:func:`~.sampler.edit_batch`): the same derivative to
  about 1e-3 relative; on a CPU a batch of 1 + 2K chains is cheaper than forward-mode AD's
  dual arithmetic (bench/bench_slider.py). ``method="fd1"``: a one-sided difference (a batch
  of 1 + K chains; error O(h), h moving h-space by 1% of its norm).

For a latent model the derivative of x_0 is carried through the decoder by forward-mode
AD at x_0(s0). A ``VQModel`` quantizes in its decode, a piecewise-constant map whose
derivative is zero almost everywhere; the preview uses the straight-through derivative
(the decoder's derivative at the quantized latent, as if quantization were the
identity), which is what makes a continuous preview of a quantized decoder at all.

How good a first-order image is depends on how linear the chain is in the scale. On the
default model (10 steps, ``python -m bench.bench_slider --errors``) it is not: at eta 1 the
tangent image is worse than the unchanged image for PCA and Jacobian directions at every
slider value tried (>= 1/8 of the range), better only within ~1/4 of the range for a
supervised one; at eta 0 a supervised direction stays better across its whole range.
:class:`NodePreview` (a cross-fade between exact images at a few scales, e.g. the
thumbnail strip's five) was 23-59 dB there, far better than either.

Pure engine: no Qt.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..core.progress import CancelToken, Progress, ProgressFn, check
from .denoiser import forward_ad_safe
from .model import DiffusionModel
from .sampler import EditSpec, Region, decode, edit_batch, region_blend, run_chain, steps_in_window
from .trajectory import Trajectory

METHODS = ("jvp", "fd", "fd1")


def spec_steps(spec: EditSpec, timesteps: torch.Tensor) -> torch.Tensor:
    """Steps where ``spec`` can change h whatever its scale (window and nonzero delta):
    unlike :meth:`EditSpec.active_steps` this holds at scale 0 too."""
    nonzero = spec.delta.flatten(1).abs().amax(1).cpu() > 0
    return steps_in_window(timesteps, spec.window) & nonzero


def fd_step(traj: Trajectory, spec: EditSpec, rel: float = 1e-2) -> float:
    """A difference step in scale units that moves h by ``rel`` of its typical norm."""
    on = spec_steps(spec, traj.timesteps)
    dn = spec.delta[on].flatten(1).norm(dim=1).median().item() if bool(on.any()) else 0.0
    hn = traj.hs.flatten(1).norm(dim=1).median().item()
    if not (dn > 0 and hn > 0):
        return 1e-2
    return float(rel * hn / dn)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """uint8 (H, W, 3) of an image (3, H, W) in [-1, 1], rounded like the GUI's pixels."""
    a = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(a.permute(1, 2, 0).numpy())


def pixels_from_arrays(image0: np.ndarray, dimage: np.ndarray, offsets) -> np.ndarray:
    """uint8 (H, W, 3) of ``image0 + sum_k offsets[k] * dimage[k]`` (arrays of
    :meth:`LinearPreview.arrays`; ``offsets`` = s - s0 of the varied directions), in numpy
    alone, rounded like :func:`to_uint8`."""
    img = image0.copy() if not len(offsets) else image0 + np.tensordot(
        np.asarray(offsets, dtype=np.float32), dimage, axes=1)
    np.clip(img, -1, 1, out=img)
    img += 1
    img *= 127.5
    return np.rint(img).astype(np.uint8)


def _vq_quantizes(vae) -> bool:
    return hasattr(vae, "quantize") and not getattr(vae.config, "lookup_from_codebook", False)


def decoder_jvp(model: DiffusionModel, x0: torch.Tensor, dx0: torch.Tensor):
    """(image (3, H, W), derivatives (K, 3, H, W)) of ``model.to_pixels`` at ``x0`` (C, h, w)
    along the K tangents ``dx0`` (K, C, h, w). Pixel models: the identity.

    A VQ decoder's derivative is taken at the quantized latent with quantization treated
    as the identity (straight-through); the image is the exact decode."""
    if model.vae is None:
        return x0.float(), dx0.float()
    vae = model.vae
    with torch.no_grad():
        image0 = model.to_pixels(x0[None])[0].float()
    sf = vae.config.scaling_factor
    z = (x0[None].to(model.device, model.dtype) / sf)
    if _vq_quantizes(vae):
        with torch.no_grad():
            z = vae.quantize(z)[0]

        def dec(w):
            return vae.decode(w, force_not_quantize=True).sample.float()
    else:
        def dec(w):
            return vae.decode(w).sample.float()
    tangents = dx0.to(model.device, model.dtype)[:, None] / sf  # (K, 1, C, h, w)
    with torch.no_grad(), forward_ad_safe(vae):
        try:
            d = torch.func.vmap(lambda v: torch.func.jvp(dec, (z,), (v,))[1])(tangents)
        except (RuntimeError, NotImplementedError):  # a layer without a batching rule
            d = torch.stack([torch.func.jvp(dec, (z,), (v,))[1] for v in tangents])
    return image0, d[:, 0].float()


@dataclass
class LinearPreview:
    """The edited image at scales near ``scales0``, to first order (see the module doc)."""

    specs: List[EditSpec]
    vary: List[int]  # indices into specs with a derivative
    scales0: torch.Tensor  # (len(specs),) float64
    x0: torch.Tensor  # (C, h, w) exact x_0 at scales0 (diffusion space)
    image0: torch.Tensor  # (3, H, W) exact image at scales0 (pixels, [-1, 1] unclamped)
    dx0: torch.Tensor  # (K, C, h, w): d x_0 / d s_k for k in vary
    dimage: torch.Tensor  # (K, 3, H, W): d image / d s_k
    start: int  # first recomputed step
    method: str
    seconds: float
    fingerprint: str = ""
    notes: List[str] = field(default_factory=list)

    # -- building ----------------------------------------------------------------------
    @classmethod
    def prepare(cls, model: DiffusionModel, traj: Trajectory, specs: Sequence[EditSpec],
                vary: Optional[Sequence[int]] = None, region: Optional[Region] = None,
                method: str = "jvp", fd_h: Optional[Sequence[float]] = None,
                progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None) -> "LinearPreview":
        """Linearise the edit of ``traj`` by ``specs`` at their scales.

        ``vary``: the indices of ``specs`` that get a derivative (default: all); the others
        stay at their scale. ``region`` keeps the edit in a region as
        :func:`~.sampler.edit` does. ``method``: ``"jvp"`` (forward-mode AD), ``"fd"``
        (central differences with steps ``fd_h``, default :func:`fd_step`) or ``"fd1"``
        (one-sided differences).
        """
        t_start = time.perf_counter()
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}' (use {' or '.join(METHODS)})")
        specs = list(specs)
        T = traj.steps
        for e in specs:
            if tuple(e.delta.shape[:1]) != (T,) or tuple(e.delta.shape[1:]) != tuple(traj.hs.shape[1:]):
                raise ValueError(f"direction shape {tuple(e.delta.shape)} does not fit the trajectory "
                                 f"(steps {T}, h {tuple(traj.hs.shape[1:])})")
        vary = list(range(len(specs))) if vary is None else [int(k) for k in vary]
        if not vary:
            raise ValueError("nothing to vary: give at least one direction")
        if any(not 0 <= k < len(specs) for k in vary) or len(set(vary)) != len(vary):
            raise ValueError(f"vary {vary} must be distinct indices of the {len(specs)} directions")
        model.use_conditioning(traj.origin)
        on = torch.zeros(T, dtype=torch.bool)
        for k, e in enumerate(specs):
            on |= spec_steps(e, traj.timesteps) if k in vary else e.active_steps(traj.timesteps)
        scales0 = torch.tensor([float(e.scale) for e in specs], dtype=torch.float64)
        notes: List[str] = []
        if not bool(on.any()):  # no direction can change h: the image is the trajectory's own
            x0 = traj.x_0.to(model.device, torch.float32)
            dx0 = torch.zeros(len(vary), *x0.shape, device=x0.device)
            image0, dimage = decoder_jvp(model, x0, dx0)
            notes.append("no direction is nonzero inside its window")
            return cls(specs, vary, scales0, x0.cpu(), image0.cpu(), dx0.cpu(), torch.zeros_like(dimage).cpu(),
                       T, method, time.perf_counter() - t_start, model.fingerprint, notes)
        start = int(on.nonzero()[0])
        if traj.xs is None:
            decode(model, traj, progress, cancel)
        if method == "jvp":
            x0, dx0 = _jvp_chain(model, traj, specs, vary, start, region, progress, cancel)
        else:
            h = [fd_step(traj, specs[k]) for k in vary] if fd_h is None else [float(v) for v in fd_h]
            if len(h) != len(vary) or not all(v > 0 for v in h):
                raise ValueError("fd_h needs one positive step per varied direction")
            x0, dx0 = _fd_chain(model, traj, specs, vary, h, region, progress, cancel,
                                central=method == "fd")
        check(cancel)
        image0, dimage = decoder_jvp(model, x0, dx0)
        return cls(specs, vary, scales0, x0.cpu(), image0.cpu(), dx0.cpu(), dimage.cpu(), start, method,
                   time.perf_counter() - t_start, model.fingerprint, notes)

    # -- using -------------------------------------------------------------------------
    def _offsets(self, scales) -> torch.Tensor:
        s = torch.as_tensor(scales, dtype=torch.float64).flatten()
        if s.numel() == len(self.vary) and len(self.vary) != len(self.specs):
            full = self.scales0.clone()
            full[self.vary] = s
            s = full
        if s.numel() != len(self.specs):
            raise ValueError(f"give {len(self.specs)} scales (one per direction) or {len(self.vary)} "
                             f"(one per varied direction), not {s.numel()}")
        fixed = [k for k in range(len(self.specs)) if k not in self.vary]
        if fixed and not torch.equal(s[fixed], self.scales0[fixed]):
            raise ValueError("a direction that was not linearised changed its scale: prepare again")
        return (s[self.vary] - self.scales0[self.vary]).float()

    def image(self, scales) -> torch.Tensor:
        """(3, H, W) first-order image at ``scales`` (one per spec, or one per varied spec),
        in [-1, 1] unclamped; equals :attr:`image0` at :attr:`scales0`."""
        ds = self._offsets(scales)
        if not bool(ds.ne(0).any()):
            return self.image0.clone()
        return self.image0 + torch.tensordot(ds, self.dimage, dims=1)

    def pixels(self, scales) -> np.ndarray:
        """uint8 (H, W, 3) of :meth:`image` (clamped and rounded as the GUI shows images)."""
        return to_uint8(self.image(scales))

    def arrays(self):
        """(image0 (H, W, 3), dimage (K, H, W, 3)) as float32 numpy arrays in [-1, 1] units, for
        :func:`pixels_from_arrays` on a thread that runs no torch (the GUI's UI thread)."""
        return (np.ascontiguousarray(self.image0.permute(1, 2, 0).numpy(), dtype=np.float32),
                np.ascontiguousarray(self.dimage.permute(0, 2, 3, 1).numpy(), dtype=np.float32))

    def x_0(self, scales) -> torch.Tensor:
        """(C, h, w) first-order x_0 in the diffusion space."""
        ds = self._offsets(scales)
        return self.x0 + torch.tensordot(ds, self.dx0, dims=1)

    def fits(self, specs: Sequence[EditSpec]) -> bool:
        """Whether ``specs`` are this preview's directions (same deltas and windows, the
        non-varied ones at the same scale), so that :meth:`image` applies to them."""
        specs = list(specs)
        if len(specs) != len(self.specs):
            return False
        for k, (a, b) in enumerate(zip(specs, self.specs)):
            if a.window != b.window or not (a.delta is b.delta or torch.equal(a.delta, b.delta)):
                return False
            if k not in self.vary and float(a.scale) != float(b.scale):
                return False
        return True


def _deltas(model, traj, specs, vary):
    """Fixed part (T, C', H', W') and the varied directions (K, T, C', H', W'), windowed."""
    dev = model.device
    fixed = torch.zeros_like(traj.hs, device=dev)
    for k, e in enumerate(specs):
        if k not in vary:
            on = e.active_steps(traj.timesteps).to(dev).view(-1, 1, 1, 1)
            fixed = fixed + float(e.scale) * e.delta.to(dev, torch.float32) * on
    D = torch.stack([specs[k].delta.to(dev, torch.float32)
                     * spec_steps(specs[k], traj.timesteps).to(dev).view(-1, 1, 1, 1) for k in vary])
    return fixed, D


def _jvp_chain(model, traj, specs, vary, start, region, progress, cancel):
    dev = model.device
    T = traj.steps
    fixed, D = _deltas(model, traj, specs, vary)
    used = [bool(fixed[i].abs().amax() > 0) or bool(D[:, i].abs().amax() > 0) for i in range(T)]
    s0 = torch.tensor([float(specs[k].scale) for k in vary], device=dev, dtype=torch.float32)
    x_start = traj.xs[start][None].to(dev, torch.float32)
    blend = region_blend([traj], region, dev) if region is not None else None
    K = len(vary)

    def chain(s, prog):
        def delta_at(i):
            if not used[i]:
                return None
            return (fixed[i] + torch.tensordot(s, D[:, i], dims=1))[None]

        res = run_chain(model, x_start, traj.zs, traj.etas, traj.timesteps, traj.h_space, start=start,
                        delta_at=delta_at, keep_xs=False, progress=prog, after_step=blend)
        return res.x_0[0]

    eye = torch.eye(K, device=dev, dtype=torch.float32)
    with forward_ad_safe(model.net):
        try:
            prog = Progress(T - start, progress, cancel, "preparing the preview")
            x0, dx0 = torch.func.vmap(lambda v: torch.func.jvp(lambda s: chain(s, prog), (s0,), (v,)),
                                      out_dims=(None, 0))(eye)
        except (RuntimeError, NotImplementedError, ValueError):  # no batching rule somewhere
            prog = Progress(K * (T - start), progress, cancel, "preparing the preview")
            outs = [torch.func.jvp(lambda s: chain(s, prog), (s0,), (v,)) for v in eye]
            x0 = outs[0][0]
            dx0 = torch.stack([o[1] for o in outs])
    return x0.detach(), dx0.detach()


def _fd_chain(model, traj, specs, vary, h, region, progress, cancel, central=True):
    base = [EditSpec(e.delta, float(e.scale), e.window) for e in specs]
    batch = [base]
    for k, hk in zip(vary, h):
        for sign in ((1.0, -1.0) if central else (1.0,)):
            b = list(base)
            b[k] = EditSpec(specs[k].delta, float(specs[k].scale) + sign * hk, specs[k].window)
            batch.append(b)
    x = edit_batch(model, traj, batch, progress=progress, cancel=cancel, region=region).x_0.float()
    x0 = x[0]
    hs = torch.tensor(h, device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    if central:
        return x0, (x[1::2] - x[2::2]) / (2 * hs)
    return x0, (x[1:] - x0) / hs


@dataclass
class NodePreview:
    """The image at any scale of one direction from exact images at a few node scales (the
    GUI's thumbnail strip, say): the linear interpolation between the two nodes around
    the scale, the nearest node's image outside them. Exact at every node; between nodes a
    cross-fade of two exact images, so it never leaves the range of real images the way a
    tangent extrapolated far from its point does."""

    scales: torch.Tensor  # (N,) ascending, float64
    images: torch.Tensor  # (N, 3, H, W) pixels in [-1, 1]

    @classmethod
    def from_images(cls, scales: Sequence[float], images: torch.Tensor) -> "NodePreview":
        s = torch.as_tensor(list(scales), dtype=torch.float64)
        if s.numel() < 1 or s.numel() != images.shape[0]:
            raise ValueError("give one image per node scale")
        order = torch.argsort(s)
        s = s[order]
        if bool((s[1:] == s[:-1]).any()):
            raise ValueError("node scales must be distinct")
        return cls(s, images[order].float().cpu())

    @classmethod
    def prepare(cls, model: DiffusionModel, traj: Trajectory, spec: EditSpec, scales: Sequence[float],
                others: Sequence[EditSpec] = (), region: Optional[Region] = None,
                progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None) -> "NodePreview":
        """Decode ``spec`` at each of ``scales`` (with ``others`` fixed) in one batch."""
        from .sampler import strip

        x0 = strip(model, traj, spec.delta, [float(v) for v in scales], spec.window, list(others),
                   progress=progress, cancel=cancel, region=region)
        with torch.no_grad():
            images = torch.cat([model.to_pixels(x[None]) for x in x0])
        return cls.from_images(scales, images)

    def image(self, scale: float) -> torch.Tensor:
        s = float(scale)
        n = self.scales.numel()
        j = int(torch.searchsorted(self.scales, torch.tensor([s], dtype=torch.float64))[0])
        if j <= 0 or n == 1:
            return self.images[0].clone()
        if j >= n:
            return self.images[-1].clone()
        a, b = float(self.scales[j - 1]), float(self.scales[j])
        w = (s - a) / (b - a)
        return (1 - w) * self.images[j - 1] + w * self.images[j]

    def pixels(self, scale: float) -> np.ndarray:
        return to_uint8(self.image(scale))
