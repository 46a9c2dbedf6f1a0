"""The image source: loading a model, sampling a seed, inverting an image, opening a
trajectory, and showing the trajectory the worker made.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from ..core.checkpoint_names import has_checkpoint_suffix
from . import jobs as J
from .source_panel import BUILT_IN
from .worker import JobHandle


class SourceControl:
    """Mixin of MainWindow; see the module docstring."""

    def load_model(self, source: str, h_space: Optional[str] = None) -> JobHandle:
        h_space = h_space or self.source_panel.h_space.currentText()
        self.canvas.placeholder = f"Loading model {source}…"
        self.canvas.update()
        guide, weight = self.source_panel.guidance(str(source))
        try:
            loras = self.source_panel.loras()
        except ValueError as e:
            self.show_error(str(e))
            loras = ()
        return self.submit(J.LoadModel(str(source), h_space, self.device, guide, weight,
                                       self.source_panel.timesteps(), loras, self.source_panel.model_config()))

    def _show_model(self, info: J.ModelInfo) -> None:
        """The image source's model, h-space point, guidance and spacing as ``info`` has them."""
        self.source_panel.set_model_source(info.source, self.recent.get("models"))
        self.source_panel.set_points(info.h_points, info.h_space)
        self.source_panel.set_loras(info.loras, info.conditioning is not None)
        self.source_panel.set_model_config(info.model_config)
        self.source_panel.set_guidance(info.source, info.guide, info.guide_weight)
        self.source_panel.set_timesteps(info.timesteps)
        self.source_panel.set_conditioning(info.conditioning, info.takes_negative)
        self.discovery.set_conditional(info.conditioning is not None)

    def _model_failed(self, job: J.LoadModel, error: str) -> None:
        if self.model_info is not None:  # keep the previous model
            self._show_model(self.model_info)
            if has_checkpoint_suffix(job.source):  # its file stays, to be completed (Configs row) and loaded
                self.source_panel.model.setCurrentText(job.source)
                self.source_panel.set_model_config(job.model_config)
        else:
            self.canvas.placeholder = f"No model loaded.\n{error}\nChoose a model in 'Image source'."
            self.canvas.update()

    def _model_loaded(self, info: J.ModelInfo) -> None:
        self.messages.clear_error()
        first = self.model_info is None
        changed = first or (info.fingerprint, info.h_space, info.timesteps) != (
            self.model_info.fingerprint, self.model_info.h_space, self.model_info.timesteps)
        self.model_info = info
        if info.source not in BUILT_IN:
            self.recent.add("models", info.source)
        self._show_model(info)
        self.discovery.set_advice(info.advice)
        self.brush.set_default_fits(info.domain_images)
        self.mask.reset(info.image_size)
        self.canvas.placeholder = "Sampling…"
        self._update_title()
        if not changed and self.traj_info is not None:
            return
        self.statusBar().showMessage(f"model: {info.description}", 8000)
        self.traj_info = None  # the worker dropped the old trajectory with the old model
        self._node_epoch += 1
        if not first:  # the window's own first model is no change of the user's
            self._mark_dirty()
        if not self._loading_session:
            self.remake_source()

    def _sampling_params(self) -> Tuple[int, float]:
        return self.source_panel.steps.value(), float(self.source_panel.eta.value())

    def _steps_count(self) -> int:
        return len(self.traj_info.timesteps) if self.traj_info else self.source_panel.steps.value()

    def sample_current_seed(self) -> Optional[JobHandle]:
        if self.model_info is None:
            return None
        steps, eta = self._sampling_params()
        return self.submit(J.Sample(*self.source_panel.conditioning(), seed=self.source_panel.seed.value(),
                                    steps=steps, eta=eta))

    def remake_source(self) -> Optional[JobHandle]:
        """Make the current image again (new model, steps or eta)."""
        if self.model_info is None:
            return None
        steps, eta = self._sampling_params()
        kind = self._source.get("kind")
        if kind == "image" and self._source.get("path"):
            return self.submit(J.Invert(*self.source_panel.conditioning(), path=self._source["path"],
                                        steps=steps, eta=eta))
        if kind == "trajectory" and self._source.get("path"):
            if self.traj_info is not None and len(self.traj_info.timesteps) != steps:
                self.show_info("a trajectory file fixes its own steps and eta; sampling the seed instead",
                               level="warning")
                return self.sample_current_seed()
            return self.submit(J.OpenTrajectory(self._source["path"]))
        return self.sample_current_seed()

    def open_image(self, path: str) -> JobHandle:
        steps, eta = self._sampling_params()  # "Open recent" gets it once it has opened
        return self.submit(J.Invert(*self.source_panel.conditioning(), path=str(path), steps=steps, eta=eta))

    def open_trajectory(self, path: str) -> JobHandle:
        return self.submit(J.OpenTrajectory(str(path)))

    def _trajectory_loaded(self, info: J.TrajectoryInfo, job=None) -> None:
        self.messages.clear_error()  # a new image is on the canvas: an earlier failure is stale
        self.traj_info = info
        self._node_epoch += 1  # strips of the old image are no previews of this one
        self._source = dict(info.source)
        src = info.source
        if self.model_info is not None and self.model_info.conditioning is not None and "prompt" in info.origin:
            self.source_panel.set_conditioning(info.origin, self.model_info.takes_negative)  # the image's own prompt
        if src.get("kind") == "seed":
            text = f"seed {src['seed']}, {src['steps']} steps, eta {src['eta']:g}"
            self.source_panel.set_values(seed=src["seed"])
        elif src.get("kind") == "image":
            text = f"image {Path(src['path']).name} ({info.origin.get('inversion', 'inverted')}"
            text += f", PSNR {info.psnr:.1f} dB)" if info.psnr is not None and info.psnr != float("inf") else \
                ", exact)" if info.psnr is not None else ")"
            if info.note:
                text += f"\n{info.note}"
        else:
            text = f"trajectory {Path(str(src.get('path'))).name} ({len(info.timesteps)} steps)"
        if src.get("kind") in ("image", "trajectory"):
            self.source_panel.set_values(steps=len(info.timesteps))
        self.source_panel.info.setText(text + (f"\n{self.model_info.description}" if self.model_info else ""))
        self.canvas.set_original(info.image)
        self.canvas.set_edited(info.image)
        if self.mask.doc.shape != info.image.shape[:2]:
            self.mask.reset(info.image.shape[:2])
        self._sync_sliders()
        if getattr(self, "_first_image", True):  # the image a fresh window starts with changes nothing
            self._first_image = False
        else:
            self._mark_dirty()
        self.trajectoryShown.emit()
        self.request_preview()
        self._request_strip()
