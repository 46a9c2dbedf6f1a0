"""Routing a finished job's result (one without its own callback) to the window: a table
from job type to the name of the window's method that takes ``(job, result)``.

A job type absent from the table needs nothing done when it succeeds (or always comes with
a callback: ``SetRegion``, ``Segment``, ``ForgetSets``). Lookup follows the job type's MRO,
as the ``isinstance`` chain it replaces did.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window).
"""
from __future__ import annotations

from typing import Dict, Optional

from . import jobs as J
from .worker import JobResult

# job type -> method of the window taking (job, result): a job that succeeded
ROUTES: Dict[type, str] = {
    J.LoadModel: "_on_model_loaded",
    J.Sample: "_on_trajectory",
    J.Invert: "_on_trajectory",
    J.OpenTrajectory: "_on_trajectory",
    J.ImportDirections: "_on_sets_added",
    J.DiscoverPCA: "_on_sets_added",
    J.DiscoverJacobian: "_on_sets_added",
    J.DiscoverSupervised: "_on_sets_added",
    J.Disentangle: "_on_sets_added",
    J.ExportDirections: "_on_directions_exported",
    J.ExportImage: "_on_image_exported",
    J.ExportStrip: "_on_image_exported",
    J.ExportGrid: "_on_image_exported",
    J.SaveTrajectory: "_on_file_written",
    J.LoadSession: "_on_session_loaded",
    J.SaveSession: "_on_nothing",
    J.Sleep: "_on_slept",
}
# job type -> method of the window taking (job, result): a job that failed (after the error is shown)
FAILED_ROUTES: Dict[type, str] = {J.LoadModel: "_on_model_failed", J.Sample: "_on_sample_stopped"}
# job type -> method of the window taking (job, result): a job that was cancelled
CANCELLED_ROUTES: Dict[type, str] = {J.LoadModel: "_on_model_cancelled", J.Sample: "_on_sample_stopped"}


def route(table: Dict[type, str], job) -> Optional[str]:
    """The method name ``table`` gives for ``job``'s type or its nearest base, or None."""
    for t in type(job).__mro__:
        if t in table:
            return table[t]
    return None


class ResultRouting:
    """Mixin of MainWindow; see the module docstring."""

    def _default_result(self, res: JobResult) -> None:
        job = res.job
        if res.cancelled:
            if res.error != "replaced by a newer request":
                self.statusBar().showMessage(f"{J.describe(job)}: cancelled", 5000)
            table = CANCELLED_ROUTES
        elif not res.ok:
            self.show_error(f"{J.describe(job)} failed: {res.error}")
            table = FAILED_ROUTES
        else:
            table = ROUTES
        name = route(table, job)
        if name is not None:
            getattr(self, name)(job, res)

    # -- handlers ------------------------------------------------------------------------
    def _on_model_loaded(self, job, res: JobResult) -> None:
        self._model_loaded(res.value)

    def _on_model_failed(self, job, res: JobResult) -> None:
        self._model_failed(job, res.error)

    def _on_model_cancelled(self, job, res: JobResult) -> None:
        if self.model_info is None:
            self.canvas.placeholder = "No model loaded"
            self.canvas.update()

    def _on_sample_stopped(self, job, res: JobResult) -> None:
        """A sample cancelled or failed: the seed box shows the seed of the image on the canvas
        again (unless a newer sample replaced this one)."""
        if res.cancelled and res.error == "replaced by a newer request":
            return
        src = self.traj_info.source if self.traj_info is not None else {}
        if src.get("kind") == "seed":
            self.source_panel.set_values(seed=int(src["seed"]))

    def _on_trajectory(self, job, res: JobResult) -> None:
        if isinstance(job, J.Invert):
            self.recent.add("images", str(job.path))
        self._trajectory_loaded(res.value, job)

    def _on_sets_added(self, job, res: JobResult) -> None:
        v = res.value
        self.library.add_sets(v)
        if isinstance(job, J.ImportDirections):
            for p in job.paths:
                self.recent.add("directions", str(p))
        names = ", ".join(s.name for s in v)
        n = sum(s.count for s in v)
        warnings = [w for s in v for w in (s.params.get("warnings") or [])]
        accuracy = [s.params["accuracy"] for s in v if s.params.get("accuracy")]
        self.show_info(f"{J.describe(job)}: added {names} ({n} direction{'' if n == 1 else 's'}, "
                       f"{res.seconds:.1f} s)" + "".join(f"; {a}" for a in accuracy)
                       + "".join(f"; {w}" for w in warnings),
                       level="warning" if warnings else "info")

    def _on_directions_exported(self, job, res: JobResult) -> None:
        v = res.value
        if v["whole"]:
            self.library.set_path(job.set_id, v["path"])
        self.recent.add("directions", v["path"])
        self.show_info(f"wrote {v['path']}")

    def _on_image_exported(self, job, res: JobResult) -> None:
        self.last_export = res.value
        self.show_info(f"wrote {res.value['path']}")

    def _on_file_written(self, job, res: JobResult) -> None:
        self.show_info(f"wrote {res.value}")

    def _on_session_loaded(self, job, res: JobResult) -> None:
        self._session_loaded(res.value, job.path)

    def _on_nothing(self, job, res: JobResult) -> None:
        pass

    def _on_slept(self, job, res: JobResult) -> None:
        self.show_info(f"waited {res.value} steps")
