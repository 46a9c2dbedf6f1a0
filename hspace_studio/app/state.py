"""EngineState: what the worker owns, in four parts kept in step.

- ``models`` (:class:`.model_slot.ModelSlot`): the model, its info, h-space point, speed
  settings, pixels, segmenter;
- ``image`` (:class:`.current_image.CurrentImage`): the trajectory being edited and its source;
- ``library`` (:class:`.direction_library.DirectionLibrary`): the direction sets and their checks;
- ``renderer`` (:class:`.renderer.Renderer`): deltas, region, renders and strips, with caches.

This class only coordinates them: another model or image drops the renderer's caches and
tells the library's checks to run again; a session that fails half-way is rolled back
(:meth:`snapshot`, :meth:`restore`); an export's recipe is :func:`.image_recipe.image_recipe`.
"""
from __future__ import annotations

from typing import Optional

from .current_image import CurrentImage
from .direction_library import DirectionLibrary
from .image_recipe import image_recipe
from .model_slot import ModelSlot
from .records import ModelInfo, TrajectoryInfo
from .renderer import Renderer


class EngineState:
    """See the module docstring. ``model``, ``model_info``, ``h_space``, ``traj``, ``sets``
    and ``version`` read the parts' own attributes."""

    def __init__(self) -> None:
        from ..domains import ensure

        ensure()  # the domain whose classifier, segmenter and terms the jobs use
        self.models = ModelSlot()
        self.image = CurrentImage()
        self.library = DirectionLibrary(self.models, self.image)
        self.renderer = Renderer(self.models, self.library, self.image)

    # -- read-only shortcuts -------------------------------------------------------------
    @property
    def model(self):
        return self.models.model

    @property
    def model_info(self) -> Optional[ModelInfo]:
        return self.models.model_info

    @property
    def h_space(self) -> str:
        return self.models.h_space

    @property
    def traj(self):
        return self.image.traj

    @property
    def sets(self) -> dict:
        return self.library.sets

    @property
    def version(self) -> int:
        return self.library.version

    # -- what changes several parts --------------------------------------------------------
    def load_model(self, source: str, h_space: str, device=None, guide: Optional[str] = None,
                   guide_weight: Optional[float] = None, timesteps: Optional[str] = None,
                   loras=(), model_config: Optional[str] = None, progress=None, cancel=None) -> ModelInfo:
        """Load a model (see :meth:`.model_slot.ModelSlot.load_model`); another model or
        h-space point leaves no image."""
        info, changed = self.models.load_model(source, h_space, device, guide, guide_weight, timesteps, loras,
                                               model_config, progress, cancel)
        if changed:
            self.image.traj = None
            self.invalidate()
        return info

    def set_acceleration(self, compile: bool, bf16: bool, progress=None, cancel=None,
                         low_memory: bool = False) -> dict:
        """See :meth:`.model_slot.ModelSlot.set_acceleration`; renders made before are dropped."""
        if self.models.model is not None:
            self.invalidate()
        return self.models.set_acceleration(compile, bf16, progress, cancel, low_memory=low_memory)

    def set_trajectory(self, traj, source: dict, note: str = "", psnr=None) -> TrajectoryInfo:
        self.image.set(traj, source)
        self.invalidate()
        return self.trajectory_info(note, psnr)

    def trajectory_info(self, note: str = "", psnr=None) -> TrajectoryInfo:
        t = self.image.traj
        return TrajectoryInfo(gen=self.image.gen, image=self.models.pixels(t.x_0), timesteps=tuple(int(v) for v in t.timesteps),
                              source=dict(self.image.source), origin=dict(t.origin), h_space=t.h_space,
                              note=note, psnr=psnr)

    def invalidate(self) -> None:
        """Forget the renderer's caches and have the sets checked again (the image, the model
        or the sets changed)."""
        self.renderer.invalidate()
        self.library.version += 1

    def forget_sets(self, set_ids) -> int:
        """Drop direction sets and what is cached of them; returns how many were asked for."""
        self.renderer.forget(set_ids)
        return self.library.forget(set_ids)

    def recipe(self, edits, set_files: dict, png_path: str) -> dict:
        return image_recipe(self, edits, set_files, png_path)

    def snapshot(self) -> tuple:
        """What :meth:`restore` puts back: the model, the image and the sets (not copies of tensors)."""
        m, i = self.models, self.image
        return ((m.model, m.model_info, m.h_space, m._asked_timesteps), (i.traj, dict(i.source), i.gen),
                dict(self.library.sets))

    def restore(self, snap: tuple) -> None:
        (model, info, h_space, asked), (traj, source, gen), sets = snap
        m, i = self.models, self.image
        m.model, m.model_info, m.h_space, m._asked_timesteps = model, info, h_space, asked
        i.traj, i.source, i.gen = traj, source, gen
        self.library.sets = sets
        self.invalidate()
