"""EngineState: the loaded model, current trajectory, direction sets, caches, edit region and segmenter."""
from __future__ import annotations

import dataclasses
import math
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..core.errors import FileFormatError, HSpaceError, ModelLoadError, ModelMismatchError
from ..core.recipe import make_recipe
from ..core.session import SetState, DirectionState, default_range
from ..core.spacing import spacing_key
from .edits import h_delta, mask_region, noise_edit, region_entry, strip_x0
from .records import ModelInfo, TrajectoryInfo
from .requests import H_SPACE_POINTS


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
        self._decode_seconds: Optional[float] = None  # a latent model's last decode (preview_pixels)
        self.model_info: Optional[ModelInfo] = None
        self._asked_timesteps: Optional[str] = None  # see load_model
        self.h_space = "after"
        self.traj = None
        self.source: dict = {}
        self.gen = 0
        self.sets: Dict[str, object] = {}  # set_id -> DirectionSet
        self.version = 0
        self._deltas: dict = {}
        self._last: Optional[tuple] = None  # (edits, x0, its chain's predicted x_0s): see .progressive
        self._strip_done: dict = {}  # (item, others, scale) -> pixels of a strip's finished images
        self.call_seconds: Optional[float] = None  # one network call of one chain, last measured
        self._segmenter = None
        self.region_mask: Optional[np.ndarray] = None  # edits stay inside it (see SetRegion)
        self.region_free_steps = 1
        self._region = None  # (model fingerprint, Region) built from region_mask
        # engine.compiled's settings and the low-memory mode, for every model loaded
        self.acceleration = {"compile": False, "bf16": False, "low_memory": False}

    # -- model and trajectory --------------------------------------------------------
    def load_model(self, source: str, h_space: str, device=None, guide: Optional[str] = None,
                   guide_weight: Optional[float] = None, timesteps: Optional[str] = None,
                   loras=(), model_config: Optional[str] = None, progress=None, cancel=None) -> ModelInfo:
        """Load a model (kept when nothing that makes it differs); ``progress``, ``cancel``: a hub
        download's."""
        from ..engine.domain import active_domain
        from ..engine.model import load_model

        if h_space is not None and h_space not in H_SPACE_POINTS and not h_space.startswith("block:"):
            raise ValueError(f"unknown h-space point '{h_space}'")
        if guide is None:
            guide_weight = None
        same = (self.model is not None and self.model_info.source == source
                and (self.model_info.guide, self.model_info.guide_weight) == (guide, guide_weight)
                and spacing_key(timesteps) in (self._asked_timesteps, self.model_info.timesteps)
                and tuple(self.model_info.loras) == _lora_key(loras)
                and self.model_info.model_config == _folder_key(model_config))
        if same and self.h_space == h_space:
            return self.model_info
        model = self.model if same else load_model(source, device=device, guide=guide, guide_weight=guide_weight,
                                                   timesteps=timesteps, loras=[f"{p}:{w!r}" for p, w in loras],
                                                   model_config=model_config, progress=progress, cancel=cancel)
        h_space = _point_for(model, h_space)
        shape = model.denoiser.h_shape(h_space, model.sample_shape)
        if model is not self.model:
            self._decode_seconds = None
            self._accelerate(model)
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
            h_points=tuple(model.denoiser.points()),
            takes_negative=bool(model.info.get("negative_prompt", True)),
            loras=tuple((r["path"], float(r["weight"])) for r in model.info.get("loras") or ()),
            model_config=(model.info.get("checkpoint") or {}).get("config"),
            checkpoint_family=(model.info.get("checkpoint") or {}).get("family"),
            advice=dict(active_domain().advice),
            domain_images=active_domain().makes_its_images(model.image_size, model.takes_prompt,
                                                           model.is_latent))
        self.traj = None
        self.invalidate()
        return self.model_info

    def set_acceleration(self, compile: bool, bf16: bool, progress=None, cancel=None,
                         low_memory: bool = False) -> dict:
        """Keep the speed setting (:mod:`..engine.compiled`) and apply it to the loaded model,
        building its compiled code now (``progress``, ``cancel``: see
        :func:`..engine.compiled.warm_up`); returns what is in force (compiling needs a C++
        compiler: without one it stays off). Cancelled, the setting before stays."""
        from ..engine.compiled import compiler_available

        before = dict(self.acceleration)
        self.acceleration = {"compile": bool(compile) and compiler_available(), "bf16": bool(bf16),
                             "low_memory": bool(low_memory)}
        if self.model is not None:
            self._decode_seconds = None
            self.invalidate()
            try:
                self._accelerate(self.model, progress, cancel)
            except BaseException:
                self.acceleration = before
                self._accelerate(self.model)  # as it was (its code is built already)
                raise
        return dict(self.acceleration)

    def _accelerate(self, model, progress=None, cancel=None) -> None:
        """Apply the speed setting to ``model`` and build its compiled code now, for an
        image, an edit and a strip, so that no slider waits for it."""
        from ..engine.compiled import accelerate, warm_up
        from ..engine.model import set_low_memory

        set_low_memory(model, self.acceleration.get("low_memory", False))
        accelerate(model, compile=self.acceleration["compile"], bf16=self.acceleration["bf16"])
        if self.acceleration["compile"]:
            warm_up(model, self.h_space, progress=progress, cancel=cancel)

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
        self.invalidate()
        return self.trajectory_info(note, psnr)

    def trajectory_info(self, note: str = "", psnr=None) -> TrajectoryInfo:
        t = self.traj
        return TrajectoryInfo(gen=self.gen, image=self.pixels(t.x_0), timesteps=tuple(int(v) for v in t.timesteps),
                              source=dict(self.source), origin=dict(t.origin), h_space=t.h_space,
                              note=note, psnr=psnr)

    def invalidate(self) -> None:
        """Forget the cached deltas and the last render (the image, the model or the sets changed)."""
        self._deltas.clear()
        self._last = None
        self._strip_done.clear()
        self.version += 1

    def forget_sets(self, set_ids) -> int:
        """Drop direction sets and their cached deltas; returns how many were asked for."""
        gone = set(set_ids)
        for sid in gone:
            self.sets.pop(sid, None)
        for key in [k for k in self._deltas if k[0] in gone]:
            del self._deltas[key]
        self._strip_done.clear()
        return len(gone)

    # -- pixels ------------------------------------------------------------------------
    def pixels(self, x0) -> np.ndarray:
        """uint8 (H, W, 3) image of x_0 (diffusion space), rounded like ``images.to_pil``;
        the time a latent model's decode took is kept (:meth:`preview_pixels`)."""
        import torch

        t0 = time.perf_counter()
        img = self.model.to_pixels(x0[None])[0].detach().float().cpu()
        if self.model.is_latent:
            self._decode_seconds = time.perf_counter() - t0
        a = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return np.ascontiguousarray(a.permute(1, 2, 0).numpy())

    def preview_pixels(self, pred_x0) -> Optional[np.ndarray]:
        """An intermediate prediction as pixels for a progressive preview. A latent model's
        is decoded only once a decode has been measured (the first exact image) at under
        :data:`PREVIEW_DECODE_S`: a large autoencoder on a CPU would slow the edit itself."""
        if self.model is None:
            return None
        if self.model.is_latent and (self._decode_seconds is None or self._decode_seconds > PREVIEW_DECODE_S):
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
            d = h_delta(ds, index, traj, self.model_info.weights_fingerprint, self.at_step(at_timestep),
                        _set_name(ds, set_id))
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
        self._strip_done.clear()
        return self.region_mask is not None

    def region(self):
        """The sampler ``Region`` of the current mask for the loaded model, or None."""
        if self.region_mask is None:
            return None
        model = self.require_model()
        if self._region is None or self._region[0] != model.fingerprint:
            self._region = (model.fingerprint, mask_region(model, self.region_mask, self.region_free_steps))
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
        key = (set_id, int(index), "noise")
        ne = self._deltas.get(key)
        if ne is None:
            ds = self.get_set(set_id)
            status, why = self._check_noise_set(ds)
            if status == "mismatch":
                raise ModelMismatchError(why)
            ne = noise_edit(ds, index, 1.0, self.require_traj(), self.model_info.weights_fingerprint,
                            _set_name(ds, set_id))
            self._deltas[key] = ne
        return dataclasses.replace(ne, scale=float(scale))

    # -- rendering ---------------------------------------------------------------------
    def render_x0(self, edits, cancel=None, preview=None, progress=None):
        """x_0 of the image with ``edits``; ``preview(i, total, image)`` hears each step's
        preview (:func:`.progressive.step_preview`, in the diffusion space)."""
        from ..engine.sampler import edit_batch
        from .progressive import shown_chain, step_preview

        model, traj = self.require_model(), self.require_traj()
        key = tuple(e for e in edits if float(e.scale) != 0.0)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        specs = self.specs(key)
        shown = shown_chain(traj, self._last) if preview is not None else None

        def on_step(i, total, pred_x0):
            preview(i, total, step_preview(shown, i, pred_x0[0]))

        t0 = time.perf_counter()
        res = edit_batch(model, traj, [specs], progress=progress, cancel=cancel,
                         preview=on_step if preview is not None else None, region=self.region(), keep_x0s=True)
        ran = 0 if res.x0s is None else int(res.x0s.shape[1])
        if ran:
            self.call_seconds = (time.perf_counter() - t0) / ran
        self._last = (key, res.x_0[0], res.x0s[0] if res.x0s is not None else None)
        return self._last[1]

    def render(self, edits, cancel=None, preview=None) -> np.ndarray:
        return self.pixels(self.render_x0(edits, cancel, preview))

    def strip_x0(self, item, scales, others, cancel=None, progress=None):
        """x_0 of ``item`` at each of ``scales`` with the ``others`` (its own scale is ignored)."""
        model, traj = self.require_model(), self.require_traj()
        (first,) = self.specs([dataclasses.replace(item, scale=1.0)])
        return strip_x0(model, traj, first, scales, self.specs(others), region=self.region(),
                        progress=progress, cancel=cancel)

    def render_strip(self, item, scales, others, cancel=None, progress=None) -> List[np.ndarray]:
        """The images of ``item`` at ``scales`` with the ``others``, a few chains at a time
        (:func:`.progressive.strip_chunk`); finished images are kept, so a strip cancelled
        by more urgent work goes on where it stopped. ``progress(done, total)`` counts chains'
        steps."""
        from .progressive import chunks, strip_chunk

        traj = self.require_traj()
        item, others = dataclasses.replace(item, scale=1.0), tuple(others)
        keys = [(item, others, float(s)) for s in scales]
        todo = [k for k in keys if k not in self._strip_done]
        per = traj.steps
        total, done = len(keys) * per, (len(keys) - len(todo)) * per
        for part in chunks(todo, strip_chunk(self.call_seconds, len(todo))):
            def step(d, t, message="", base=done, n=len(part)):
                if progress is not None and t:
                    progress(base + int(round(d * n * per / t)), total)

            xs = self.strip_x0(item, [k[2] for k in part], others, cancel, step)
            for k, x in zip(part, xs):
                self._strip_done[k] = self.pixels(x)
            done += len(part) * per
        while len(self._strip_done) > STRIP_IMAGES_KEPT:  # the oldest strips' first
            self._strip_done.pop(next(iter(self._strip_done)))
        if progress is not None:
            progress(total, total)
        return [self._strip_done[k] for k in keys]

    # -- recipes -----------------------------------------------------------------------
    def recipe(self, edits, set_files: dict, png_path: str) -> dict:
        """The recipe of the current image with ``edits``: direction files referenced by
        path where the set is a file on disk, else written to a sidecar next to the PNG."""
        from ..engine.directions import DirectionSet

        traj = self.require_traj()
        self.model.use_conditioning(traj.origin)  # the image's prompt, whatever a failed job set
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
        region = None
        if self.region_mask is not None:
            region = region_entry(self.region_free_steps, mask=self.save_region_png(png_path),
                                  coverage=float(self.region_mask.mean()))
        return make_recipe(self.model, self.model_info.source, traj.h_space, src, out, region=region,
                           app="hspace-studio gui")

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
STRIP_IMAGES_KEPT = 40  # finished strip images kept for strips cancelled half-way
PREVIEW_DECODE_S = 0.1  # a latent model's progressive preview decodes x_0 if that takes less


def _set_name(ds, set_id: str) -> str:
    """How a message names a set of the library."""
    return f"direction set '{ds.labels[0] if len(ds) else set_id}'"


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


def _point_for(model, h_space) -> str:
    """The h-space point to use on ``model``: ``h_space`` if it has it; its default point when
    none is asked for or the point is of the other kind of network (a UNet's mid-block point
    on a transformer, a block on a UNet: what a window asks before it knows the model)."""
    points = model.denoiser.points()
    if h_space in points:
        return h_space
    if h_space is None or str(h_space).startswith("block:") != points[0].startswith("block:"):
        return model.denoiser.default_point()
    raise ValueError(f"this model has no h-space point '{h_space}' (its points: {', '.join(points)})")


def _folder_key(folder) -> Optional[str]:
    """A folder as the model's info records it (resolved), None for none."""
    return str(Path(folder).expanduser().resolve()) if folder else None


def _lora_key(loras) -> tuple:
    """LoRAs as a loaded model records them: (absolute path, weight) pairs."""
    from pathlib import Path

    return tuple((str(Path(p).expanduser().resolve()), float(w)) for p, w in loras or ())
