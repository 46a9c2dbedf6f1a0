"""Suggested names for unsupervised directions, measured with an attribute classifier.

Each direction is applied at a few scales (e.g. -2 and +2) to a handful of sampled
images; the classifier scores the edited images, and the attributes whose scores move
most (the mean over samples of the least-squares slope of the score change against the
scale, multiplied by the largest scale: for scales +-s this is
(score(+s) - score(-s)) / 2) are reported, e.g. ``PC 3: smiling +0.41, mouth_open +0.12``.

Default scales depend on the direction's units: +-2 for PCA (sigma), +-1 for
supervised and disentangled directions (one mean difference), and for unit-vector
directions (Jacobian, others) a scale that moves h by 30% of its mean norm.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence

import torch

from ...core.errors import ModelMismatchError
from ...core.progress import CancelToken, Progress, ProgressFn
from ..annotate import AttributeClassifier
from ..directions import DirectionSet
from ..model import DiffusionModel
from ..sampler import EditSpec, edit_batch, sample

RELATIVE_SCALE = 0.3


@dataclass
class AttributeEffect:
    attribute: str
    change: float  # signed effect at the largest scale (see the module docstring)
    plus: float  # mean score change at the largest positive scale (vs unedited)
    minus: float  # mean score change at the most negative scale (vs unedited)


@dataclass
class DirectionName:
    index: int
    label: str  # the direction's label before naming
    scales: List[float]
    effects: List[AttributeEffect]  # all attributes, largest |change| first
    suggestion: str  # e.g. "smiling +0.41, mouth_open +0.12"
    suggested_label: Optional[str]  # None if no attribute moved enough

    def line(self) -> str:
        return f"{self.label}: {self.suggestion}"


@dataclass
class NamingResult:
    names: List[DirectionName]
    seeds: List[int]
    classifier: dict
    params: dict = field(default_factory=dict)


def default_scales(ds: DirectionSet, k: int, h_norm: float) -> List[float]:
    if ds.method == "pca":
        return [-2.0, 2.0]
    if ds.method in ("supervised", "disentangled"):
        return [-1.0, 1.0]
    norm = float(ds.delta_h[k].flatten(1).norm(dim=1).mean())
    s = RELATIVE_SCALE * h_norm / norm if norm > 0 else 1.0
    return [-s, s]


def _describe(effects: Sequence[AttributeEffect], top: int, min_change: float):
    strong = [e for e in effects[:top] if abs(e.change) >= min_change]
    if not strong:
        e = effects[0]
        return f"no clear attribute (largest: {e.attribute} {e.change:+.2f})", None
    text = ", ".join(f"{e.attribute} {e.change:+.2f}" for e in strong)
    label = ", ".join(f"{'+' if e.change > 0 else '-'}{e.attribute}" for e in strong[:2])
    return text, label


def name_directions(model: DiffusionModel, directions: DirectionSet, classifier: AttributeClassifier,
                    samples: int = 8, scales: Optional[Sequence[float]] = None,
                    seeds: Optional[Sequence[int]] = None, seed_start: int = 0,
                    steps: Optional[int] = None, eta=None, indices: Optional[Sequence[int]] = None,
                    at_step: Optional[int] = None, top: int = 3, min_change: float = 0.02,
                    batch: int = 16, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None) -> NamingResult:
    """Measure which attributes each direction moves (see the module docstring).

    ``steps``/``eta`` default to the direction set's recipe (else 10 and 1.0);
    ``indices`` selects directions (default all); ``at_step`` applies that step's
    vector at every step (masked Jacobian directions).
    """
    ds = directions
    if ds.fingerprint != model.fingerprint:
        raise ModelMismatchError(f"the directions were made for model {ds.fingerprint}, not the "
                                 f"loaded model {model.fingerprint}")
    if seeds is None:
        if int(samples) < 1:
            raise ValueError("--samples must be at least 1")
        seeds = list(range(int(seed_start), int(seed_start) + int(samples)))
    seeds = [int(s) for s in seeds]
    if steps is None:
        steps = int(ds.params.get("steps", 10)) if isinstance(ds.params.get("steps"), int) else 10
    if eta is None:
        e = ds.params.get("eta", 1.0)
        ok = isinstance(e, (int, float)) or (isinstance(e, list) and len(e) == steps)
        eta = e if ok else 1.0
    idx = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    for i in idx:
        if not 0 <= i < len(ds):
            raise IndexError(f"direction index {i} out of range (the file has {len(ds)})")
    if scales is not None:
        scales = [float(s) for s in scales]
        if not scales or all(s == 0 for s in scales):
            raise ValueError("--scales needs at least one non-zero scale")
    batch = max(1, int(batch))
    n_scales = len(scales) if scales is not None else 2
    n_edits = len(idx) * n_scales
    per_traj = -(-n_edits // batch)
    # one unit per diffusion step of a batch: sampling, then the edits of each image
    n_batches = -(-len(seeds) // batch)
    prog = Progress(steps * (n_batches + len(seeds) * per_traj), progress, cancel, "naming: sampling")
    trajs = sample(model, seeds, steps=steps, eta=eta, h_space=ds.h_space, batch_size=batch,
                   keep_chain=True, progress=lambda d, t, m: prog.step(), cancel=cancel)
    ds.check_model(model.weights_fingerprint, ds.h_space, tuple(trajs[0].hs.shape[1:]))
    dst = ds.for_timesteps(trajs[0].timesteps)
    h_norm = float(torch.stack([t.hs.flatten(1).norm(dim=1).mean() for t in trajs]).mean())
    base_imgs = model.to_pixels(torch.stack([t.x_0 for t in trajs])).cpu()
    base = classifier.scores(base_imgs)  # (N, A)
    per_dir_scales = {i: (list(scales) if scales is not None else default_scales(ds, i, h_norm))
                      for i in idx}
    jobs = [(i, s) for i in idx for s in per_dir_scales[i]]
    deltas = {i: dst.steps_delta(i, at_step) for i in idx}
    A = len(classifier.attributes)
    # mean over samples of the score change of each (direction, scale)
    change = torch.zeros(len(jobs), A, dtype=torch.float64)
    prog.message = "naming: editing"
    for n, traj in enumerate(trajs):
        for b in range(0, len(jobs), batch):
            chunk = jobs[b:b + batch]
            res = edit_batch(model, traj, [[EditSpec(deltas[i], s)] for i, s in chunk],
                             progress=lambda d, t, m: prog.step(), cancel=cancel)
            sc = classifier.scores(model.to_pixels(res.x_0).cpu()).double()
            change[b:b + len(chunk)] += (sc - base[n].double()) / len(trajs)
    names = []
    for i in idx:
        rows = [j for j, (ii, _) in enumerate(jobs) if ii == i]
        sv = torch.tensor([jobs[j][1] for j in rows], dtype=torch.float64)
        d = change[rows]  # (S, A)
        smax = float(sv.abs().max())
        slope = (sv[:, None] * d).sum(0) / (sv ** 2).sum()
        eff = slope * smax
        ip, im = int(sv.argmax()), int(sv.argmin())
        effects = [AttributeEffect(classifier.attributes[a], float(eff[a]),
                                   float(d[ip, a]) if sv[ip] > 0 else 0.0,
                                   float(d[im, a]) if sv[im] < 0 else 0.0) for a in range(A)]
        effects.sort(key=lambda e: -abs(e.change))
        text, label = _describe(effects, top, min_change)
        names.append(DirectionName(i, ds.labels[i], [float(s) for s in sv], effects, text,
                                   f"{ds.labels[i]}: {label}" if label else None))
    params = {"classifier": classifier.identity, "seeds": seeds, "steps": steps,
              "eta": eta, "at_step": at_step, "top": top, "min_change": min_change,
              "h_norm": h_norm}
    return NamingResult(names, seeds, classifier.identity, params)


def apply_names(directions: DirectionSet, result: NamingResult) -> DirectionSet:
    """A copy of ``directions`` whose labels are the suggested ones (where there is one),
    with the measurements recorded in ``params['naming']``."""
    labels = list(directions.labels)
    for n in result.names:
        if n.suggested_label:
            labels[n.index] = n.suggested_label
    params = dict(directions.params)
    params["naming"] = dict(result.params, results=[
        {"index": n.index, "label_before": n.label, "scales": n.scales, "suggestion": n.suggestion,
         "effects": [[e.attribute, round(e.change, 5)] for e in n.effects]} for n in result.names])
    return replace(directions, labels=labels, params=params)
