"""The frozen requests the application layer runs: the edits of previews and strips, and the jobs
(load, sample, invert, discover, export, sessions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

import numpy as np


H_SPACE_POINTS = ("before", "middle", "after")


# --------------------------------------------------------------------------- edits, previews, strips

@dataclass(frozen=True)
class EditItem:
    """One active direction: set, row, scale, timestep window, optional fixed step."""

    set_id: str
    index: int
    scale: float
    window: Optional[Tuple[int, int]] = None
    at_timestep: Optional[int] = None
    asymmetric: bool = False  # Asyrp (EditSpec(asymmetric=True))


@dataclass(frozen=True)
class PreviewRequest:
    """The image with ``edits`` (a slider preview; see :func:`.handlers.previews.run_preview`)."""

    id: int
    edits: Tuple[EditItem, ...]
    progressive: bool = True
    sent_at: float = 0.0  # time.perf_counter() in the UI when the request was made


@dataclass(frozen=True)
class StripRequest:
    """``item`` at several ``scales`` with the ``others`` (see :func:`.handlers.previews.run_strip`)."""

    id: int
    item: EditItem  # scale is ignored
    scales: Tuple[float, ...]
    others: Tuple[EditItem, ...] = ()


# --------------------------------------------------------------------------- job objects

@dataclass(frozen=True)
class LoadModel:
    source: str
    h_space: Optional[str] = "after"  # a point the model lacks (or None): its default point
    device: Optional[str] = None
    guide: Optional[str] = None  # a guide folder or "default" (autoguidance; engine/guidance.py)
    guide_weight: Optional[float] = None
    timesteps: Optional[str] = None  # the timestep spacing sampled at ("power:0.8"), None: the scheduler's own
    loras: Tuple[Tuple[str, float], ...] = ()  # LoRA files and their weights (engine/lora.py)
    model_config: Optional[str] = None  # a checkpoint file's family folder (engine/checkpoint_file.py)
    coalesce: ClassVar[str] = "model"
    label: ClassVar[str] = "Loading model"


@dataclass(frozen=True)
class Prompted:
    """A text-to-image model's prompt, negative prompt and guidance (None: keep the model's)."""
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None
    guidance: Optional[float] = None

    def apply(self, model) -> None:
        model.set_prompt(self.prompt, self.negative_prompt, self.guidance)


@dataclass(frozen=True)
class Sample(Prompted):
    seed: int = 0
    steps: int = 10
    eta: float = 1.0
    coalesce: ClassVar[str] = "source"
    label: ClassVar[str] = "Sampling"


@dataclass(frozen=True)
class Invert(Prompted):
    path: str = ""
    steps: int = 10
    eta: float = 1.0
    coalesce: ClassVar[str] = "source"
    label: ClassVar[str] = "Inverting image"


@dataclass(frozen=True)
class OpenTrajectory:
    path: str
    coalesce: ClassVar[str] = "source"
    label: ClassVar[str] = "Opening trajectory"


@dataclass(frozen=True)
class SaveTrajectory:
    path: str
    label: ClassVar[str] = "Saving trajectory"


@dataclass(frozen=True)
class ImportDirections:
    paths: Tuple[str, ...]
    label: ClassVar[str] = "Importing directions"


@dataclass(frozen=True)
class ExportDirections:
    set_id: str
    indices: Tuple[int, ...]
    labels: Tuple[str, ...]
    path: str
    label: ClassVar[str] = "Exporting directions"


@dataclass(frozen=True)
class DiscoverPCA:
    samples: int = 64
    k: int = 8
    steps: int = 10
    eta: float = 1.0
    seed: int = 0
    mode: str = "per-step"  # or "global"
    solver: str = "auto"  # auto | covariance | incremental (engine.discover.pca)
    prompts: Optional[Tuple[str, ...]] = None  # a conditional model's prompts: every seed under each
    label: ClassVar[str] = "PCA"


@dataclass(frozen=True, eq=False)
class DiscoverJacobian:
    k: int = 3
    steps: Optional[Tuple[int, ...]] = None  # step indices; None: every step
    mask: Optional[np.ndarray] = None  # bool (H, W) at image size
    iterations: int = 20
    contained: Optional[int] = None  # a step index: keep the change inside the mask (needs mask)
    label: ClassVar[str] = "Jacobian"


@dataclass(frozen=True)
class DiscoverSupervised:
    attribute: str = ""
    index_size: int = 256
    examples: int = 32
    classifier: Optional[str] = None  # classifier folder; None: the shipped one
    positive_folder: Optional[str] = None  # or: two folders of labelled images
    negative_folder: Optional[str] = None
    steps: int = 10
    eta: float = 1.0
    index_dir: Optional[str] = None  # where classifier indexes are cached (resumable)
    optimize: int = 0  # > 0: fit a direction through the sampler for this many iterations instead
    train_samples: int = 640  # with optimize: the samples it is fitted on (seeds 0..), 16 an iteration
    region: Optional[np.ndarray] = None  # with optimize: bool (H, W), change h only where it meets this
    keep_in: bool = False  # with optimize: fit for edits kept in the edit region in force (SetRegion)
    keep_in_part: Tuple[str, ...] = ()  # with optimize: fit for edits kept in each sample's own part
    keep_in_grow: int = 3  # ... found by the toy-face segmenter and grown by this many pixels
    every_step: bool = False  # with optimize: fit at every step, not at the default window's
    terms: Tuple[Tuple[str, float], ...] = ()  # with optimize: (name, weight) of the domain's fit terms
    free: Tuple[str, ...] = ()  # with optimize: attributes the fit may move
    skip: Tuple[str, ...] = ()  # with optimize: leave out the samples the classifier reads with these
    preset: Optional[str] = None  # with optimize: the domain's preset the options came from (recorded)
    label: ClassVar[str] = "Supervised"


@dataclass(frozen=True)
class Disentangle:
    target: Tuple[str, int]
    against: Tuple[Tuple[str, int], ...]
    name: Optional[str] = None
    label: ClassVar[str] = "Disentangling"


@dataclass(frozen=True)
class Segment:
    parts: Tuple[str, ...]
    folder: Optional[str] = None
    label: ClassVar[str] = "Segmenting"


@dataclass(frozen=True)
class ExportImage:
    path: str
    edits: Tuple[EditItem, ...]
    set_files: Tuple[Tuple[str, Optional[str]], ...]  # (set_id, file or None)
    original: bool = False
    label: ClassVar[str] = "Exporting image"


@dataclass(frozen=True)
class ExportStrip:
    path: str
    item: EditItem
    scales: Tuple[float, ...]
    others: Tuple[EditItem, ...]
    set_files: Tuple[Tuple[str, Optional[str]], ...]
    label: ClassVar[str] = "Exporting strip"


@dataclass(frozen=True)
class ExportGrid:
    path: str
    rows: Tuple[Tuple[EditItem, Tuple[float, ...]], ...]  # (item, scales) per row
    set_files: Tuple[Tuple[str, Optional[str]], ...]
    label: ClassVar[str] = "Exporting grid"


@dataclass(frozen=True, eq=False)
class SaveSession:
    path: str
    doc: dict
    mask: Optional[np.ndarray] = None
    set_ids: Tuple[str, ...] = ()
    label: ClassVar[str] = "Saving session"


@dataclass(frozen=True)
class LoadSession:
    path: str
    device: Optional[str] = None
    label: ClassVar[str] = "Opening session"


@dataclass(frozen=True)
class ForgetSets:
    """Free the tensors of direction sets the library no longer shows. A job (not a
    direct call) so that jobs queued before the removal still find their sets."""

    set_ids: Tuple[str, ...]
    label: ClassVar[str] = "Tidying up"


@dataclass(frozen=True, eq=False)
class SetRegion:
    """Keep the edits of previews and exports inside ``mask`` (image pixels; None or an
    empty mask: anywhere), with the last ``free_steps`` steps run free to blend the border."""

    mask: Optional[np.ndarray]
    free_steps: int = 1
    label: ClassVar[str] = "Setting the edit region"


@dataclass(frozen=True)
class SetAcceleration:
    """Run the network compiled and/or under bfloat16 autocast (:mod:`...engine.compiled`),
    for the loaded model and every model loaded after."""

    compile: bool = False
    bf16: bool = False
    low_memory: bool = False  # the autoencoder in tiles, one image at a time (engine.model.set_low_memory)
    label: ClassVar[str] = "Setting the engine's speed"


@dataclass(frozen=True)
class Sleep:
    """A job that only counts steps (tests, and to check Cancel)."""

    steps: int = 100
    seconds_per_step: float = 0.01
    label: ClassVar[str] = "Waiting"


def describe(job) -> str:
    return getattr(job, "label", type(job).__name__)
