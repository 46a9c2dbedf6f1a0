"""Classifier-optimised directions: one change of h, shared by all samples, fitted through
the sampling chain so that it flips an attribute while the classifier's other
attributes stay where they were.

The mean-difference direction (:mod:`.supervised`) averages h over examples that differ
in many ways besides the attribute; in a domain whose features move around the image,
the average is a blurred template that changes the attribute in few samples. Here the
direction ``D`` (T, C, H, W) is instead the solution of

    min_D  mean_i softplus(margin - s_i * z_a(x_0(i; s_i D)))
           + keep * mean_i sum_{b != a, b not free} (p_b(x_0(i; s_i D)) - p_b(x_0(i; 0)))^2
           + still * mean_i mean_pixels (x_0(i; s_i D) - x_0(i; 0))^2

over training samples i (a fresh minibatch of them at every Adam step), where ``x_0(i; s D)`` is sample i decoded with ``s * D[t]`` added
to h at every step (its x_T and noise fixed, as an edit), ``s_i`` is +1 for a sample
without the attribute and -1 for one with it (the edit pushes each towards the other
side, the way edits are measured), ``z_a`` is the attribute's logit (the raw score for
classifiers without a sigmoid) and ``p_b`` the other scores. Adam on D, gradients by
backpropagation through every step (each step checkpointed, so memory is one step's
activations plus the chain of x); the classifier must be differentiable.

Scale 1 of the result is the change it was fitted at. It is not the paper's method (a
mean difference of examples); it is measured beside it by ``hspace-studio evaluate``.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ...core.progress import CancelToken, Progress, ProgressFn
from ..annotate import AttributeClassifier
from ..directions import DirectionSet
from ..ddim import ddim_step
from ..model import DiffusionModel
from ..etas import EtaLike, eta_json
from ..sampler import (Region, noise_levels, prepare_scheduler, region_blend, sample, steps_in_window,
                       timesteps_for)
from ..trajectory import Trajectory
from .supervised import _seed_record


def default_window(model: DiffusionModel) -> Tuple[int, int]:
    """The timesteps a fitted change is applied at by default: the last 70% of the
    schedule (699:0 on a 1000-step model). Left free, the fit also changes the first
    steps, where a face's position, pose and width are laid down; on the toy-face model
    that moved the geometric attributes by about 0.2 for every fitted attribute, and this
    window cut it (``resources/MODEL_CARD.md``)."""
    return (int(round(0.7 * model.scheduler.config.num_train_timesteps)) - 1, 0)


def region_cells(mask, hw: Tuple[int, int]) -> torch.Tensor:
    """The positions of an h-space grid ``hw`` whose part of the image meets ``mask`` (image
    pixels, True inside), as a float (H, W) of 0 and 1. A mask that meets no position is refused."""
    m = torch.as_tensor(mask).float()
    if m.dim() != 2:
        raise ValueError(f"a region is one mask of image pixels (H, W), not of shape {tuple(m.shape)}")
    cells = (F.adaptive_max_pool2d(m[None, None], tuple(int(v) for v in hw))[0, 0] > 0).float()
    if not bool(cells.any()):
        raise ValueError("the region mask is empty: it meets no position of h")
    return cells


@dataclass
class OptimizedResult:
    directions: DirectionSet
    history: List[dict]  # per iteration: loss, target loss, off-target change, flip rate
    seconds: float


def _edited_x0(model: DiffusionModel, trajs: Sequence[Trajectory], signs: torch.Tensor,
               D: torch.Tensor, active: Optional[torch.Tensor] = None,
               keep_in: Optional[Region] = None) -> torch.Tensor:
    """x_0 of ``trajs`` decoded with ``signs[i] * D[t]`` added to h at every step (at the
    steps where ``active`` is True; a D of one row is the same change at every step),
    with the autograd graph back to D. With ``keep_in`` every step but its last
    ``free_steps`` sets x outside the region back to the unedited chain (the trajectories
    must hold their chain), as an edit decoded with that region is."""
    dev = model.device
    ts = trajs[0].timesteps
    prepare_scheduler(model, ts)
    levels = noise_levels(model, ts)
    x = torch.stack([t.x_T for t in trajs]).to(dev, torch.float32)
    zs = torch.stack([t.zs for t in trajs]).to(dev, torch.float32)
    etas = trajs[0].etas
    s = signs.to(dev).view(-1, 1, 1, 1)
    point = trajs[0].h_space

    def step(x, d, i):
        t = model.scheduler.timesteps[i]
        edit = None if d is None else (lambda h: h + (s * d).to(h.dtype))
        with model.denoiser.hook(point, edit=edit):
            out = model.denoiser(model.network_input(x, t).to(model.dtype), t).float()
        eta = float(etas[i])
        x, _ = ddim_step(model.scheduler, out, t, x, eta, zs[:, i] if eta > 0 else None)
        if eta > 0 and levels[i] == 0:  # the residual step of the engine's chain
            x = x + zs[:, i]
        return x

    blend = None if keep_in is None else region_blend(trajs, keep_in, dev)
    for i in range(ts.shape[0]):
        on = active is None or bool(active[i])
        x = checkpoint(step, x, D[i if D.shape[0] > 1 else 0] if on else None, i, use_reentrant=False)
        if blend is not None:
            x = blend(i, x)
    return x


@contextmanager
def _frozen(*modules):
    """No gradients for the weights of ``modules`` (None and non-modules skipped) while active."""
    params = [p for m in modules if isinstance(m, torch.nn.Module) for p in m.parameters()
              if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _logit(scores: torch.Tensor, probabilities: bool) -> torch.Tensor:
    return torch.logit(scores, eps=1e-6) if probabilities else scores


def objective(model: DiffusionModel, classifier: AttributeClassifier, trajs: Sequence[Trajectory],
              signs: torch.Tensor, p0: torch.Tensor, D: torch.Tensor, a: int, keep: float,
              margin: float, active: Optional[torch.Tensor] = None, still: float = 0.0,
              before: Optional[torch.Tensor] = None, free: Sequence[int] = (),
              keep_in: Optional[Region] = None, part_term=None, part_weight: float = 1.0):
    """The module's objective summed (not averaged) over ``trajs``, and its parts (sums
    too): target loss, mean absolute off-target score change (of every other attribute),
    flipped samples, mean squared pixel change. ``before`` are the unedited samples' pixels
    when the caller has them; the attributes of ``free`` are left out of the keep term;
    ``keep_in`` decodes the edits kept inside its region; ``part_term(after, before, signs)``
    (per-sample penalties of the edited pixels, weighed by ``part_weight``) adds a term of
    the caller's, such as a segmenter's reading of the part the attribute is drawn in."""
    x0 = _edited_x0(model, trajs, signs, D, active, keep_in)
    pixels = model.to_pixels(x0, grad=True)
    p = classifier.differentiable_scores(pixels).float().to(p0.device)
    z = _logit(p[:, a], classifier.probabilities)
    target = F.softplus(float(margin) - signs * z).sum()
    others = [b for b in range(p.shape[1]) if b != a]
    change = p[:, others] - p0[:, others]
    kept = torch.tensor([b not in free for b in others], dtype=change.dtype, device=change.device)
    loss = target + float(keep) * (change.pow(2) * kept).sum()
    if before is None:
        with torch.no_grad():
            before = model.to_pixels(torch.stack([t.x_0 for t in trajs]).to(x0.device, torch.float32))
    moved = (pixels.float() - before.float()).pow(2).flatten(1).mean(1).sum().to(loss.device)
    if still > 0:
        loss = loss + float(still) * moved
    part = None
    if part_term is not None and part_weight > 0:
        part = part_term(pixels.float(), before.float().to(pixels.device), signs.to(pixels.device)).sum()
        loss = loss + float(part_weight) * part.to(loss.device)
    thr = classifier.threshold
    stats = {"loss": loss.item(), "target": target.item(),
             "off_target": float(change.detach().abs().mean(1).sum()) if others else 0.0,
             "flipped": float(((p[:, a] < thr) != (p0[:, a] < thr)).float().sum()),
             "moved": moved.item()}
    if part is not None:
        stats["part"] = part.item()
    return loss, stats


def optimized_direction(model: DiffusionModel, classifier: AttributeClassifier, attribute: str,
                        seeds: Sequence[int], steps: int = 10, eta: EtaLike = 1.0,
                        h_space: Optional[str] = None, iters: int = 40, lr: float = 0.25,
                        keep: float = 30.0, margin: float = 2.0, batch: int = 16,
                        window: Optional[Tuple[int, int]] = None, shared: bool = False,
                        still: float = 0.0, per_channel: bool = False, region=None,
                        free: Sequence[str] = (), keep_in: Union[Region, Callable, None] = None,
                        part_term=None, part_weight: float = 1.0, part_name: Optional[str] = None,
                        lr_end: float = 1.0, skip: Sequence[str] = (), progress: Optional[ProgressFn] = None,
                        cancel: Optional[CancelToken] = None) -> OptimizedResult:
    """Fit one direction for ``attribute`` on the samples of ``seeds`` (see the module).

    Every iteration samples the next ``batch`` seeds of ``seeds`` (cycling when it runs
    out) and takes one Adam step on them, so with ``iters * batch`` seeds no sample is
    seen twice and the fit does not learn its training samples by heart. ``lr`` is Adam's
    step in units of the RMS of h (so it does not depend on the model's scale of h);
    ``keep`` weighs the other attributes' squared score change. ``window`` (two diffusion
    timesteps, inclusive, either order) limits the change to the steps inside it (zero at
    the others); ``shared`` fits one change of h used at every such step instead of one
    per step; ``per_channel`` fits one number per channel of h, the same at every position
    (a change that does not depend on where a part lies in the image). ``still`` weighs
    the mean squared change of the image's pixels: a change that moves the whole face (its
    position, pose or width) costs more than one that changes a part. ``region`` (a mask
    in image pixels, True inside) limits the change to the positions of h whose part of the
    image meets the mask; elsewhere it is zero. ``free`` names attributes the change may
    move (left out of the keep term): those that cannot stay when the target flips, such as
    the other values of the same factor (the other hair colours for blond hair).
    ``keep_in`` (a :class:`~hspace_studio.engine.sampler.Region` at the resolution of x)
    fits the change for edits decoded kept inside that region of the image, as ``edit
    --region`` decodes them: the direction is then meant to be used with that region. It may
    also be a function of the unedited samples' pixels (N, C, H, W) in [-1, 1] returning a
    Region with one region per sample (weights (N, 1, h, w)), such as each face's own mouth
    found by a segmenter; a dict in its ``recipe`` attribute (how to rebuild it) is added to
    the file's ``kept_in`` parameters.
    ``part_term`` (``fn(after, before, signs) -> (N,)`` on pixels in [-1, 1], with
    gradients) adds ``part_weight`` times its sum to the loss: a penalty the classifier
    cannot give, e.g. for an edit that erases the part it should change; ``part_name``
    names it in the file's parameters. ``lr_end`` (0-1] ends the step at that fraction of
    ``lr`` along a cosine (1, the default, keeps it constant): Adam's steps stay about
    ``lr`` in size to the end, so a constant step leaves the last iterate as noisy as one
    minibatch makes it, and a falling one settles it. ``skip`` names attributes whose
    samples the fit leaves out (read by ``classifier`` on each unedited sample, so a batch
    may hold fewer than ``batch``): e.g. ``bald`` for a hair colour, which a bald head has no
    hair to show.
    """
    h_space = model.point(h_space)
    t0 = time.perf_counter()
    a = classifier.index_of(attribute)
    free_idx = sorted({classifier.index_of(n) for n in free} - {a})
    skip = [str(n) for n in skip]
    skip_idx = sorted({classifier.index_of(n) for n in skip})
    if a in skip_idx:
        raise ValueError(f"the fit cannot leave out the samples read as {classifier.attributes[a]}, "
                         "the attribute it fits")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("the optimised direction needs at least one training sample")
    if int(iters) < 1:
        raise ValueError("iterations must be at least 1")
    batch = min(max(1, int(batch)), len(seeds))
    if not 0 < float(lr_end) <= 1:
        raise ValueError(f"the final learning-rate fraction must lie in (0, 1], not {lr_end}")
    if region is not None:
        region_cells(region, (1, 1))  # refuse a bad mask before sampling
    prog = Progress((2 * int(iters) + 1) * steps, progress, cancel,
                    f"optimising a {classifier.attributes[a]} direction")
    thr = classifier.threshold

    def draw(first: int):
        """The samples of ``batch`` seeds from ``first`` on, their scores, edit signs and
        pixels."""
        chunk = [seeds[(first + j) % len(seeds)] for j in range(batch)]
        trajs = sample(model, chunk, steps=steps, eta=eta, h_space=h_space, batch_size=len(chunk),
                       keep_chain=keep_in is not None, progress=lambda d, t, m: prog.step(), cancel=cancel)
        with torch.no_grad():
            pixels = model.to_pixels(torch.stack([t.x_0 for t in trajs]))
            p0 = classifier.differentiable_scores(pixels).float()
            if skip_idx:
                kept = (p0[:, skip_idx] < thr).all(1)
                if not bool(kept.any()):
                    raise ValueError(f"every sample of a batch of {batch} was read as "
                                     f"{' or '.join(skip)}: nothing left to fit on")
                trajs = [t for t, k in zip(trajs, kept.tolist()) if k]
                p0, pixels = p0[kept], pixels[kept]
            region = keep_in(pixels.clamp(-1, 1)) if per_sample else keep_in
        return trajs, p0, torch.where(p0[:, a] < thr, 1.0, -1.0), pixels, region

    per_sample = keep_in is not None and not isinstance(keep_in, Region)
    ts = timesteps_for(model, steps)
    active = steps_in_window(ts, window)
    if not bool(active.any()):
        raise ValueError(f"no step of the {steps}-step schedule lies in the window {window[0]}:{window[1]} "
                         f"(timesteps {ts.min().item()}..{ts.max().item()})")
    first = draw(0)  # the first iteration's samples; the result is measured on them too
    rms = float(torch.stack([t.hs for t in first[0]]).float().pow(2).mean().sqrt())
    shape = first[0][0].hs.shape
    dshape = ((1,) if shared else (shape[0],)) + (tuple(shape[1:2]) + (1,) * (len(shape) - 2)
                                                  if per_channel else tuple(shape[1:]))
    cells = None if region is None else region_cells(region, tuple(shape[2:])).to(model.device)
    D = torch.zeros(dshape, dtype=torch.float32, device=model.device, requires_grad=True)

    def change():
        return D if cells is None else D * cells

    opt = torch.optim.Adam([D], lr=float(lr) * rms)
    n_it = int(iters)

    def rate(it: int) -> float:  # the fraction of lr at iteration ``it``: a cosine to lr_end
        return float(lr_end) + (1 - float(lr_end)) * 0.5 * (1 + math.cos(math.pi * it / max(1, n_it - 1)))

    history: List[dict] = []
    with _frozen(*model.denoiser.networks(), model.vae, getattr(classifier, "module", None)):
        for it in range(int(iters)):
            trajs, p0, signs, pixels, region = first if it == 0 else draw(it * batch)
            opt.zero_grad(set_to_none=True)
            for g in opt.param_groups:
                g["lr"] = float(lr) * rms * rate(it)
            loss, stats = objective(model, classifier, trajs, signs, p0, change(), a, keep, margin, active,
                                    still, pixels, free_idx, region, part_term, part_weight)
            (loss / len(trajs)).backward()
            opt.step()
            prog.step(steps)
            history.append({k: v / len(trajs) for k, v in stats.items()})
    delta = change().detach().float().cpu().expand(shape).clone()
    delta[~active] = 0
    trajs, p0, signs, _, region = first  # the change the result makes on the first training samples
    with torch.no_grad():
        x0 = _edited_x0(model, trajs, signs, delta.to(model.device), keep_in=region)
        p = classifier.differentiable_scores(model.to_pixels(x0)).float()
        gain = float((signs * (p[:, a] - p0[:, a])).mean())
    prog.step(steps)
    name = classifier.attributes[a]
    params_out = {
        "method": "supervised", "source": "optimized", "attribute": name, "steps": int(steps),
        "eta": eta_json(eta, steps),
        "h_space": h_space, "classifier": classifier.identity, "seeds": _seed_record(seeds), "batch": batch,
        "samples_seen": int(iters) * batch, "iterations": int(iters), "lr": float(lr), "lr_end": float(lr_end),
        "keep": float(keep), "margin": float(margin), "score_change": gain,
        "window": None if window is None else [int(v) for v in window], "shared": bool(shared),
        "still": float(still), "per_channel": bool(per_channel),
        "region_cells": None if cells is None else int(cells.sum()),
        "free": [classifier.attributes[b] for b in free_idx],
        "skip": [classifier.attributes[b] for b in skip_idx],
        "kept_in": None if keep_in is None else (
            {"per_sample": True, "free_steps": int(first[4].free_steps), **getattr(keep_in, "recipe", {})}
            if per_sample else
            {"pixels": int((keep_in.weights > 0).sum()), "free_steps": int(keep_in.free_steps)}),
        "part_term": None if part_term is None else {"name": part_name or "custom", "weight": float(part_weight)},
        "final": history[-1],
    }
    ds = DirectionSet(delta_h=delta[None], timesteps=ts.clone().long(), fingerprint=model.weights_fingerprint,
                      h_space=h_space, method="supervised", labels=[f"{name} (optimised)"],
                      values=[[gain] * int(ts.shape[0])], params=params_out)
    return OptimizedResult(ds, history, time.perf_counter() - t0)
