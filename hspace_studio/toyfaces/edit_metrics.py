"""What an edit does, measured: attribute flips, off-target change, factor correlation,
mask locality. Qt-free; used by ``hspace-studio evaluate`` and the tests."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from ..engine.sampler import EditSpec, Region, edit_batch, sample
from .generator import ATTRIBUTE_NAMES, factor_vector, render_batch
from .quality import classify


def _pixels(model, x0):
    return model.to_pixels(x0).cpu().clamp(-1, 1)


def attribute_shift(model, clf, delta: torch.Tensor, attribute: str, scales, seeds: Sequence[int],
                    steps: int = 10, eta=1.0, trajs=None, referee=None, region=None,
                    checker=None, progress=None, cancel=None) -> Dict[str, Dict]:
    """Push each sample towards the other side of ``attribute``: samples without it get
    ``+scale``, samples with it ``-scale``. Returns, per scale of ``scales`` (keyed by
    ``str(scale)``), the flip rate and the mean absolute change of every other attribute's
    probability; all scales of one sample are decoded in one batch. ``trajs`` are the
    samples of ``seeds`` when the caller has them already. With a ``referee`` (a second
    classifier) each scale also holds its flip rate and off-target change of the same edits
    (under ``"referee"``; which side a sample starts on is its own reading) and the share of
    edited samples it puts on the side the edit aimed at (``target_side``: the classifiers
    can read an unedited sample differently, where its attribute is borderline). With a
    ``region`` (:class:`~hspace_studio.engine.sampler.Region`) every edit is decoded kept
    inside it, as ``edit --region`` does; ``region`` may also be a function of the unedited
    samples' pixels (N, C, H, W) returning one Region per sample, weights (N, 1, h, w) (such
    as each face's mouth found by the segmenter:
    :meth:`~hspace_studio.toyfaces.part_checks.PartChecker.own_region`). With a ``checker``
    (:class:`~hspace_studio.toyfaces.part_checks.PartChecker`) and an attribute it has a check
    for, each scale also holds the share of edits that pass it (``part_check``) and the
    share that flip by the classifier *and* pass it (``checked_flip_rate``)."""
    scales = [float(v) for v in scales]
    a = ATTRIBUTE_NAMES.index(attribute)
    if trajs is None:
        trajs = sample(model, seeds, steps=steps, eta=eta, batch_size=len(seeds), progress=progress,
                       cancel=cancel)
    before = torch.stack([t.x_0 for t in trajs])
    pixels0 = _pixels(model, before)
    _, p0 = classify(clf, pixels0)
    after = []  # (n, S, C, H, W)
    regions = region(pixels0) if callable(region) else None  # every sample's own, in one pass
    for i, (t, p) in enumerate(zip(trajs, p0)):
        sign = 1.0 if p[a] < 0.5 else -1.0
        own = region if regions is None else Region(regions.weights[i:i + 1], regions.free_steps)
        after.append(edit_batch(model, t, [[EditSpec(delta, sign * s)] for s in scales], cancel=cancel,
                                region=own).x_0)
    after = torch.stack(after)
    r0 = None if referee is None else classify(referee, pixels0)[1]
    out = {}
    for j, s in enumerate(scales):
        pixels = _pixels(model, after[:, j])
        out[str(s)], p1 = _shift(clf, p0, pixels, a)
        ok = None if checker is None else checker.check(attribute, pixels0, pixels, p0[:, a] < 0.5)
        if ok is not None:
            flipped = ((p0[:, a] < 0.5) != (p1 < 0.5)).numpy()
            out[str(s)]["part_check"] = float(ok.mean())
            out[str(s)]["checked_flip_rate"] = float((ok & flipped).mean())
        if referee is not None:
            ref, landed = _shift(referee, r0, pixels, a)
            out[str(s)]["referee"] = {k: ref[k] for k in ("flip_rate", "off_target_mean")}
            # where the edit lands by the referee: on the side the edit aimed at (away from
            # the classifier's reading of the sample), whatever the referee read before
            out[str(s)]["referee"]["target_side"] = float(((landed < 0.5) == (p0[:, a] >= 0.5)).float().mean())
    return out


def _shift(clf, p0: torch.Tensor, pixels: torch.Tensor, a: int):
    """The figures of edited ``pixels`` read by ``clf`` against its unedited readings ``p0``,
    and its score of attribute ``a`` on them."""
    _, p1 = classify(clf, pixels)
    flipped = ((p0[:, a] < 0.5) != (p1[:, a] < 0.5)).float()
    change = (p1 - p0).abs().mean(0)
    others = {n: float(change[i]) for i, n in enumerate(ATTRIBUTE_NAMES) if i != a}
    return {"flip_rate": float(flipped.mean()), "off_target_mean": float(np.mean(list(others.values()))),
            "off_target": others, "n": int(pixels.shape[0])}, p1[:, a]


def factor_correlations(model, ds, seeds: Sequence[int], steps: int = 10, k_max: int = 5,
                        progress=None, cancel=None) -> list:
    """For each of the first ``k_max`` directions of ``ds``: the ground-truth factor its
    coefficient correlates with most, over inverted held-out generator images.

    The coefficient of an image on direction k is <h - mean h, d_k> summed over steps.
    """
    from ..engine.inversion import invert

    x, _, facs = render_batch(seeds, model.image_size[0])
    hs = []
    ds = ds.for_timesteps(_timesteps(model, steps))
    for img in torch.from_numpy(x):
        inv = invert(model, img, steps=steps, eta=1.0, h_space=ds.h_space, progress=progress,
                     cancel=cancel)
        hs.append(inv.trajectory.hs.flatten())
    H = torch.stack(hs)
    H = H - H.mean(0, keepdim=True)
    F = {name: np.array([factor_vector(f)[name] for f in facs]) for name in factor_vector(facs[0])}
    out = []
    for k in range(min(k_max, len(ds))):
        coef = (H @ ds.delta_h[k].flatten()).numpy()
        best, best_r = None, 0.0
        for name, v in F.items():
            if v.std() == 0 or coef.std() == 0:
                continue
            r = float(np.corrcoef(coef, v)[0, 1])
            if abs(r) > abs(best_r):
                best, best_r = name, r
        out.append({"direction": ds.labels[k], "factor": best, "r": best_r})
    return out


def _timesteps(model, steps):
    from ..engine.sampler import timesteps_for

    return timesteps_for(model, steps)


def mask_locality(model, traj, delta: torch.Tensor, mask: np.ndarray, scale: float,
                  dilate: int = 2, region=None, cancel=None) -> float:
    """Share of the pixel change (sum of |after - before| over channels) that lies in
    ``mask`` dilated by ``dilate`` pixels; ``region`` (a sampler ``Region``) keeps the edit
    inside a mask while it is decoded."""
    from scipy.ndimage import binary_dilation

    out = edit_batch(model, traj, [[EditSpec(delta, scale)]], region=region, cancel=cancel).x_0
    diff = (_pixels(model, out) - _pixels(model, traj.x_0[None])).abs().sum(1)[0].numpy()
    m = binary_dilation(mask.astype(bool), iterations=dilate) if dilate > 0 else mask.astype(bool)
    total = diff.sum()
    return float(diff[m].sum() / total) if total > 0 else 0.0


def segment(model_pixels: torch.Tensor, segmenter, parts: Sequence[str], names: Sequence[str],
            threshold: Optional[float] = None) -> np.ndarray:
    """Boolean mask (H, W) of the union of ``parts`` predicted by the segmenter."""
    with torch.no_grad():
        lab = segmenter(model_pixels[None].clamp(-1, 1)).argmax(1)[0].numpy()
    idx = [list(names).index(p) for p in parts]
    return np.isin(lab, idx)
