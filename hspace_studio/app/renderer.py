"""Edited images of the current image: the deltas of the active directions, the region edits
stay inside, the exact render with its step previews, strips; and their caches."""
from __future__ import annotations

import dataclasses
import time
from typing import List, Optional

import numpy as np

from ..core.errors import ModelMismatchError
from .direction_library import set_name
from .edits import h_delta, mask_region, noise_edit, strip_x0

STRIP_IMAGES_KEPT = 40  # finished strip images kept for strips cancelled half-way


class Renderer:
    """Renders the current image (``image``) of the loaded model (``models``) with directions
    of the library (``library``). Caches, all dropped by :meth:`invalidate`: each direction's
    per-step delta, the last render (with its chain's predicted x_0s, :mod:`.progressive`),
    strips' finished images. ``call_seconds``: one network call of one chain, last measured."""

    def __init__(self, models, library, image) -> None:
        self.models = models
        self.library = library
        self.image = image
        self._deltas: dict = {}
        self._last: Optional[tuple] = None  # (edits, x0, its chain's predicted x_0s)
        self._strip_done: dict = {}  # (item, others, scale) -> pixels of a strip's finished images
        self.call_seconds: Optional[float] = None
        self.region_mask: Optional[np.ndarray] = None  # edits stay inside it (see SetRegion)
        self.region_free_steps = 1
        self._region = None  # (model fingerprint, Region) built from region_mask

    def invalidate(self) -> None:
        """Forget the caches (the image, the model or the sets changed)."""
        self._deltas.clear()
        self._last = None
        self._strip_done.clear()

    def forget(self, set_ids) -> None:
        """Drop what is cached of the sets ``set_ids``."""
        gone = set(set_ids)
        for key in [k for k in self._deltas if k[0] in gone]:
            del self._deltas[key]
        self._strip_done.clear()

    def delta(self, set_id: str, index: int, at_timestep: Optional[int] = None):
        traj = self.image.require()
        key = (set_id, int(index), at_timestep)
        d = self._deltas.get(key)
        if d is None:
            ds = self.library.get_set(set_id)
            d = h_delta(ds, index, traj, self.models.model_info.weights_fingerprint, self.image.at_step(at_timestep),
                        set_name(ds, set_id))
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
        model = self.models.require()
        if self._region is None or self._region[0] != model.fingerprint:
            self._region = (model.fingerprint, mask_region(model, self.region_mask, self.region_free_steps))
        return self._region[1]

    def specs(self, edits) -> list:
        from ..engine.sampler import EditSpec

        return [self.noise_edit(e.set_id, e.index, float(e.scale)) if self.library.is_noise(e.set_id) else
                EditSpec(self.delta(e.set_id, e.index, e.at_timestep), float(e.scale),
                         tuple(e.window) if e.window is not None else None,
                         asymmetric=bool(getattr(e, "asymmetric", False)))
                for e in edits if float(e.scale) != 0.0]

    def noise_edit(self, set_id: str, index: int, scale: float):
        """The sampler ``NoiseEdit`` of a noise-space direction (window and step do not apply)."""
        key = (set_id, int(index), "noise")
        ne = self._deltas.get(key)
        if ne is None:
            ds = self.library.get_set(set_id)
            status, why = self.library.check_noise_set(ds)
            if status == "mismatch":
                raise ModelMismatchError(why)
            ne = noise_edit(ds, index, 1.0, self.image.require(), self.models.model_info.weights_fingerprint,
                            set_name(ds, set_id))
            self._deltas[key] = ne
        return dataclasses.replace(ne, scale=float(scale))

    def render_x0(self, edits, cancel=None, preview=None, progress=None):
        """x_0 of the image with ``edits``; ``preview(i, total, image)`` hears each step's
        preview (:func:`.progressive.step_preview`, in the diffusion space)."""
        from ..engine.sampler import edit_batch
        from .progressive import shown_chain, step_preview

        model, traj = self.models.require(), self.image.require()
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
        return self.models.pixels(self.render_x0(edits, cancel, preview))

    def strip_x0(self, item, scales, others, cancel=None, progress=None):
        """x_0 of ``item`` at each of ``scales`` with the ``others`` (its own scale is ignored)."""
        model, traj = self.models.require(), self.image.require()
        (first,) = self.specs([dataclasses.replace(item, scale=1.0)])
        return strip_x0(model, traj, first, scales, self.specs(others), region=self.region(),
                        progress=progress, cancel=cancel)

    def render_strip(self, item, scales, others, cancel=None, progress=None) -> List[np.ndarray]:
        """The images of ``item`` at ``scales`` with the ``others``, a few chains at a time
        (:func:`.progressive.strip_chunk`); finished images are kept, so a strip cancelled
        by more urgent work goes on where it stopped. ``progress(done, total)`` counts chains'
        steps."""
        from .progressive import chunks, strip_chunk

        traj = self.image.require()
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
                self._strip_done[k] = self.models.pixels(x)
            done += len(part) * per
        images = [self._strip_done[k] for k in keys]  # (before older images are dropped: these may be)
        while len(self._strip_done) > STRIP_IMAGES_KEPT:  # the oldest strips' first
            self._strip_done.pop(next(iter(self._strip_done)))
        if progress is not None:
            progress(total, total)
        return images
