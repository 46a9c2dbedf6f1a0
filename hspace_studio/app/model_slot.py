"""The loaded model: its info, h-space point and speed settings, its pixels, the segmenter."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..core.errors import ModelLoadError
from ..core.spacing import spacing_key
from .records import ModelInfo
from .requests import H_SPACE_POINTS

PREVIEW_DECODE_S = 0.1  # a latent model's progressive preview decodes x_0 if that takes less


class ModelSlot:
    """The model the worker holds, what the app shows of it (``model_info``), the h-space
    point edits use, the speed settings applied to every model loaded, the segmenter."""

    def __init__(self) -> None:
        self.model = None
        self.model_info: Optional[ModelInfo] = None
        self.h_space = "after"
        self._asked_timesteps: Optional[str] = None  # see load_model
        self._decode_seconds: Optional[float] = None  # a latent model's last decode (preview_pixels)
        self._segmenter = None
        # engine.compiled's settings and the low-memory mode, for every model loaded
        self.acceleration = {"compile": False, "bf16": False, "low_memory": False}

    def load_model(self, source: str, h_space: str, device=None, guide: Optional[str] = None,
                   guide_weight: Optional[float] = None, timesteps: Optional[str] = None,
                   loras=(), model_config: Optional[str] = None, progress=None,
                   cancel=None) -> Tuple[ModelInfo, bool]:
        """Load a model (kept when nothing that makes it differs); ``progress``, ``cancel``: a hub
        download's. Returns its info and whether anything changed (the model or its h-space
        point: an image made before no longer fits)."""
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
            return self.model_info, False
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
        return self.model_info, True

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

    def require(self):
        if self.model is None:
            raise ModelLoadError("no model is loaded")
        return self.model

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

    def segmenter(self, spec: Optional[str]):
        """The segmenter ``spec`` names (None: the domain's default), loaded once."""
        from ..engine.segmenter import load_segmenter

        if self._segmenter is None or self._segmenter[0] != spec:
            self._segmenter = (spec, load_segmenter(spec, device=self.model.device))
        return self._segmenter[1]


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
