"""Jobs the engine worker runs (request types, engine state, handlers), without Qt.

Everything here runs on the GUI's worker thread (``gui/worker.py``): it may use torch.
The UI builds the frozen job objects below and reads the plain results (numpy
images, :class:`~hspace_studio.core.session.SetState` records, info dataclasses).

Discovery goes through a thin adapter (:func:`discover_pca`, :func:`discover_jacobian`,
:func:`discover_supervised`) over ``engine/discover`` (``pca.pca_directions``,
``jacobian.jacobian_directions``, ``supervised.build_index`` +
``supervised.supervised_directions`` or ``supervised.supervised_from_images``); each
returns a result whose ``directions`` (a ``DirectionSet``) lands in the library.
"""
from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, Optional, Tuple

import numpy as np

from ..core.errors import FileFormatError, HSpaceError, ModelLoadError, ModelMismatchError
from ..core.recipe import with_model_settings
from ..core.session import SetState, DirectionState, default_range, read_session, write_session
from ..core.spacing import spacing_key

H_SPACE_POINTS = ("before", "middle", "after")


# --------------------------------------------------------------------------- job objects

@dataclass(frozen=True)
class LoadModel:
    source: str
    h_space: str = "after"
    device: Optional[str] = None
    guide: Optional[str] = None  # a guide folder or "default" (autoguidance; engine/guidance.py)
    guide_weight: Optional[float] = None
    timesteps: Optional[str] = None  # the timestep spacing sampled at ("power:0.8"), None: the scheduler's own
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
    edits: tuple  # EditItem
    set_files: Tuple[Tuple[str, Optional[str]], ...]  # (set_id, file or None)
    original: bool = False
    label: ClassVar[str] = "Exporting image"


@dataclass(frozen=True)
class ExportStrip:
    path: str
    item: object  # EditItem
    scales: Tuple[float, ...]
    others: tuple
    set_files: Tuple[Tuple[str, Optional[str]], ...]
    label: ClassVar[str] = "Exporting strip"


@dataclass(frozen=True)
class ExportGrid:
    path: str
    rows: Tuple[Tuple[object, Tuple[float, ...]], ...]  # (EditItem, scales) per row
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
class Sleep:
    """A job that only counts steps (tests, and to check Cancel)."""

    steps: int = 100
    seconds_per_step: float = 0.01
    label: ClassVar[str] = "Waiting"


def describe(job) -> str:
    return getattr(job, "label", type(job).__name__)


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class ModelInfo:
    source: str
    fingerprint: str
    description: str
    image_size: Tuple[int, int]
    sample_shape: Tuple[int, ...]
    h_space: str
    h_shape: Tuple[int, ...]
    is_latent: bool
    num_train_timesteps: int
    weights_fingerprint: str = ""  # what direction files are made for (no guide)
    guide: Optional[str] = None
    guide_weight: Optional[float] = None
    timesteps: Optional[str] = None
    conditioning: Optional[dict] = None  # a text-to-image model's prompt settings (None: takes none)
    advice: Optional[dict] = None  # the domain's advice per attribute (engine.domain.Domain.advice)


@dataclass(frozen=True)
class TrajectoryInfo:
    gen: int
    image: np.ndarray  # uint8 (H, W, 3)
    timesteps: Tuple[int, ...]
    source: dict  # {"kind": "seed"|"image"|"trajectory", ...}
    origin: dict
    h_space: str
    note: str = ""
    psnr: Optional[float] = None


@dataclass(frozen=True)
class SessionPayload:
    doc: dict
    model: Optional[ModelInfo]
    trajectory: Optional[TrajectoryInfo]
    sets: List[SetState]
    mask: Optional[np.ndarray]
    warnings: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------- state

def _nice(x: float) -> float:
    """A round number near ``x`` (1, 2 or 5 times a power of ten)."""
    if not x > 0 or not math.isfinite(x):
        return 3.0
    e = math.floor(math.log10(x))
    m = x / 10 ** e
    m = 1 if m < 1.5 else 2 if m < 3.5 else 5 if m < 7.5 else 10
    return float(m * 10 ** e)


class EngineState:
    """What the worker owns: model, current trajectory, direction tensors, caches."""

    def __init__(self) -> None:
        from ..domains import ensure

        ensure()  # the domain whose classifier, segmenter and terms the jobs use
        self.model = None
        self.model_info: Optional[ModelInfo] = None
        self._asked_timesteps: Optional[str] = None  # see load_model
        self.h_space = "after"
        self.traj = None
        self.source: dict = {}
        self.gen = 0
        self.sets: Dict[str, object] = {}  # set_id -> DirectionSet
        self.version = 0
        self._deltas: dict = {}
        self._last: Optional[tuple] = None  # (edits, x0)
        self._segmenter = None
        self.region_mask: Optional[np.ndarray] = None  # edits stay inside it (see SetRegion)
        self.region_free_steps = 1
        self._region = None  # (model fingerprint, Region) built from region_mask

    # -- model and trajectory --------------------------------------------------------
    def load_model(self, source: str, h_space: str, device=None, guide: Optional[str] = None,
                   guide_weight: Optional[float] = None, timesteps: Optional[str] = None) -> ModelInfo:
        from ..engine.domain import active_domain
        from ..engine.hspace import h_shape
        from ..engine.model import load_model

        if h_space not in H_SPACE_POINTS:
            raise ValueError(f"unknown h-space point '{h_space}'")
        if guide is None:
            guide_weight = None
        same = (self.model is not None and self.model_info.source == source
                and (self.model_info.guide, self.model_info.guide_weight) == (guide, guide_weight)
                and spacing_key(timesteps) in (self._asked_timesteps, self.model_info.timesteps))
        if same and self.h_space == h_space:
            return self.model_info
        model = self.model if same else load_model(source, device=device, guide=guide, guide_weight=guide_weight,
                                                   timesteps=timesteps)
        shape = h_shape(model.unet, h_space, model.sample_shape)
        self.model, self.h_space = model, h_space
        # the spacing asked for (None: the model's recorded or its scheduler's): a request
        # for it, or for the spacing it gave, needs no reload
        self._asked_timesteps = spacing_key(timesteps)
        self.model_info = ModelInfo(
            source=source, fingerprint=model.fingerprint, description=model.describe(),
            image_size=tuple(model.image_size), sample_shape=tuple(model.sample_shape),
            h_space=h_space, h_shape=tuple(shape), is_latent=model.is_latent,
            num_train_timesteps=int(model.scheduler.config.num_train_timesteps),
            weights_fingerprint=model.weights_fingerprint, guide=model.info.get("guide"),
            guide_weight=model.info.get("guide_weight"), timesteps=model.info.get("timesteps"),
            conditioning=dict(model.conditioning) if model.takes_prompt else None,
            advice=dict(active_domain().advice))
        self.traj = None
        self._invalidate()
        return self.model_info

    def require_model(self):
        if self.model is None:
            raise ModelLoadError("no model is loaded")
        return self.model

    def require_traj(self):
        if self.traj is None:
            raise HSpaceError("no image yet: sample a seed or open an image first")
        return self.traj

    def set_trajectory(self, traj, source: dict, note: str = "", psnr=None) -> TrajectoryInfo:
        self.traj = traj
        self.source = dict(source)
        self.gen += 1
        self._invalidate()
        return self.trajectory_info(note, psnr)

    def trajectory_info(self, note: str = "", psnr=None) -> TrajectoryInfo:
        t = self.traj
        return TrajectoryInfo(gen=self.gen, image=self.pixels(t.x_0), timesteps=tuple(int(v) for v in t.timesteps),
                              source=dict(self.source), origin=dict(t.origin), h_space=t.h_space,
                              note=note, psnr=psnr)

    def _invalidate(self) -> None:
        self._deltas.clear()
        self._last = None
        self.version += 1

    # -- pixels ------------------------------------------------------------------------
    def pixels(self, x0) -> np.ndarray:
        """uint8 (H, W, 3) image of x_0 (diffusion space), rounded like ``images.to_pil``."""
        import torch

        img = self.model.to_pixels(x0[None])[0].detach().float().cpu()
        a = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return np.ascontiguousarray(a.permute(1, 2, 0).numpy())

    def preview_pixels(self, pred_x0) -> Optional[np.ndarray]:
        """An intermediate prediction as pixels, or None where that would cost a decode."""
        if self.model is None or self.model.is_latent:
            return None
        return self.pixels(pred_x0)

    # -- direction sets ----------------------------------------------------------------
    def add_set(self, ds, name: str, path: Optional[str] = None, set_id: Optional[str] = None) -> SetState:
        set_id = set_id or uuid.uuid4().hex[:10]
        self.sets[set_id] = ds
        self.version += 1
        st = self.set_state(set_id, ds, name, path)
        st.status, st.status_text = self.check_set(ds)
        return st

    def set_state(self, set_id: str, ds, name: str, path: Optional[str]) -> SetState:
        rng = self._default_range(ds)
        values = None
        if ds.values is not None:
            values = [[float(v) if v is not None else float("nan") for v in row] for row in ds.values]
        dirs = [DirectionState(index=k, label=str(ds.labels[k]), range=rng) for k in range(len(ds))]
        return SetState(set_id=set_id, name=name, method=ds.method, fingerprint=ds.fingerprint,
                        h_space=ds.h_space, h_shape=tuple(int(v) for v in ds.delta_h.shape[2:]),
                        timesteps=[int(t) for t in ds.timesteps], values=values,
                        params=_jsonable(ds.params), path=path, directions=dirs)

    def _default_range(self, ds) -> float:
        if _is_noise(ds):
            return NOISE_RANGE
        if ds.method in ("pca", "supervised"):
            return default_range(ds.method)
        if ds.method == "disentangled":
            inner = (ds.params or {}).get("target", {}).get("method")
            if inner in ("pca", "supervised"):
                return default_range(inner)
        try:  # half the typical norm of h, in units of the direction's norm
            dn = ds.delta_h.flatten(2).norm(dim=2).median().item()
            if self.traj is not None:
                hn = self.traj.hs.flatten(1).norm(dim=1).median().item()
            else:
                return 3.0
            return _nice(0.5 * hn / dn) if dn > 0 else 3.0
        except Exception:  # noqa: BLE001
            return 3.0

    def check_set(self, ds) -> Tuple[str, str]:
        info = self.model_info
        if info is None:
            return "mismatch", "no model loaded"
        if _is_noise(ds):
            return self._check_noise_set(ds)
        try:
            ds.check_model(info.weights_fingerprint, info.h_space, info.h_shape)
        except ModelMismatchError as e:
            return "mismatch", str(e)
        if self.traj is not None and not np.array_equal(ds.timesteps.numpy(), self.traj.timesteps.numpy()):
            own = set(int(t) for t in self.traj.timesteps)
            if all(int(t) in own for t in ds.timesteps):
                return "ok", (f"computed at {ds.steps} of the image's {self.traj.steps} steps; other "
                              f"steps use the nearest one")
            return "remapped", (f"made at {ds.steps} steps; mapped onto the image's {self.traj.steps} "
                                f"steps by nearest timestep")
        return "ok", ""

    def _check_noise_set(self, ds) -> Tuple[str, str]:
        from ..engine.noise_edits import check_noise_set, noise_edit

        try:
            check_noise_set(ds, self.model_info.weights_fingerprint, self.require_model().sample_shape)
            if self.traj is not None:
                for k in range(len(ds)):  # per-step noise made on other timesteps is refused
                    noise_edit(ds, k, 1.0, self.traj)
        except (ModelMismatchError, FileFormatError) as e:
            return "mismatch", str(e)
        return "ok", "noise-space directions: they change x_T and the per-step noise"

    def check_sets(self) -> Dict[str, Tuple[str, str]]:
        return {sid: self.check_set(ds) for sid, ds in self.sets.items()}

    def get_set(self, set_id: str):
        try:
            return self.sets[set_id]
        except KeyError:
            raise HSpaceError("that direction set is no longer in the library") from None

    def at_step(self, at_timestep: Optional[int]) -> Optional[int]:
        if at_timestep is None:
            return None
        ts = self.require_traj().timesteps
        return int((ts - int(at_timestep)).abs().argmin())

    def delta(self, set_id: str, index: int, at_timestep: Optional[int] = None):
        traj = self.require_traj()
        key = (set_id, int(index), at_timestep)
        d = self._deltas.get(key)
        if d is None:
            ds = self.get_set(set_id)
            info = self.model_info
            ds.check_model(info.weights_fingerprint, traj.h_space, tuple(traj.hs.shape[1:]),
                           f"direction set '{ds.labels[0] if len(ds) else set_id}'")
            mapped = ds.for_timesteps(traj.timesteps)
            d = mapped.steps_delta(int(index), self.at_step(at_timestep))
            self._deltas[key] = d
        return d

    def set_region(self, mask: Optional[np.ndarray], free_steps: int = 1) -> bool:
        """Keep edits inside ``mask`` from now on; returns whether a region is in force."""
        if mask is not None and not np.asarray(mask).any():
            mask = None
        self.region_mask = None if mask is None else np.asarray(mask, dtype=np.float32).copy()
        self.region_free_steps = max(0, int(free_steps))
        self._region = None
        self._last = None
        return self.region_mask is not None

    def region(self):
        """The sampler ``Region`` of the current mask for the loaded model, or None."""
        from ..engine.sampler import Region, region_weights

        if self.region_mask is None:
            return None
        model = self.require_model()
        if self._region is None or self._region[0] != model.fingerprint:
            self._region = (model.fingerprint, Region(region_weights(model, self.region_mask),
                                                      self.region_free_steps))
        return self._region[1]

    def specs(self, edits) -> list:
        from ..engine.sampler import EditSpec

        return [self.noise_edit(e.set_id, e.index, float(e.scale)) if self.is_noise(e.set_id) else
                EditSpec(self.delta(e.set_id, e.index, e.at_timestep), float(e.scale),
                         tuple(e.window) if e.window is not None else None,
                         asymmetric=bool(getattr(e, "asymmetric", False)))
                for e in edits if float(e.scale) != 0.0]

    def is_noise(self, set_id: str) -> bool:
        return _is_noise(self.get_set(set_id))

    def noise_edit(self, set_id: str, index: int, scale: float):
        """The sampler ``NoiseEdit`` of a noise-space direction (window and step do not apply)."""
        from ..engine.noise_edits import noise_edit

        key = (set_id, int(index), "noise")
        ne = self._deltas.get(key)
        if ne is None:
            ds = self.get_set(set_id)
            status, why = self._check_noise_set(ds)
            if status == "mismatch":
                raise ModelMismatchError(why)
            ne = noise_edit(ds, int(index), 1.0, self.require_traj(),
                            f"direction set '{ds.labels[0] if len(ds) else set_id}'")
            self._deltas[key] = ne
        return dataclasses.replace(ne, scale=float(scale))

    # -- rendering ---------------------------------------------------------------------
    def render_x0(self, edits, cancel=None, preview=None, progress=None):
        from ..engine.sampler import edit

        model, traj = self.require_model(), self.require_traj()
        key = tuple(e for e in edits if float(e.scale) != 0.0)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        specs = self.specs(key)
        x0 = edit(model, traj, specs, progress=progress, cancel=cancel, preview=preview,
                  region=self.region())
        self._last = (key, x0)
        return x0

    def render(self, edits, cancel=None, preview=None) -> np.ndarray:
        return self.pixels(self.render_x0(edits, cancel, preview))

    def strip_x0(self, item, scales, others, cancel=None, progress=None):
        from ..engine.sampler import strip

        model, traj = self.require_model(), self.require_traj()
        if self.is_noise(item.set_id):
            from ..engine.sampler import edit_batch

            batch = [[self.noise_edit(item.set_id, item.index, float(s)), *self.specs(others)] for s in scales]
            return edit_batch(model, traj, batch, progress=progress, cancel=cancel, region=self.region()).x_0
        delta = self.delta(item.set_id, item.index, item.at_timestep)
        window = tuple(item.window) if item.window is not None else None
        return strip(model, traj, delta, [float(s) for s in scales], window, self.specs(others),
                     progress=progress, cancel=cancel, region=self.region(),
                     asymmetric=bool(getattr(item, "asymmetric", False)))

    def render_strip(self, item, scales, others, cancel=None) -> List[np.ndarray]:
        xs = self.strip_x0(item, scales, others, cancel)
        return [self.pixels(x) for x in xs]

    # -- recipes -----------------------------------------------------------------------
    def recipe(self, edits, set_files: dict, png_path: str) -> dict:
        """The recipe of the current image with ``edits``: direction files referenced by
        path where the set is a file on disk, else written to a sidecar next to the PNG."""
        from ..engine.directions import DirectionSet

        traj = self.require_traj()
        src = dict(traj.origin)
        if self.source.get("kind") == "trajectory":
            src["trajectory"] = self.source.get("path")
        rows, out = [], []
        for e in edits:
            if float(e.scale) == 0.0:
                continue
            f = set_files.get(e.set_id)
            if self.is_noise(e.set_id):
                out.append(self._noise_entry(e, f, png_path))
                continue
            entry = {"direction": None, "index": int(e.index), "scale": float(e.scale),
                     "window": list(e.window) if e.window is not None else None,
                     "at_step": self.at_step(e.at_timestep),
                     "label": self.get_set(e.set_id).labels[e.index]}
            if getattr(e, "asymmetric", False):
                entry["asymmetric"] = True
            if f and Path(f).is_file():
                entry["direction"] = str(Path(f).resolve())
            else:
                rows.append((len(out), e))
            out.append(entry)
        if rows:
            side = Path(png_path).with_suffix("")
            side = side.with_name(side.name + ".directions.safetensors").resolve()
            deltas, labels = [], []
            for j, (i, e) in enumerate(rows):
                ds = self.get_set(e.set_id).for_timesteps(traj.timesteps)
                deltas.append(ds.delta_h[e.index])
                labels.append(ds.labels[e.index])
                out[i]["direction"] = str(side)
                out[i]["index"] = j
            import torch

            DirectionSet(delta_h=torch.stack(deltas), timesteps=traj.timesteps.clone(),
                         fingerprint=self.model.weights_fingerprint, h_space=traj.h_space, method="custom",
                         labels=labels, params={"exported_for": Path(png_path).name}).save(side)
        rec = with_model_settings({"model": self.model_info.source, "fingerprint": self.model.fingerprint,
                                   "h_space": traj.h_space, "source": src, "edits": out,
                                   "app": "hspace-studio gui"}, self.model)
        if self.region_mask is not None:
            rec["region"] = {"mask": self.save_region_png(png_path), "free_steps": self.region_free_steps,
                             "coverage": float(self.region_mask.mean())}
        return rec

    def _noise_entry(self, e, f, png_path: str) -> dict:
        """A recipe entry of a noise-space edit (``--noise-direction FILE:K --noise-scale S``);
        a set that is no file on disk is written beside the PNG."""
        ds = self.get_set(e.set_id)
        if f and Path(f).is_file():
            path = str(Path(f).resolve())
        else:
            side = Path(png_path).with_suffix("")
            side = side.with_name(f"{side.name}.noise-{e.set_id}.safetensors").resolve()
            ds.save(side)
            path = str(side)
        return {"space": "noise", "direction": path, "index": int(e.index), "scale": float(e.scale),
                "label": ds.labels[e.index]}

    def save_region_png(self, png_path: str) -> str:
        """Write the region mask beside an exported image (``NAME-region.png``, white inside)
        so that its recipe and command line re-create the masked edit; returns its path."""
        from ..core.mask import MaskDocument

        side = Path(png_path).with_suffix("")
        side = side.with_name(side.name + "-region.png").resolve()
        doc = MaskDocument(self.region_mask.shape)
        doc.apply(self.region_mask > 0.5)
        doc.save_png(side)
        return str(side)

    # -- segmenter ---------------------------------------------------------------------
    def segmenter(self, spec: Optional[str]):
        """The segmenter ``spec`` names (None: the domain's default), loaded once."""
        from ..engine.segmenter import load_segmenter

        if self._segmenter is None or self._segmenter[0] != spec:
            self._segmenter = (spec, load_segmenter(spec, device=self.model.device))
        return self._segmenter[1]


NOISE_RANGE = 2.0  # the slider range of noise-space directions


def _is_noise(ds) -> bool:
    from ..engine.noise_edits import is_noise_set

    return is_noise_set(ds)


def _jsonable(obj):
    """Metadata made safe for JSON (tensors and numpy become lists or summaries)."""
    import json

    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        pass
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        try:
            return obj.tolist()
        except Exception:  # noqa: BLE001
            pass
    return str(obj)


# --------------------------------------------------------------------------- handlers

ProgressFn = Callable[[int, int, str], None]
HANDLERS: Dict[type, Callable] = {}


def handler(cls):
    def deco(fn):
        HANDLERS[cls] = fn
        return fn
    return deco


def run_job(state: EngineState, job, progress: ProgressFn, cancel):
    fn = HANDLERS.get(type(job))
    if fn is None:
        raise HSpaceError(f"unknown job {type(job).__name__}")
    return fn(state, job, progress, cancel)


@handler(ForgetSets)
def _forget_sets(state, job, progress, cancel):
    gone = set(job.set_ids)
    for sid in gone:
        state.sets.pop(sid, None)
    for key in [k for k in state._deltas if k[0] in gone]:
        del state._deltas[key]
    return len(gone)


@handler(SetRegion)
def _set_region(state, job, progress, cancel):
    return state.set_region(job.mask, job.free_steps)


@handler(Sleep)
def _sleep(state, job, progress, cancel):
    import time

    from ..core.progress import Progress

    prog = Progress(job.steps, progress, cancel, "waiting")
    for _ in range(job.steps):
        time.sleep(job.seconds_per_step)
        prog.step()
    return job.steps


@handler(LoadModel)
def _load_model(state, job, progress, cancel):
    progress(0, 1, f"loading {job.source}")
    info = state.load_model(job.source, job.h_space, job.device, job.guide, job.guide_weight, job.timesteps)
    progress(1, 1, "model loaded")
    return info


def _prompt_of(src: dict) -> tuple:
    """(prompt, negative prompt, guidance) a session's image source records (Nones if none)."""
    g = src.get("guidance")
    return (src.get("prompt"), src.get("negative_prompt"), float(g) if g is not None else None)


@handler(Sample)
def _sample(state, job, progress, cancel):
    from ..engine.sampler import sample

    model = state.require_model()
    job.apply(model)
    traj = sample(model, [int(job.seed)], steps=int(job.steps), eta=float(job.eta),
                  h_space=state.h_space, progress=progress, cancel=cancel)[0]
    return state.set_trajectory(traj, {"kind": "seed", "seed": int(job.seed), "steps": int(job.steps),
                                       "eta": float(job.eta), **model.conditioning})


@handler(Invert)
def _invert(state, job, progress, cancel):
    from ..engine.images import load_image
    from ..engine.inversion import invert

    model = state.require_model()
    job.apply(model)
    img, note = load_image(job.path, model.image_size)
    inv = invert(model, img, steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                 progress=progress, cancel=cancel, origin={"image": str(job.path)})
    return state.set_trajectory(inv.trajectory, {"kind": "image", "path": str(job.path),
                                                 "steps": int(job.steps), "eta": float(job.eta),
                                                 **model.conditioning},
                                note=note, psnr=inv.psnr)


@handler(OpenTrajectory)
def _open_traj(state, job, progress, cancel):
    from ..engine.sampler import decode
    from ..engine.trajectory import Trajectory

    model = state.require_model()
    traj = Trajectory.load(job.path)
    traj.check_model(model.fingerprint, state.h_space, Path(job.path).name,
                     sample_shape=model.sample_shape, h_shape=state.model_info.h_shape)
    decode(model, traj, progress, cancel)
    return state.set_trajectory(traj, {"kind": "trajectory", "path": str(job.path),
                                       "steps": traj.steps})


@handler(SaveTrajectory)
def _save_traj(state, job, progress, cancel):
    state.require_traj().save(job.path)
    return job.path


@handler(ImportDirections)
def _import(state, job, progress, cancel):
    from ..engine.directions import DirectionSet

    out = []
    info = state.model_info
    for i, p in enumerate(job.paths):
        ds = DirectionSet.load(p)
        if info is not None and _is_noise(ds):
            from ..engine.noise_edits import check_noise_set

            check_noise_set(ds, info.weights_fingerprint, state.require_model().sample_shape, Path(p).name)
        elif info is not None:
            ds.check_model(info.weights_fingerprint, info.h_space, info.h_shape, Path(p).name)
        out.append(state.add_set(ds, Path(p).stem, str(Path(p).resolve())))
        progress(i + 1, len(job.paths), f"imported {Path(p).name}")
    return out


@handler(ExportDirections)
def _export(state, job, progress, cancel):
    from dataclasses import replace

    ds = state.get_set(job.set_id)
    sub = ds.subset(list(job.indices))
    sub = replace(sub, labels=list(job.labels))
    sub.save(job.path)
    whole = list(job.indices) == list(range(len(ds)))
    return {"path": str(Path(job.path).resolve()), "whole": whole}


def _engine_module(name: str):
    """``engine.discover.<name>`` (or ``engine.<name>``), with a readable error if the
    build lacks it."""
    import importlib

    for full in (f"hspace_studio.engine.discover.{name}", f"hspace_studio.engine.{name}"):
        try:
            return importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name != full:
                raise
    raise HSpaceError(f"{name} discovery is not available in this build")


def discover_pca(state, job: DiscoverPCA, progress, cancel):
    """PCA over ``job.samples`` samples: ``engine.discover.pca.pca_directions``."""
    model = state.require_model()
    pca = _engine_module("pca")
    return pca.pca_directions(model, n_samples=int(job.samples), components=int(job.k), mode=job.mode,
                              steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                              seed_start=int(job.seed), solver=job.solver, progress=progress,
                              cancel=cancel)


def discover_jacobian(state, job: DiscoverJacobian, progress, cancel):
    """Top-k singular vectors of d eps / d h on the current image:
    ``engine.discover.jacobian.jacobian_directions``."""
    model, traj = state.require_model(), state.require_traj()
    mask = None
    if job.mask is not None:
        if not np.asarray(job.mask).any():
            raise HSpaceError("the mask is empty: paint a region or untick 'use mask'")
        mask = np.asarray(job.mask, dtype=bool)
    if job.contained is not None:
        if mask is None:
            raise HSpaceError("contained directions need the painted mask: tick 'use mask'")
        con = _engine_module("contained")  # (it checks the step against the image's steps)
        return con.contained_jacobian_directions(model, traj, mask, int(job.contained), k=int(job.k),
                                                 max_iter=int(job.iterations), progress=progress,
                                                 cancel=cancel)
    jac = _engine_module("jacobian")
    return jac.jacobian_directions(model, traj, k=int(job.k), mask=mask,
                                   steps_subset=list(job.steps) if job.steps is not None else None,
                                   max_iter=int(job.iterations), progress=progress, cancel=cancel)


def discover_supervised(state, job: DiscoverSupervised, progress, cancel):
    """A supervised direction: from a (resumable, cached) classifier index of generated
    samples, or from two folders of labelled images (inverted)."""
    model = state.require_model()
    sup = _engine_module("supervised")
    annotate = _engine_module("annotate")
    if job.positive_folder or job.negative_folder:
        if not (job.positive_folder and job.negative_folder):
            raise HSpaceError("choose both a folder of positive and one of negative images")
        name = job.attribute or (f"{Path(job.positive_folder).name} vs {Path(job.negative_folder).name}")
        return sup.supervised_from_images(model, job.positive_folder, job.negative_folder,
                                          steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                                          attribute=name, progress=progress, cancel=cancel)
    if not job.attribute:
        raise HSpaceError("choose an attribute")
    clf = annotate.load_classifier(job.classifier or None, device=model.device)
    if job.optimize > 0:
        opt = _engine_module("optimized")
        keep_in = state.region() if job.keep_in else None
        if job.keep_in and keep_in is None:
            raise HSpaceError("fitting for edits kept inside the mask needs 'Keep edits inside the "
                              "mask' ticked, with a painted mask")
        if job.keep_in_part:
            if job.keep_in:
                raise HSpaceError("fit for edits kept inside the mask or in each face's own part, not both")
            from ..engine.segmenter import part_region

            try:
                keep_in = part_region(model, job.keep_in_part, int(job.keep_in_grow))
            except (ValueError, OSError) as e:
                raise HSpaceError(f"cannot keep the edits in each face's {' '.join(job.keep_in_part)}: {e}") from None
        return opt.optimized_direction(model, clf, job.attribute, list(range(int(job.train_samples))),
                                       steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                                       iters=int(job.optimize), window=_fit_window(opt, model, job),
                                       region=job.region, keep_in=keep_in, free=list(job.free),
                                       skip=list(job.skip), **_part_term(job), progress=progress, cancel=cancel)
    seeds = list(range(int(job.index_size)))
    path = None
    if job.index_dir:
        key = sup.recipe_key(sup.index_recipe(model, clf, int(job.steps), float(job.eta), state.h_space))
        path = Path(job.index_dir) / f"hspace-index-{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
    index = sup.build_index(model, clf, int(job.index_size), path, steps=int(job.steps), eta=float(job.eta),
                            h_space=state.h_space, seeds=seeds, progress=progress, cancel=cancel)
    return sup.supervised_directions(model, index.subset(seeds), job.attribute, examples=int(job.examples),
                                     progress=progress, cancel=cancel)


def _fit_window(opt, model, job: DiscoverSupervised):
    """The timesteps a fit changes h at: every step (as ``--window 999:0`` on a 1000-step
    model), or the engine's default window."""
    if job.every_step:
        return (int(model.scheduler.config.num_train_timesteps) - 1, 0)
    return opt.default_window(model)


def _part_term(job: DiscoverSupervised) -> dict:
    """The fit's penalty from the domain's fit terms the job names, as the ``part_term``,
    ``part_weight`` and ``part_name`` arguments of the fit."""
    from ..engine.domain import TermRefused, fit_terms

    try:
        term, weight, name = fit_terms(job.attribute, dict(job.terms))
    except TermRefused as e:
        raise HSpaceError(f"{e}: untick the option that asks for it") from None
    return {"part_term": term, "part_weight": weight, "part_name": name}


def _add_discovered(state, result, default_name: str) -> List[SetState]:
    from ..engine.directions import DirectionSet

    sets = result if isinstance(result, (list, tuple)) else [result]
    out = []
    for ds in sets:
        if not isinstance(ds, DirectionSet):
            ds = getattr(ds, "directions", None) or getattr(ds, "direction_set", None)
        if ds is None:
            raise HSpaceError("the discovery step returned no direction set")
        out.append(state.add_set(ds, default_name))
    return out


@handler(DiscoverPCA)
def _pca(state, job, progress, cancel):
    return _add_discovered(state, discover_pca(state, job, progress, cancel),
                           f"PCA {job.mode} ({job.samples} samples)")


@handler(DiscoverJacobian)
def _jac(state, job, progress, cancel):
    traj = state.require_traj()
    what = "masked " if job.mask is not None else ""
    if job.contained is not None:
        what = f"contained, step {job.contained} "
    return _add_discovered(state, discover_jacobian(state, job, progress, cancel),
                           f"Jacobian {what}({traj.describe_origin()})")


@handler(DiscoverSupervised)
def _sup(state, job, progress, cancel):
    if job.positive_folder:
        name = f"{Path(job.positive_folder).name} vs {Path(job.negative_folder or '').name}"
    elif job.optimize > 0:
        where = (", in the mask" if job.region is not None else "") + (", for edits kept in the mask" if job.keep_in else "")
        if job.keep_in_part:
            where += f", for edits kept in each face's {'+'.join(job.keep_in_part)} (+{job.keep_in_grow} px)"
        where += "".join(f", {name}" for name, w in job.terms if w > 0)
        where += f", {'+'.join(job.skip)} left out" if job.skip else ""
        where += ", every step" if job.every_step else ""
        name = f"{job.attribute} (optimised on {job.train_samples}{where})"
    else:
        name = f"{job.attribute} ({job.examples} of {job.index_size})"
    return _add_discovered(state, discover_supervised(state, job, progress, cancel), name)


@handler(Disentangle)
def _disentangle(state, job, progress, cancel):
    from ..engine.directions import disentangle_set

    if not job.against:
        raise HSpaceError("choose at least one direction to disentangle against")
    tgt = state.get_set(job.target[0])
    against = [state.get_set(s) for s, _ in job.against]
    ds = disentangle_set(tgt, int(job.target[1]), against, [int(i) for _, i in job.against], job.name)
    progress(1, 1, "disentangled")
    return [state.add_set(ds, ds.labels[0])]


@handler(Segment)
def _segment(state, job, progress, cancel):
    import torch

    model, traj = state.require_model(), state.require_traj()
    seg = state.segmenter(job.folder)
    with torch.no_grad():
        mask = seg.part_mask(model.to_pixels(traj.x_0[None]).clamp(-1, 1), job.parts)
    parts = seg.parts
    h, w = state.model_info.image_size
    if mask.shape != (h, w):
        from ..core.mask import resize_nearest

        mask = resize_nearest(mask, (h, w))
    progress(1, 1, "segmented " + ", ".join(job.parts))
    return {"parts": tuple(job.parts), "mask": mask, "known": list(parts)}


@handler(ExportImage)
def _export_image(state, job, progress, cancel):
    from ..engine.images import save_png, to_pil

    model = state.require_model()
    edits = () if job.original else job.edits
    x0 = state.render_x0(edits, cancel=cancel, progress=progress)
    recipe = state.recipe(edits, dict(job.set_files), job.path)
    save_png(job.path, to_pil(model.to_pixels(x0[None])[0].cpu()), recipe)
    return {"path": job.path, "recipe": recipe}


@handler(ExportStrip)
def _export_strip(state, job, progress, cancel):
    from ..engine.images import grid, save_png, to_pil

    model = state.require_model()
    xs = state.strip_x0(job.item, job.scales, job.others, cancel=cancel, progress=progress)
    imgs = [to_pil(model.to_pixels(x[None])[0].cpu()) for x in xs]
    first = dataclasses.replace(job.item, scale=1.0)
    recipe = state.recipe((first, *job.others), dict(job.set_files), job.path)
    recipe["strip"] = [float(s) for s in job.scales]
    save_png(job.path, grid(imgs, cols=len(imgs)), recipe)
    return {"path": job.path, "recipe": recipe}


@handler(ExportGrid)
def _export_grid(state, job, progress, cancel):
    from ..engine.images import grid, save_png, to_pil

    model = state.require_model()
    imgs, rows = [], []
    cols = max(len(s) for _, s in job.rows)
    for item, scales in job.rows:
        xs = state.strip_x0(item, scales, (), cancel=cancel)
        row = [to_pil(model.to_pixels(x[None])[0].cpu()) for x in xs]
        row += [row[-1].copy()] * (cols - len(row))
        imgs += row
        r = state.recipe((dataclasses.replace(item, scale=1.0),),
                         dict(job.set_files), job.path)
        rows.append({"edits": r["edits"], "strip": [float(s) for s in scales]})
        progress(len(rows), len(job.rows), "grid")
    base = state.recipe((), {}, job.path)
    base["grid"] = rows
    save_png(job.path, grid(imgs, cols=cols), base)
    return {"path": job.path, "recipe": base}


# -- sessions ---------------------------------------------------------------------------

TRAJ_KEYS = ("x_T", "zs", "etas", "timesteps", "hs", "x_0", "xs")


@handler(SaveSession)
def _save_session(state, job, progress, cancel):
    arrays: Dict[str, np.ndarray] = {}
    doc = dict(job.doc)
    if state.traj is not None:
        t = state.traj
        for k in TRAJ_KEYS:
            v = getattr(t, k)
            if v is not None:
                arrays[f"traj/{k}"] = v.detach().cpu().numpy()
        doc["trajectory"] = {"fingerprint": t.fingerprint, "h_space": t.h_space, "origin": t.origin}
    for sid in job.set_ids:
        ds = state.sets.get(sid)
        if ds is None:
            continue
        arrays[f"set/{sid}/delta_h"] = ds.delta_h.detach().float().cpu().numpy()
        arrays[f"set/{sid}/timesteps"] = ds.timesteps.detach().cpu().numpy()
        doc.setdefault("set_meta", {})[sid] = {"labels": list(ds.labels), "values": _jsonable(ds.values),
                                               "method": ds.method, "params": _jsonable(ds.params),
                                               "fingerprint": ds.fingerprint, "h_space": ds.h_space}
    if job.mask is not None:
        arrays["mask"] = np.asarray(job.mask, dtype=np.uint8)
    write_session(job.path, doc, arrays)
    return job.path


@handler(LoadSession)
def _load_session(state, job, progress, cancel):
    """Open a session all or nothing: if anything fails (or is cancelled) halfway, the
    worker's model, image and direction sets are put back as they were, so the window's
    current work stays usable."""
    keep = ("model", "model_info", "h_space", "traj", "source", "gen")
    saved = {k: getattr(state, k) for k in keep}
    saved_sets = dict(state.sets)
    try:
        return _load_session_now(state, job, progress, cancel)
    except BaseException:
        for k, v in saved.items():
            setattr(state, k, v)
        state.sets = saved_sets
        state._invalidate()
        raise


def _load_session_now(state, job, progress, cancel):
    import torch

    from ..engine.directions import DirectionSet
    from ..engine.trajectory import Trajectory

    doc, arrays = read_session(job.path)
    warnings: List[str] = []
    m = doc.get("model") or {}
    model_info = None
    if m.get("source"):
        try:
            model_info = state.load_model(str(m["source"]), str(m.get("h_space", "after")), job.device,
                                          m.get("guide"), m.get("guide_weight"), m.get("timesteps"))
        except HSpaceError as e:
            warnings.append(f"model: {e}")
    if model_info is not None and m.get("fingerprint") and m["fingerprint"] != model_info.fingerprint:
        warnings.append(f"the model '{model_info.source}' has changed since the session was saved "
                        f"(fingerprint {m['fingerprint']} -> {model_info.fingerprint}); "
                        f"directions made for the old weights are marked")
    traj_info = None
    tmeta = doc.get("trajectory") or {}
    src = doc.get("source") or {}
    if state.model is not None:
        if "traj/x_T" in arrays and tmeta.get("fingerprint") == state.model.fingerprint \
                and tmeta.get("h_space") == state.h_space:
            t = {k: torch.from_numpy(np.array(arrays[f"traj/{k}"])) for k in TRAJ_KEYS
                 if f"traj/{k}" in arrays}
            traj = Trajectory(x_T=t["x_T"].float(), zs=t["zs"].float(), etas=t["etas"].float(),
                              timesteps=t["timesteps"].long(), hs=t["hs"].float(), x_0=t["x_0"].float(),
                              fingerprint=tmeta["fingerprint"], h_space=tmeta["h_space"],
                              origin=tmeta.get("origin") or {}, xs=t["xs"].float() if "xs" in t else None)
            traj.check_model(state.model.fingerprint, state.h_space, "the session's image",
                             sample_shape=state.model.sample_shape, h_shape=state.model_info.h_shape)
            traj_info = state.set_trajectory(traj, src)
        elif src.get("kind") == "seed" and src.get("seed") is not None:
            traj_info = _sample(state, Sample(*_prompt_of(src), seed=int(src["seed"]),
                                              steps=int(src.get("steps", 10)), eta=float(src.get("eta", 1.0))),
                                progress, cancel)
            warnings.append("the image was sampled again from its seed")
        elif src.get("kind") == "image" and Path(str(src.get("path"))).is_file():
            traj_info = _invert(state, Invert(*_prompt_of(src), path=str(src["path"]),
                                              steps=int(src.get("steps", 10)), eta=float(src.get("eta", 1.0))),
                                progress, cancel)
            warnings.append("the image was inverted again")
        elif src:
            warnings.append("the session's image could not be restored for this model")
    sets = []
    meta_all = doc.get("set_meta") or {}
    for sd in doc.get("library") or []:
        ss = SetState.from_json(sd)
        key = f"set/{ss.set_id}/delta_h"
        if key not in arrays:
            warnings.append(f"direction set '{ss.name}' has no tensors in the session; skipped")
            continue
        meta = meta_all.get(ss.set_id, {})
        labels = meta.get("labels") or [f"direction {i}" for i in range(arrays[key].shape[0])]
        ts = arrays.get(f"set/{ss.set_id}/timesteps")  # (read_session checked the shapes)
        ds = DirectionSet(delta_h=torch.from_numpy(np.array(arrays[key])).float(),
                          timesteps=(torch.from_numpy(np.array(ts)).long() if ts is not None
                                     else torch.tensor(ss.timesteps, dtype=torch.long)),
                          fingerprint=ss.fingerprint, h_space=ss.h_space, method=ss.method,
                          labels=[str(x) for x in labels], values=meta.get("values", ss.values),
                          params=meta.get("params", ss.params))
        state.sets[ss.set_id] = ds
        state.version += 1
        ss.status, ss.status_text = state.check_set(ds)
        sets.append(ss)
    mask = arrays.get("mask")
    return SessionPayload(doc=doc, model=model_info, trajectory=traj_info, sets=sets,
                          mask=mask.astype(bool) if mask is not None else None, warnings=warnings)
