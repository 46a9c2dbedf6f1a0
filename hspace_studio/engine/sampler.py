"""Sample, decode and edit trajectories — batched, cancellable, with progress.

Every update of x_t is the diffusers DDIM scheduler's formula (``eta`` and the variance
noise; :mod:`.ddim`), so a chain here equals ``DDIMPipeline``'s for the same noise.

Noise is drawn per seed from a CPU ``torch.Generator`` in the order ``DDIMPipeline``
draws it (x_T, then one variance noise per step), so a seed gives the same image on
any device and in any batch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from ..core.errors import ModelMismatchError
from ..core.progress import CancelToken, Progress, ProgressFn
from .asyrp import ddim_step_asymmetric
from .ddim import ddim_step, previous_timestep
from .etas import EtaLike, etas_tensor
from .masks import prepare_mask
from .model import DiffusionModel
from .trajectory import Trajectory

# preview(step_index, total_steps, predicted x_0 batch)
PreviewFn = Callable[[int, int, torch.Tensor], None]


def timesteps_for(model: DiffusionModel, steps: int) -> torch.Tensor:
    if int(steps) < 1 or int(steps) > model.scheduler.config.num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {model.scheduler.config.num_train_timesteps}")
    model.scheduler.set_timesteps(int(steps))
    return model.scheduler.timesteps.clone()


def prepare_scheduler(model: DiffusionModel, timesteps: torch.Tensor) -> None:
    """Set the scheduler to the step count of ``timesteps`` and check they agree."""
    ts = timesteps_for(model, timesteps.shape[0])
    if not torch.equal(ts.cpu(), timesteps.cpu().to(ts.dtype)):
        raise ValueError("the trajectory's timesteps do not match this model's scheduler "
                         f"at {timesteps.shape[0]} steps (made with another timestep spacing?)")


def noise_levels(model: DiffusionModel, timesteps: torch.Tensor) -> torch.Tensor:
    """sigma_t / eta of each step: the std of the variance noise that eta = 1 adds.

    It is zero at a step into alpha-bar equal to the current one (the last step of a
    'leading' schedule). There a trajectory's z_t is instead added to x as it is: a
    residual that makes edit-friendly inversion exact (zero for sampled trajectories).
    """
    sched = model.scheduler
    prepare_scheduler(model, timesteps)
    if model.own_step:
        return torch.tensor([sched.noise_std(t) for t in timesteps.tolist()])
    out = []
    for t in timesteps.tolist():
        ab_t = sched.alphas_cumprod[t]
        prev = previous_timestep(sched, t)
        ab_prev = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
        var = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        out.append(float(var.clamp(min=0).sqrt()))
    return torch.tensor(out)


def seed_noise(seed: int, shape, steps: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """x_T (C, H, W) and per-step variance noise (T, C, H, W) for one seed."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    x_T = torch.randn((1, *shape), generator=g)[0]
    zs = torch.stack([torch.randn((1, *shape), generator=g)[0] for _ in range(steps)])
    return x_T, zs


@dataclass
class ChainResult:
    x_0: torch.Tensor  # (B, C, H, W)
    hs: torch.Tensor  # (B, T - start, C', H', W'): h as the network saw it
    xs: Optional[torch.Tensor]  # (B, T - start, C, H, W): input x_t of each step
    hs_before_edit: Optional[torch.Tensor] = None
    x0s: Optional[torch.Tensor] = None  # (B, T - start, C, H, W): each step's predicted x_0


def run_chain(model: DiffusionModel, x_start: torch.Tensor, zs: torch.Tensor, etas: torch.Tensor,
              timesteps: torch.Tensor, h_space: str, start: int = 0,
              delta_at: Optional[Callable[[int], Optional[torch.Tensor]]] = None,
              keep_xs: bool = True, keep_pre_edit: bool = False,
              progress: Optional[Progress] = None, preview: Optional[PreviewFn] = None,
              keep_x0s: bool = False,
              after_step: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None,
              asym_delta_at: Optional[Callable[[int], Optional[torch.Tensor]]] = None,
              end: Optional[int] = None) -> ChainResult:
    """Run steps ``start .. T-1`` (or ``start .. end-1``: then ``x_0`` of the result is the
    input x of step ``end``) from ``x_start`` (the input x of step ``start``).

    ``zs`` is (B, T, C, H, W) or (T, C, H, W) (shared by the batch). ``delta_at(i)``
    returns the change of h at step ``i`` ((B, C', H', W') or broadcastable) or None.
    ``after_step(i, x)`` may replace step ``i``'s output x (the input of step ``i + 1``).
    ``keep_x0s``: keep each step's predicted x_0 (``x0s``, as the step computed it, before
    ``after_step``).

    ``asym_delta_at(i)``, where it returns a tensor, makes step ``i`` asymmetric (Asyrp,
    :mod:`.asyrp`): the network runs with h + delta + asym delta for the predicted x_0
    and again with h + delta for the noise direction term. ``hs`` and the preview then
    hold the first run's h and x_0.
    """
    dev, dt = model.device, model.dtype
    T = timesteps.shape[0]
    x = x_start.to(dev, torch.float32)
    B = x.shape[0]
    hs, xs, pre, x0s = [], [], [], []
    prepare_scheduler(model, timesteps)
    levels = noise_levels(model, timesteps)
    for i in range(start, T if end is None else int(end)):
        t = model.scheduler.timesteps[i]
        delta = delta_at(i) if delta_at is not None else None
        if delta is not None:  # standard strides: compiled code (.compiled) is built per stride pattern
            delta = delta.clone(memory_format=torch.contiguous_format)
        rec: list = []

        def edit(h, delta=delta):
            if keep_pre_edit:
                pre.append(h.float())
            return h if delta is None else h + delta.to(h.device, h.dtype)

        if keep_xs:
            xs.append(x)
        asym = asym_delta_at(i) if asym_delta_at is not None else None
        if asym is not None and model.own_step:
            raise ValueError("asymmetric (Asyrp) edits use DDIM's update; this model samples with its own "
                             f"{type(getattr(model.scheduler, 'scheduler', model.scheduler)).__name__}")
        if asym is None:
            with torch.no_grad(), model.denoiser.hook(h_space, edit=edit, record=rec):
                out = model.denoiser(model.network_input(x, t).to(dt), t).float()
        else:
            full = asym if delta is None else delta.to(asym.device) + asym

            def edit_full(h, full=full):
                if keep_pre_edit:
                    pre.append(h.float())
                return h + full.to(h.device, h.dtype)

            def edit_plain(h, delta=delta):
                return h if delta is None else h + delta.to(h.device, h.dtype)

            with torch.no_grad(), model.denoiser.hook(h_space, edit=edit_full, record=rec):
                out = model.denoiser(model.network_input(x, t).to(dt), t).float()
            with torch.no_grad(), model.denoiser.hook(h_space, edit=edit_plain):
                out_plain = model.denoiser(model.network_input(x, t).to(dt), t).float()
        hs.append(rec[-1].float())
        z = zs[:, i] if zs.dim() == 5 else zs[i].expand(B, *zs.shape[1:])
        eta = float(etas[i])
        noise = z.to(dev, torch.float32) if eta > 0 else None
        if asym is None:
            x, x0_pred = ddim_step(model.scheduler, out, t, x, eta, noise)
        else:
            x, x0_pred = ddim_step_asymmetric(model.scheduler, out, out_plain, t, x, eta, noise)
        if eta > 0 and levels[i] == 0:  # residual step (see noise_levels)
            x = x + z.to(dev, torch.float32)
        if keep_x0s:
            x0s.append(x0_pred.float().cpu())
        if after_step is not None:
            x = after_step(i, x)
        if preview is not None:
            preview(i, T, x0_pred)
        if progress is not None:
            progress.step()
    return ChainResult(
        x_0=x,
        hs=torch.stack(hs, 1) if hs else torch.empty(0),
        xs=torch.stack(xs, 1) if keep_xs and xs else None,
        hs_before_edit=torch.stack(pre, 1) if keep_pre_edit and pre else None,
        x0s=torch.stack(x0s, 1) if keep_x0s and x0s else None,
    )


def sample(model: DiffusionModel, seeds: Sequence[int], steps: int = 10, eta: EtaLike = 1.0,
           h_space: Optional[str] = None, batch_size: int = 8, keep_chain: bool = True,
           progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
           preview: Optional[PreviewFn] = None, keep_x0s: bool = False) -> List[Trajectory]:
    """Sample one trajectory per seed, ``batch_size`` at a time (``keep_x0s``: with the cached
    chain, each step's predicted x_0)."""
    h_space = model.point(h_space)
    seeds = [int(s) for s in seeds]
    timesteps = timesteps_for(model, steps)
    etas = etas_tensor(eta, steps)
    shape = model.sample_shape
    batch_size = max(1, int(batch_size))
    n_batches = (len(seeds) + batch_size - 1) // batch_size
    # one progress step per diffusion step of a batch
    prog = Progress(n_batches * steps, progress, cancel, f"sampling {len(seeds)} image(s)")
    out: List[Trajectory] = []
    for b in range(0, len(seeds), batch_size):
        chunk = seeds[b:b + batch_size]
        noise = [seed_noise(s, shape, steps) for s in chunk]
        # the chain's first x: the noise at the schedule's initial scale (1 but for Euler)
        x_T = torch.stack([n[0] for n in noise]) * float(getattr(model.scheduler, "init_noise_sigma", 1.0))
        used = (etas > 0) & (noise_levels(model, timesteps) > 0)
        zs = torch.stack([n[1] for n in noise]) * used.view(1, -1, 1, 1, 1)
        res = run_chain(model, x_T, zs, etas, timesteps, h_space, keep_xs=keep_chain,
                        progress=prog, preview=preview, keep_x0s=keep_chain and keep_x0s)
        for j, s in enumerate(chunk):
            out.append(Trajectory(
                x_T=x_T[j].cpu(), zs=zs[j].cpu(), etas=etas.clone(), timesteps=timesteps.clone(),
                hs=res.hs[j].cpu(), x_0=res.x_0[j].cpu(), fingerprint=model.fingerprint,
                h_space=h_space, origin={"seed": s, "steps": steps,
                                         "eta": eta if isinstance(eta, (int, float)) else etas.tolist(),
                                         **model.conditioning},
                xs=res.xs[j].cpu() if res.xs is not None else None,
                x0s=res.x0s[j] if res.x0s is not None else None))
    return out


def check_schedule(model: DiffusionModel, traj: Trajectory) -> None:
    """Refuse a trajectory made when every chain ended at alpha-bar_0 (``schedule`` 1) for a
    model whose scheduler ends at alpha-bar 1 (``set_alpha_to_one``): its last step would
    not replay as it was made."""
    if traj.schedule < 2 and not model.own_step and float(model.scheduler.final_alpha_cumprod) == 1.0:
        raise ModelMismatchError(
            "this trajectory was made by an older hspace-studio that ended every chain at alpha-bar_0; "
            "this model's scheduler ends at alpha-bar 1 (set_alpha_to_one), so it would not replay "
            "exactly: sample the seed or invert the image again")


def decode(model: DiffusionModel, traj: Trajectory, progress: Optional[ProgressFn] = None,
           cancel: Optional[CancelToken] = None) -> Trajectory:
    """Replay a trajectory without edits; fills its ``xs`` and ``x0s`` caches and returns it."""
    check_schedule(model, traj)
    model.use_conditioning(traj.origin)
    prog = Progress(traj.steps, progress, cancel, "decoding")
    res = run_chain(model, traj.x_T[None], traj.zs, traj.etas, traj.timesteps, traj.h_space,
                    progress=prog, keep_x0s=True)
    traj.xs = res.xs[0].cpu()
    traj.x0s = res.x0s[0]
    traj.hs = res.hs[0].cpu()
    traj.x_0 = res.x_0[0].cpu()
    return traj


def steps_in_window(timesteps: torch.Tensor, window: Optional[Tuple[int, int]]) -> torch.Tensor:
    """Which of ``timesteps`` lie in ``window`` (two diffusion timesteps, either order,
    inclusive; None = all of them), as a CPU bool tensor."""
    if window is None:
        return torch.ones(timesteps.shape[0], dtype=torch.bool)
    lo, hi = sorted(int(v) for v in window)
    return ((timesteps >= lo) & (timesteps <= hi)).cpu()


@dataclass(frozen=True)
class EditSpec:
    """Add ``scale * delta[i]`` to h at every step ``i`` whose timestep lies in ``window``.

    ``delta`` is (T, C', H', W') on the trajectory's timesteps; ``window`` is a pair of
    diffusion timesteps (either order, inclusive) or None for all steps.

    ``asymmetric`` (Asyrp, :mod:`.asyrp`): the edited h moves only the predicted x_0 of
    each step; the noise direction term comes from the network run without this edit
    (but with the edit's symmetric companions). Each edited step then runs the network
    twice.
    """

    delta: torch.Tensor
    scale: float = 1.0
    window: Optional[Tuple[int, int]] = None
    asymmetric: bool = False

    def active_steps(self, timesteps: torch.Tensor) -> torch.Tensor:
        if self.scale == 0:
            return torch.zeros(timesteps.shape[0], dtype=torch.bool)
        nonzero = self.delta.flatten(1).abs().amax(1).cpu() > 0
        return steps_in_window(timesteps, self.window) & nonzero


@dataclass(frozen=True)
class NoiseEdit:
    """An edit in noise space: decode with ``x_T + scale * d_xT`` and, at every step whose
    variance noise is used (eta > 0 and sigma_t > 0), ``z_t + scale * d_zs[t]``.

    ``d_xT`` is (C, H, W) or None; ``d_zs`` (T, C, H, W) on the trajectory's timesteps or
    None. Noise-space direction files: :mod:`.noise_edits`.
    """

    d_xT: Optional[torch.Tensor] = None
    d_zs: Optional[torch.Tensor] = None
    scale: float = 1.0

    def first_step(self, used: torch.Tensor) -> int:
        """The first step this edit changes (``len(used)``: none); ``used`` (T,) says
        which steps use their variance noise."""
        T = int(used.shape[0])
        if self.scale == 0:
            return T
        if self.d_xT is not None and float(self.d_xT.abs().max()) > 0:
            return 0
        if self.d_zs is not None:
            on = (self.d_zs.flatten(1).abs().amax(1).cpu() > 0) & used.cpu()
            if on.any():
                return int(on.nonzero()[0])
        return T


def noise_used(model: DiffusionModel, traj: Trajectory) -> torch.Tensor:
    """(T,) bool: the steps of ``traj`` whose variance noise z_t enters the chain."""
    return ((traj.etas > 0) & (noise_levels(model, traj.timesteps) > 0)).cpu()


@dataclass(frozen=True)
class Region:
    """Keep an edit inside a region: after every step but the last ``free_steps``, x
    outside the region is set back to the unedited chain's x,
    ``x = w * x_edited + (1 - w) * x_unedited``. The last ``free_steps`` steps run freely
    so that the network blends the border.

    ``weights`` is (H, W) or (1, 1, H, W) in [0, 1] at the resolution of x (see
    :func:`region_weights`), or (N, 1, H, W): one region per chain of a batch of N.
    """

    weights: torch.Tensor
    free_steps: int = 1


def region_weights(model: DiffusionModel, mask) -> torch.Tensor:
    """(1, 1, h, w) weights at the resolution of x from an image-sized mask (array, tensor or
    PNG path; see :func:`.masks.prepare_mask`)."""
    w, _ = prepare_mask(mask, model)
    if w is None or float(w.sum()) == 0:
        raise ValueError("the region mask is empty")
    return w


def region_blend(trajs: Sequence[Trajectory], region: Region, dev):
    """``after_step(i, x)`` that keeps a chain's change inside ``region``: x outside it is set
    back to the unedited x of ``trajs`` after each step but the last ``free_steps``. The
    batch of x holds one chain per trajectory, or any number of chains of a single one."""
    if any(t.xs is None for t in trajs):
        raise ValueError("keeping an edit in a region needs the trajectories' chains")
    T = trajs[0].steps
    w = region.weights.to(dev, torch.float32)
    w = w.reshape(-1, 1, *w.shape[-2:])  # one region for all chains, or one per chain
    last = T - max(0, int(region.free_steps))  # steps i < last are blended

    def after_step(i, x):
        if i >= last:
            return x
        orig = torch.stack([t.xs[i + 1] if i + 1 < T else t.x_0 for t in trajs])
        return w * x + (1 - w) * orig.to(dev, torch.float32)

    return after_step


def _check_edit(e, traj: Trajectory) -> None:
    T = traj.steps
    if isinstance(e, EditSpec):
        if tuple(e.delta.shape[:1]) != (T,) or tuple(e.delta.shape[1:]) != tuple(traj.hs.shape[1:]):
            raise ValueError(f"direction shape {tuple(e.delta.shape)} does not fit the trajectory "
                             f"(steps {T}, h {tuple(traj.hs.shape[1:])})")
    elif isinstance(e, NoiseEdit):
        if e.d_xT is not None and tuple(e.d_xT.shape) != tuple(traj.x_T.shape):
            raise ValueError(f"noise direction shape {tuple(e.d_xT.shape)} does not fit the "
                             f"trajectory's x_T {tuple(traj.x_T.shape)}")
        if e.d_zs is not None and tuple(e.d_zs.shape) != tuple(traj.zs.shape):
            raise ValueError(f"per-step noise direction shape {tuple(e.d_zs.shape)} does not fit the "
                             f"trajectory's noise {tuple(traj.zs.shape)}")
    else:
        raise TypeError(f"an edit must be an EditSpec or a NoiseEdit, not {type(e).__name__}")


def edit_batch(model: DiffusionModel, traj: Trajectory, batch: Sequence[Sequence[Union[EditSpec, NoiseEdit]]],
               keep_pre_edit: bool = False, progress: Optional[ProgressFn] = None,
               cancel: Optional[CancelToken] = None,
               preview: Optional[PreviewFn] = None, region: Optional[Region] = None,
               keep_x0s: bool = False) -> ChainResult:
    """Decode ``traj`` once per element of ``batch`` (a list of edits each), in one batch.

    An edit is an :class:`EditSpec` (h-space; symmetric, or asymmetric: Asyrp) or a
    :class:`NoiseEdit` (x_T and the per-step noise). Steps before the first edited step
    are reused from the trajectory's cached chain; without one (a trajectory file) they
    run once, unedited, and the chain after them is not run twice. Returns x_0 (B, C, H, W) and the h of
    the recomputed steps (and with ``keep_x0s`` their predicted x_0). With ``region``, the
    change is kept inside it (see :class:`Region`).
    """
    T = traj.steps
    check_schedule(model, traj)
    model.use_conditioning(traj.origin)
    for specs in batch:
        for e in specs:
            _check_edit(e, traj)
    active = torch.zeros(len(batch), T, dtype=torch.bool)  # symmetric h edits
    asym_active = torch.zeros(len(batch), T, dtype=torch.bool)
    has_noise = any(isinstance(e, NoiseEdit) for specs in batch for e in specs)
    used = noise_used(model, traj) if has_noise else None
    first = T  # the first step any element changes
    for b, specs in enumerate(batch):
        for e in specs:
            if isinstance(e, NoiseEdit):
                first = min(first, e.first_step(used))
            elif e.asymmetric:
                asym_active[b] |= e.active_steps(traj.timesteps)
            else:
                active[b] |= e.active_steps(traj.timesteps)
    any_step = (active | asym_active).any(0).nonzero()
    if any_step.numel():
        first = min(first, int(any_step[0]))
    if first >= T:  # nothing edits h or the noise: the image is the trajectory's own
        n = len(batch)
        return ChainResult(x_0=traj.x_0[None].expand(n, *traj.x_0.shape).clone(),
                           hs=traj.hs[None, :0].expand(n, 0, *traj.hs.shape[1:]), xs=None)
    start = first
    dev = model.device
    if traj.xs is None and region is not None:  # the blend needs the unedited x of every step
        decode(model, traj, progress, cancel)
    if traj.xs is not None:
        x_start = traj.xs[start][None].expand(len(batch), *traj.xs.shape[1:])
    elif start == 0:
        x_start = traj.x_T[None].expand(len(batch), *traj.x_T.shape)
    else:  # no cached chain (a trajectory file): run only the unedited steps before the edit
        prefix = Progress(start, progress, cancel, "decoding up to the edit")
        x_start = run_chain(model, traj.x_T[None], traj.zs, traj.etas, traj.timesteps, traj.h_space,
                            keep_xs=False, progress=prefix, end=start).x_0
        x_start = x_start.cpu().expand(len(batch), *x_start.shape[1:])

    def stacked(which: bool, on_steps: torch.Tensor) -> Optional[torch.Tensor]:
        if not on_steps.any():
            return None
        deltas = []
        for specs in batch:
            d = torch.zeros_like(traj.hs, device=dev)
            for e in specs:
                if isinstance(e, EditSpec) and bool(e.asymmetric) == which:
                    on = e.active_steps(traj.timesteps).to(dev).view(-1, 1, 1, 1)
                    d = d + float(e.scale) * e.delta.to(dev, torch.float32) * on
            deltas.append(d)
        return torch.stack(deltas)  # (B, T, C', H', W')

    delta = stacked(False, active)
    asym = stacked(True, asym_active)

    def delta_at(i):
        return delta[:, i] if active[:, i].any() else None

    def asym_delta_at(i):
        return asym[:, i] if asym_active[:, i].any() else None

    zs = traj.zs
    if has_noise:  # each element's own x_T and variance noise
        dx = torch.zeros(len(batch), *traj.x_T.shape)
        dz = torch.zeros(len(batch), *traj.zs.shape)
        mask = used.view(-1, *([1] * (traj.zs.dim() - 1))).float()
        for b, specs in enumerate(batch):
            for e in specs:
                if isinstance(e, NoiseEdit) and e.scale != 0:
                    if e.d_xT is not None:
                        dx[b] += float(e.scale) * e.d_xT.cpu().float()
                    if e.d_zs is not None:
                        dz[b] += float(e.scale) * e.d_zs.cpu().float() * mask
        if start == 0:
            x_start = x_start.cpu() + dx
        zs = traj.zs[None].cpu() + dz
    prog = Progress(T - start, progress, cancel, "editing")
    blend = region_blend([traj], region, dev) if region is not None else None
    return run_chain(model, x_start, zs, traj.etas, traj.timesteps, traj.h_space, start=start,
                     delta_at=delta_at, keep_xs=False, keep_pre_edit=keep_pre_edit,
                     progress=prog, preview=preview, after_step=blend,
                     asym_delta_at=asym_delta_at if asym is not None else None, keep_x0s=keep_x0s)


def edit(model: DiffusionModel, traj: Trajectory, edits: Sequence[Union[EditSpec, NoiseEdit]],
         progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
         preview: Optional[PreviewFn] = None, region: Optional[Region] = None) -> torch.Tensor:
    """x_0 (C, H, W) of ``traj`` decoded with all ``edits`` applied together."""
    return edit_batch(model, traj, [list(edits)], progress=progress, cancel=cancel,
                      preview=preview, region=region).x_0[0]


def strip(model: DiffusionModel, traj: Trajectory, delta: Union[torch.Tensor, EditSpec, NoiseEdit],
          scales: Sequence[float], window=None, others: Sequence[Union[EditSpec, NoiseEdit]] = (),
          progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
          region: Optional[Region] = None, asymmetric: bool = False) -> torch.Tensor:
    """x_0 (S, C, H, W): one edit at several scales (plus fixed ``others``), batched: the h-space
    ``delta`` (T, C', H', W') with ``window`` and ``asymmetric``, or an EditSpec or NoiseEdit."""
    first = delta if isinstance(delta, (EditSpec, NoiseEdit)) else EditSpec(delta, 1.0, window, asymmetric)
    if first is delta and (window is not None or asymmetric):
        raise TypeError("strip: an edit carries its own window and mode")
    batch = [[replace(first, scale=float(s)), *others] for s in scales]
    return edit_batch(model, traj, batch, progress=progress, cancel=cancel, region=region).x_0
