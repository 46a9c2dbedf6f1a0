"""The window's job queue: jobs handed to the engine worker, their handles and callbacks,
the running job's progress, time left and Cancel in the status bar, and what happens when
a job ends (its callback, else :class:`~hspace_studio.gui.results.ResultRouting`).

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow`: ``self`` is the window,
whose ``_handles``, ``_callbacks`` and ``_running`` this module keeps.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from .progress_text import bar_format, duration, time_left
from .worker import JobHandle, JobResult


class JobQueue:
    """Mixin of MainWindow; see the module docstring."""

    def submit(self, job, on_done: Optional[Callable[[JobResult], None]] = None) -> JobHandle:
        """Queue a job on the worker; ``on_done(result)`` replaces the default handling."""
        h = self.worker.submit(job)
        self._handles[h.id] = h
        if on_done is not None:
            self._callbacks[h.id] = on_done
        self._update_job_ui()
        return h

    @property
    def running_job(self) -> Optional[int]:
        """The id of the job the engine is running, or None."""
        return self._running

    @property
    def busy(self) -> bool:
        return bool(self._handles) or self.worker.busy

    @property
    def idle(self) -> bool:
        """Nothing queued or running, and the newest preview is on the canvas."""
        return (not self.busy and (self._preview_req is None
                                   or self.shown_preview_id >= self._preview_req.id))

    def cancel_job(self) -> None:
        """Cancel the running job, else a slow render in flight (Esc, the Cancel button)."""
        if self._running is not None and self._running in self._handles:
            self._handles[self._running].cancel()
            self._job_message = "cancelling…"
            self.job_label.setText("cancelling…")
        else:
            self.cancel_render()

    def _job_started(self, job_id: int, label: str) -> None:
        self._running = job_id
        self._job_name = label
        self._job_t0 = time.monotonic()
        self._job_counts = (0, 0, 0.0)  # done, total, seconds elapsed at that report
        self._job_phase = (1, 0.0)  # phase number, seconds elapsed when it began
        self.job_label.setText(label)
        self.job_progress.setRange(0, 0)
        self._job_clock.start()
        self._update_job_ui()

    def _job_progress(self, job_id: int, done: int, total: int, message: str) -> None:
        if job_id != self._running:
            return
        old_done, old_total, old_at = self._job_counts
        if old_total and (int(total) != old_total or int(done) < old_done):
            # a new phase (another total, or the count starting again): its time left is
            # estimated from its own steps, from the previous phase's last report on
            self._job_phase = (self._job_phase[0] + 1, old_at)
        self._job_counts = (int(done), int(total), time.monotonic() - self._job_t0)
        self.job_progress.setRange(0, max(1, total))
        self.job_progress.setValue(done)
        if message:
            self._job_message = message[:60]
        self._show_job_time()

    def _show_job_time(self) -> None:
        """Percentage, step i of n and time left in the bar; elapsed time by the label
        (also before the first report, while the bar can only show that it is busy)."""
        if self._running is None:
            return
        done, total, at = self._job_counts
        now = time.monotonic() - self._job_t0
        phase, since = self._job_phase
        left = time_left(done, total, at - since, now - since)
        self._job_left = left
        self.job_progress.setFormat(bar_format(done, total, left, self._queued(), phase=phase))
        text = self._job_message or self._job_name
        self.job_label.setText(f"{text} ({duration(now)})" if now >= 2 else text)

    def _update_job_ui(self) -> None:
        active = bool(self._handles)
        rendering = getattr(self, "_rendering", None) is not None
        self.job_progress.setVisible(active)
        self.cancel_button.setVisible(active or rendering)
        self.cancel_button.setEnabled(self._running is not None or rendering)
        if "cancel" in getattr(self, "act", {}):  # Esc cancels only while a job or a render runs
            self.act["cancel"].setEnabled(self._running is not None or rendering)
        self.job_label.setVisible(active)
        if self._running is None:
            self._job_clock.stop()
            self._job_message = ""
            queued = self._queued()
            self.job_progress.setFormat(f"%p%  (+{queued} queued)" if active and queued > 0 else "%p%")
        else:
            self._show_job_time()

    def _queued(self) -> int:
        return len(self._handles) - (1 if self._running in self._handles else 0)

    def _job_finished(self, res: JobResult) -> None:
        self._handles.pop(res.id, None)
        if res.id == self._running:
            self._running = None
        cb = self._callbacks.pop(res.id, None)
        try:
            if cb is not None:
                cb(res)
            else:
                self._default_result(res)
        finally:
            self._update_job_ui()
            self.jobDone.emit(res)
