"""Supervised directions: mean h of examples with an attribute minus mean h of examples without.

Two sources of examples:

- **generated samples ranked by a classifier**: an :class:`AnnotationIndex` holds, for N
  seeds, the classifier's scores of the sampled images and the recipe that made them
  (model fingerprint, steps, eta, h-space point, classifier identity) — not the h
  tensors. It is built in batches, saved atomically after every batch, and resumes
  from the seeds already done when run again with the same recipe; one index serves
  every attribute of its classifier. The direction of an attribute is the mean h (all
  steps) of the K top-scored samples minus that of the K bottom-scored ones, their h
  recomputed by sampling their seeds again;
- **labelled real images**: two sets of images (with / without the attribute) are
  inverted and the mean h of their trajectories differenced.

Direction values (docs/architecture.md): ``delta_h`` is the raw mean difference (scale 1 moves
from the negative mean to the positive mean); ``values`` the classifier's score gap
between the positive and negative sets, repeated over T.

Under ``torchrun`` (:mod:`..distributed`) the index is built by every rank into its own
shard file next to the index (resumable), merged by rank 0 at the end, and the example
sums of a direction are split over the ranks and all-reduced.

``against`` projects other attributes' directions (from the same index) out of each
direction (:func:`~..directions.disentangle`, on the whole vector over all steps).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ...core.errors import FileFormatError, ModelMismatchError
from ...core.progress import CancelToken, Progress, ProgressFn
from ..annotate import AttributeClassifier
from ..directions import DirectionSet, disentangle
from ..model import DiffusionModel
from ..etas import EtaLike, eta_json
from ..sampler import sample, timesteps_for
from .annotation_index import (INDEX_FORMAT, INDEX_KIND, AnnotationIndex, build_index,  # noqa: F401 (re-exported)
                               index_recipe, recipe_key, shard_files, shard_path)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def _weighted_h(model: DiffusionModel, seeds: Sequence[int], weights: torch.Tensor, steps: int,
                eta, h_space: str, batch: int, prog: Progress, cancel) -> torch.Tensor:
    """sum_s weights[:, s] * h(seed s) over all steps: (A, T, C, H, W) float64."""
    out = None
    for b in range(0, len(seeds), batch):
        chunk = list(seeds[b:b + batch])
        trajs = sample(model, chunk, steps=steps, eta=eta, h_space=h_space, batch_size=len(chunk),
                       keep_chain=False, progress=lambda d, t, m: prog.step(len(chunk)), cancel=cancel)
        H = torch.stack([tr.hs for tr in trajs]).double()  # (B, T, C, H, W)
        del trajs
        part = torch.einsum("ab,b...->a...", weights[:, b:b + len(chunk)], H)
        out = part if out is None else out + part
    return out


@dataclass
class Examples:
    attribute: str
    positive: List[int]  # seeds, best first
    negative: List[int]  # seeds, lowest first
    gap: float  # mean score of positives - mean score of negatives


def select_examples(index: AnnotationIndex, attribute: str, examples: int) -> Examples:
    """The ``examples`` top- and bottom-scored seeds of ``attribute`` (ties: lower seed first)."""
    a = index.attribute_index(attribute)
    n = len(index)
    k = int(examples)
    if k < 1:
        raise ValueError("--examples must be at least 1")
    if 2 * k > n:
        raise ValueError(f"{k} positive and {k} negative examples need at least {2 * k} samples "
                         f"in the index (it has {n}); raise --index-size or lower --examples")
    sc = np.array([r[a] for r in index.scores], dtype=np.float64)
    seeds = np.array(index.seeds)
    order = np.lexsort((seeds, -sc))  # by score descending, then seed
    pos = order[:k]
    order_neg = np.lexsort((seeds, sc))
    neg = order_neg[:k]
    gap = float(sc[pos].mean() - sc[neg].mean())
    return Examples(index.attributes[a], [int(s) for s in seeds[pos]], [int(s) for s in seeds[neg]], gap)


@dataclass
class SupervisedResult:
    directions: DirectionSet
    examples: List[Examples]
    seconds: float


def index_targets(index, model: DiffusionModel, attributes: Union[str, Sequence[str]]) -> List[str]:
    """The attributes asked of an index (one or a list), once the index is known to be this
    model's; a ModelMismatchError or ValueError otherwise."""
    rec = index.recipe
    if rec["fingerprint"] != model.fingerprint:
        raise ModelMismatchError(f"the index was built with model {rec['fingerprint']}, not the "
                                 f"loaded model {model.fingerprint}")
    targets = [attributes] if isinstance(attributes, str) else list(attributes)
    if not targets:
        raise ValueError("no attribute given")
    return targets


def supervised_directions(model: DiffusionModel, index: AnnotationIndex,
                          attributes: Union[str, Sequence[str]], examples: int = 100,
                          against: Sequence[str] = (), batch: int = 16,
                          progress: Optional[ProgressFn] = None,
                          cancel: Optional[CancelToken] = None) -> SupervisedResult:
    """One direction per attribute from an index (all of its seeds; see ``subset``).

    Each is mean h of the ``examples`` top-scored samples minus mean h of the bottom
    ones, over all steps, with the ``against`` attributes' directions projected out.
    """
    t0 = time.perf_counter()
    rec = index.recipe
    targets = index_targets(index, model, attributes)
    for a in list(targets) + list(against):
        index.attribute_index(a)
    names = [index.attributes[index.attribute_index(a)] for a in targets]
    against_names = [index.attributes[index.attribute_index(a)] for a in against]
    clash = set(names) & set(against_names)
    if clash:
        raise ValueError(f"cannot disentangle {', '.join(sorted(clash))} against itself")
    allnames = names + [a for a in dict.fromkeys(against_names)]
    ex = [select_examples(index, a, examples) for a in allnames]
    union = sorted({s for e in ex for s in e.positive + e.negative})
    pos = {s: i for i, s in enumerate(union)}
    w = torch.zeros(len(allnames), len(union), dtype=torch.float64)
    for j, e in enumerate(ex):
        for s in e.positive:
            w[j, pos[s]] += 1.0 / len(e.positive)
        for s in e.negative:
            w[j, pos[s]] -= 1.0 / len(e.negative)
    steps, eta, h_space = int(rec["steps"]), rec["eta"], rec["h_space"]
    timesteps = timesteps_for(model, steps)
    from .. import distributed as dist

    if dist.world_size() > 1:  # torchrun: each rank sums its block of the seeds, then all-reduce
        lo = len(union) * dist.rank() // dist.world_size()
        hi = len(union) * (dist.rank() + 1) // dist.world_size()
        prog = Progress((hi - lo) * steps, progress if dist.is_main() else None, cancel,
                        f"supervised: sampling {len(union)} example(s) again")
        D = _weighted_h(model, union[lo:hi], w[:, lo:hi], steps, eta, h_space, max(1, int(batch)),
                        prog, cancel)
        if D is None:

            D = torch.zeros(len(allnames), steps, *model.denoiser.h_shape(h_space, model.sample_shape),
                            dtype=torch.float64)
        D = dist.all_reduce_sum(D.cpu()).to(D.device)
    else:
        prog = Progress(len(union) * steps, progress, cancel,
                        f"supervised: sampling {len(union)} example(s) again")
        D = _weighted_h(model, union, w, steps, eta, h_space, max(1, int(batch)), prog, cancel)
    deltas = []
    labels = []
    for j, a in enumerate(names):
        d = D[j]
        if against_names:
            d = disentangle(d, [D[len(names) + i] for i in range(len(against_names))])
            labels.append(f"{a} ⟂ {', '.join(against_names)}")
        else:
            labels.append(a)
        deltas.append(d.float())
    per_dir = []
    for e in ex[:len(names)]:
        per_dir.append({"attribute": e.attribute, "positive_seeds": e.positive,
                        "negative_seeds": e.negative, "score_gap": e.gap})
    params = {
        "method": "supervised", "source": "classifier-index", "examples": int(examples),
        "samples": len(index), "seeds": _seed_record(index.seeds), "steps": steps, "eta": eta,
        "h_space": h_space, "classifier": rec["classifier"], "index": index.path,
        "against": against_names,
        "against_examples": [{"attribute": e.attribute, "positive_seeds": e.positive,
                              "negative_seeds": e.negative, "score_gap": e.gap}
                             for e in ex[len(names):]],
        "directions": per_dir,
    }
    if len(names) == 1:
        params.update(attribute=names[0], positive_seeds=ex[0].positive, negative_seeds=ex[0].negative,
                      score_gap=ex[0].gap)
    ds = DirectionSet(delta_h=torch.stack(deltas), timesteps=timesteps.clone().long(),
                      fingerprint=model.weights_fingerprint, h_space=h_space, method="supervised",
                      labels=labels, values=[[e.gap] * steps for e in ex[:len(names)]], params=params)
    return SupervisedResult(ds, ex, time.perf_counter() - t0)


def _seed_record(seeds: Sequence[int]) -> dict:
    seeds = [int(s) for s in seeds]
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return {"start": seeds[0], "count": len(seeds)}
    return {"list": seeds}


# ----------------------------------------------------------- from labelled images

def list_images(source) -> List[Path]:
    """Image files in a folder (sorted), or the given list of files."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    else:
        folder = Path(source)
        if not folder.exists():
            raise FileFormatError(f"folder not found: {folder}")
        if not folder.is_dir():
            raise FileFormatError(f"{folder} is not a folder of images")
        paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileFormatError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def supervised_from_images(model: DiffusionModel, positive, negative, steps: int = 10,
                           eta: EtaLike = 1.0, h_space: Optional[str] = None, attribute: str = "attribute",
                           classifier: Optional[AttributeClassifier] = None, inversion_seed: int = 0,
                           progress: Optional[ProgressFn] = None,
                           cancel: Optional[CancelToken] = None) -> SupervisedResult:
    """Mean h of the inverted ``positive`` images minus that of the ``negative`` ones.

    ``positive``/``negative`` are folders or lists of image files. With a classifier
    that knows ``attribute``, ``values`` hold its score gap between the two sets;
    otherwise ``values`` is None.
    """
    h_space = model.point(h_space)
    from ..images import load_image
    from ..inversion import invert

    t0 = time.perf_counter()
    pos, neg = list_images(positive), list_images(negative)
    timesteps = timesteps_for(model, steps)
    per_image = 2 * steps if isinstance(eta, (int, float)) and float(eta) == 0 else steps
    prog = Progress((len(pos) + len(neg)) * per_image, progress, cancel, "inverting examples")
    sums: Dict[str, torch.Tensor] = {}
    imgs: Dict[str, list] = {"positive": [], "negative": []}
    notes = []
    for name, paths in (("positive", pos), ("negative", neg)):
        acc = None
        for p in paths:
            img, note = load_image(p, model.image_size)
            if note:
                notes.append(f"{p.name}: {note}")
            inv = invert(model, img, steps=steps, eta=eta, h_space=h_space, seed=inversion_seed,
                         progress=lambda d, t, m: prog.step(), cancel=cancel,
                         origin={"image": str(p)})
            hs = inv.trajectory.hs.double()
            acc = hs if acc is None else acc + hs
            imgs[name].append(img)
        sums[name] = acc / len(paths)
    delta = (sums["positive"] - sums["negative"]).float()
    values = None
    gap = None
    if classifier is not None:
        a = classifier.index_of(attribute)
        sp = classifier.scores(torch.stack(imgs["positive"]))[:, a].mean().item()
        sn = classifier.scores(torch.stack(imgs["negative"]))[:, a].mean().item()
        gap = sp - sn
        values = [[gap] * steps]
    params = {
        "method": "supervised", "source": "labelled-images", "attribute": attribute,
        "positive": [str(p) for p in pos], "negative": [str(p) for p in neg],
        "steps": int(steps), "eta": eta_json(eta, steps), "h_space": h_space,
        "inversion_seed": int(inversion_seed),
        "classifier": classifier.identity if classifier is not None else None, "score_gap": gap,
    }
    if notes:
        params["notes"] = notes[:20]
    ds = DirectionSet(delta_h=delta[None], timesteps=timesteps.clone().long(),
                      fingerprint=model.weights_fingerprint, h_space=h_space, method="supervised",
                      labels=[attribute], values=values, params=params)
    return SupervisedResult(ds, [], time.perf_counter() - t0)
