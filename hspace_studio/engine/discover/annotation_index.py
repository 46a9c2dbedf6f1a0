"""The annotation index of :mod:`.supervised`: for N seeds, a classifier's scores of the
sampled images and the recipe that made them (model fingerprint, steps, eta, h-space point,
classifier identity, prompt), not the h tensors. Built in batches, saved atomically after
every batch, resumed from the seeds already done when run again with the same recipe; under
``torchrun`` every rank builds its own shard file, merged by rank 0 at the end."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ...core.atomic import write_text
from ...core.errors import FileFormatError, ModelMismatchError
from ...core.progress import CancelToken, Progress, ProgressFn
from ..annotate import AttributeClassifier
from ..etas import EtaLike, eta_json, etas_tensor
from ..model import DiffusionModel
from ..sampler import sample, timesteps_for

INDEX_KIND = "hspace-annotation-index"
INDEX_FORMAT = 1


def index_recipe(model: DiffusionModel, classifier: AttributeClassifier, steps: int, eta: EtaLike,
                 h_space: str) -> dict:
    out = {"fingerprint": model.fingerprint, "steps": int(steps), "eta": eta_json(eta, steps),
           "h_space": h_space, "classifier": classifier.identity}
    if model.conditioning:  # a text-to-image model's samples depend on the prompt too
        out["conditioning"] = model.conditioning
    return out


def recipe_key(recipe: dict) -> str:
    """A short hash of a recipe (used for default index file names)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class AnnotationIndex:
    recipe: dict
    seeds: List[int] = field(default_factory=list)
    scores: List[List[float]] = field(default_factory=list)  # (N, A)
    path: Optional[str] = None

    @property
    def attributes(self) -> List[str]:
        return list(self.recipe["classifier"]["attributes"])

    def __len__(self) -> int:
        return len(self.seeds)

    def scores_tensor(self) -> torch.Tensor:
        return torch.tensor(self.scores, dtype=torch.float32).reshape(len(self.seeds), len(self.attributes))

    def attribute_index(self, attribute: str) -> int:
        attrs = self.attributes
        if attribute in attrs:
            return attrs.index(attribute)
        low = [a.lower() for a in attrs]
        if attribute.lower() in low:
            return low.index(attribute.lower())
        raise ValueError(f"unknown attribute '{attribute}' (the classifier has: {', '.join(attrs)})")

    def subset(self, seeds: Sequence[int]) -> "AnnotationIndex":
        pos = {s: i for i, s in enumerate(self.seeds)}
        missing = [s for s in seeds if s not in pos]
        if missing:
            raise ValueError(f"the index lacks {len(missing)} of the requested seeds (e.g. {missing[0]})")
        return AnnotationIndex(self.recipe, [int(s) for s in seeds],
                               [self.scores[pos[s]] for s in seeds], self.path)

    # -- files ----------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"kind": INDEX_KIND, "format": INDEX_FORMAT, "recipe": self.recipe,
                           "seeds": self.seeds, "scores": self.scores}) + "\n"

    def save(self, path=None) -> None:
        path = path or self.path
        write_text(path, self.to_json())
        self.path = str(path)

    @classmethod
    def load(cls, path) -> "AnnotationIndex":
        """Read an index file; every problem with it raises a ``FileFormatError``."""
        import math

        from ...core.jsonfile import read_json

        p = Path(path)
        if p.exists() and not p.is_file():
            raise FileFormatError(f"{p} is not an index file (not a file)")
        if not p.exists():
            raise FileFormatError(f"index file not found: {p}")
        data = read_json(p, "index file")  # FileFormatError: too large, not UTF-8, not JSON
        if not isinstance(data, dict) or data.get("kind") != INDEX_KIND:
            raise FileFormatError(f"{p} is not an annotation index file")
        if data.get("format") != INDEX_FORMAT:
            raise FileFormatError(f"{p}: unsupported index format {data.get('format')!r}"[:200])
        recipe, seeds, scores = data.get("recipe"), data.get("seeds"), data.get("scores")

        def number(v) -> bool:
            return (isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(float(v)))

        try:
            attrs = recipe["classifier"]["attributes"]
            ok = (isinstance(attrs, list) and len(attrs) > 0 and all(isinstance(a, str) for a in attrs)
                  and isinstance(seeds, list) and isinstance(scores, list) and len(seeds) == len(scores)
                  and all(isinstance(s, int) and not isinstance(s, bool) and abs(s) < 2 ** 64
                          for s in seeds)
                  and all(isinstance(r, list) and len(r) == len(attrs) and all(number(v) for v in r)
                          for r in scores)
                  and len(set(seeds)) == len(seeds))
            for key in ("fingerprint", "steps", "eta", "h_space"):
                recipe[key]
            ok = ok and isinstance(recipe["fingerprint"], str) and isinstance(recipe["h_space"], str)
        except (TypeError, KeyError, IndexError, OverflowError):
            ok = False
        if not ok:
            raise FileFormatError(f"{p}: index file is damaged (inconsistent recipe, seeds or scores)")
        return cls(recipe, seeds, [[float(v) for v in r] for r in scores], str(p))


def build_index(model: DiffusionModel, classifier: AttributeClassifier, n_samples: int,
                path=None, steps: int = 10, eta: EtaLike = 1.0, h_space: Optional[str] = None,
                batch: int = 16, seed_start: int = 0, seeds: Optional[Sequence[int]] = None,
                progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None) -> AnnotationIndex:
    """Annotate the samples of seeds ``seed_start .. seed_start + n_samples - 1``.

    With ``path``, an existing index there is resumed (it must have the same recipe)
    and the index is saved atomically after every batch, so an interruption loses at
    most one batch. Returns the whole index (it may hold more seeds than asked for;
    use :meth:`AnnotationIndex.subset`).
    """
    h_space = model.point(h_space)
    if seeds is None:
        if int(n_samples) < 1:
            raise ValueError("the index needs at least one sample")
        seeds = list(range(int(seed_start), int(seed_start) + int(n_samples)))
    seeds = [int(s) for s in seeds]
    timesteps_for(model, steps)
    etas_tensor(eta, steps)
    recipe = index_recipe(model, classifier, steps, eta, h_space)
    from .. import distributed as dist

    if dist.world_size() > 1:  # torchrun: shard the seeds, one shard file per rank
        return _build_index_distributed(model, classifier, seeds, path, recipe, steps, eta, h_space,
                                        batch, progress, cancel)
    index = AnnotationIndex(recipe, path=str(path) if path is not None else None)
    if path is not None and Path(path).exists():
        index = _load_same_recipe(path, recipe)
    done = set(index.seeds)
    todo = [s for s in seeds if s not in done]
    prog = Progress(len(todo) * steps, progress, cancel, f"annotating {len(todo)} sample(s)")
    _annotate_into(index, model, classifier, todo, steps, eta, h_space, batch, prog, cancel,
                   save=path is not None)
    if path is not None and not Path(path).exists():
        index.save(path)
    return index


def shard_path(path, r: int, n: int) -> Path:
    """The shard file of rank ``r`` of ``n`` of a distributed build of the index ``path``."""
    return Path(f"{path}.rank{r}of{n}")


def shard_files(path) -> List[Path]:
    """Shard files left next to ``path`` by distributed builds (any number of processes)."""
    import glob

    p = Path(path)
    return sorted(q for q in p.parent.glob(glob.escape(p.name) + ".rank*of*") if q.is_file())


def _annotate_into(index: AnnotationIndex, model, classifier, seeds, steps, eta, h_space, batch,
                   prog: Progress, cancel, save: bool) -> None:
    """Sample and score ``seeds`` in batches, appending to ``index`` (saved atomically at its
    own path after every batch when ``save``): an interruption loses at most one batch."""
    batch = max(1, int(batch))
    for b in range(0, len(seeds), batch):
        chunk = seeds[b:b + batch]
        trajs = sample(model, chunk, steps=steps, eta=eta, h_space=h_space, batch_size=len(chunk),
                       keep_chain=False, progress=lambda d, t, m: prog.step(len(chunk)), cancel=cancel)
        x0 = torch.stack([tr.x_0 for tr in trajs])
        del trajs
        sc = classifier.scores(model.to_pixels(x0).cpu())
        if cancel is not None:
            cancel.check()
        index.seeds.extend(chunk)
        index.scores.extend([[float(v) for v in row] for row in sc.tolist()])
        if save:
            index.save()


def _load_same_recipe(path, recipe: dict) -> AnnotationIndex:
    old = AnnotationIndex.load(path)
    if old.recipe != recipe:
        diff = [k for k in recipe if old.recipe.get(k) != recipe[k]]
        raise ModelMismatchError(f"index {path} was built with another {', '.join(diff)}; "
                                 f"pass another --index file")
    return old


def _build_index_distributed(model, classifier, seeds, path, recipe, steps, eta, h_space, batch,
                             progress, cancel) -> AnnotationIndex:
    """:func:`build_index` on several processes (``torch.distributed``).

    Every rank reads the index and the shard files of earlier interrupted runs, then
    annotates its contiguous block of the seeds still to do, saving its own shard file
    (``<index>.rank{r}of{n}``, same format as an index) atomically after every batch.
    At the end the shards are gathered; rank 0 writes the merged index (the earlier
    index's seeds first, then the new ones in the order of ``seeds``: the same file as
    one process writes) and removes the shard files. Every rank returns the index.
    """
    from .. import distributed as dist

    r, n = dist.rank(), dist.world_size()
    if r != 0:
        progress = None
    base = AnnotationIndex(recipe, path=str(path) if path is not None else None)
    done: Dict[int, List[float]] = {}
    found: List[Path] = []
    own = AnnotationIndex(recipe)
    if path is not None:
        if Path(path).exists():
            base = _load_same_recipe(path, recipe)
        found = shard_files(path)
        for f in found:
            part = _load_same_recipe(f, recipe)
            done.update(zip(part.seeds, part.scores))
            if f.resolve() == shard_path(path, r, n).resolve():
                own = part  # keep what this rank's shard already holds
        own.path = str(shard_path(path, r, n))
    dist.barrier()  # every rank has read the shards before any rank rewrites its own
    have = set(base.seeds)
    todo = [s for s in seeds if s not in have and s not in done]
    mine = dist.shard(todo)
    prog = Progress(len(mine) * steps, progress, cancel,
                    f"annotating {len(todo)} sample(s) on {n} processes")
    _annotate_into(own, model, classifier, mine, steps, eta, h_space, batch, prog, cancel,
                   save=path is not None)
    for part in dist.all_gather_object((own.seeds, own.scores)):
        done.update(zip(*part))
    order = {s: i for i, s in enumerate(seeds)}
    new = sorted((s for s in done if s not in have), key=lambda s: (order.get(s, len(order)), s))
    index = AnnotationIndex(recipe, list(base.seeds) + new,
                            [list(v) for v in base.scores] + [done[s] for s in new],
                            str(path) if path is not None else None)
    if path is not None:
        dist.barrier()  # every shard is final
        if r == 0:
            index.save(path)
            for f in set(found) | {shard_path(path, q, n) for q in range(n)}:
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass
        dist.barrier()
    return index


# --------------------------------------------------------------- directions from h
