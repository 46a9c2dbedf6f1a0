"""The engine worker: one long-lived object on its own QThread that owns the model.

The UI never runs torch. It talks to the worker through three doors:

- :meth:`EngineWorker.submit` queues a *job* (a frozen request from :mod:`.jobs`:
  load a model, sample, invert, discover, export ...). Jobs run one at a time in
  order; each has a :class:`~hspace_studio.core.progress.CancelToken`. A job with a
  ``coalesce`` key replaces a queued or running job with the same key (scrubbing
  through seeds samples only the last one).
- :meth:`EngineWorker.request_preview` puts a :class:`PreviewRequest` into a
  mutex-guarded *latest request* slot. The worker drains the slot: it renders only
  the newest request, and a render still running when a newer request arrives is
  abandoned at the end of its current diffusion step. A burst of slider moves
  therefore costs at most one extra step, never a backlog. :meth:`cancel_preview`
  abandons the render in flight (Esc).
- :meth:`EngineWorker.request_strip`: the same for the thumbnail strip, at the lowest
  priority (any job or preview pre-empts it at the end of its current step; it goes on
  afterwards from its finished images).

What a job, a preview or a strip does is the application layer's (``app/handlers``, no
Qt); this module is the thread, the queue, the latest-request slots and the signals.

Results come back by Qt signals, always emitted from the worker thread (connect them
to methods of objects living in the UI thread, so they are queued there; the worker
thread runs no Qt event loop). Requests carry a rising id; the UI drops results older
than its newest request.
"""
from __future__ import annotations

import atexit
import sys
import threading
import weakref
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from ..app.errors import APP_ERRORS, error_message, is_expected
from ..app.handlers.previews import DONE, EMPTY, PREVIEW_INTERVAL, SUPERSEDED, run_preview, run_strip
from ..app.requests import PreviewRequest, StripRequest
from ..core.errors import Cancelled
from ..core.progress import CancelToken


# --------------------------------------------------------------------------- jobs

@dataclass(frozen=True)
class JobResult:
    id: int
    job: object
    ok: bool
    value: object = None
    error: Optional[str] = None
    cancelled: bool = False
    seconds: float = 0.0
    steps_after_cancel: int = 0  # progress steps the worker finished after Cancel was pressed


@dataclass
class JobHandle:
    id: int
    job: object
    token: CancelToken = field(default_factory=CancelToken)
    cancelled_at: Optional[float] = None
    replaced: bool = False

    def cancel(self) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()
        self.token.cancel()


class _Preempt(CancelToken):
    """A cancel token that fires when newer or more urgent work is waiting."""

    def __init__(self, test) -> None:
        super().__init__()
        self._test = test

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or bool(self._test())

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled("superseded")


# --------------------------------------------------------------------------- worker

class EngineWorker(QObject):
    """Runs on its own thread (see :class:`EngineThread`); all torch work happens here."""

    jobStarted = Signal(int, str)
    jobProgress = Signal(int, int, int, str)
    jobFinished = Signal(object)  # JobResult
    previewReady = Signal(object)  # PreviewResult
    stripReady = Signal(object)  # StripResult
    stripProgress = Signal(int, int, int)  # strip request id, steps done, steps in all
    setsChecked = Signal(object)  # {set_id: (status, text)}
    idle = Signal()

    PROGRESS_INTERVAL = 0.03  # seconds between progress signals of a job
    PREVIEW_INTERVAL = PREVIEW_INTERVAL  # seconds between intermediate images of a preview

    def __init__(self, state=None) -> None:
        super().__init__()
        from ..app.state import EngineState

        self.state = state or EngineState()
        self._cv = threading.Condition()
        self._jobs: deque = deque()
        self._preview: Optional[PreviewRequest] = None
        self._strip: Optional[StripRequest] = None
        self._preview_cancelled = False  # Esc: the render in flight is abandoned
        self._stop = False
        self._current: Optional[JobHandle] = None
        self._busy = False
        self._next_job = 0
        # counters (read by tests and the benchmark)
        self.renders_started = 0
        self.renders_completed = 0
        self.renders_superseded = 0
        self.strips_completed = 0

    # -- called from the UI thread ---------------------------------------------------
    def submit(self, job) -> JobHandle:
        # Signals are only ever emitted from the worker thread: a replaced job stays in
        # the queue, cancelled, and the worker reports it when it reaches it.
        with self._cv:
            self._next_job += 1
            handle = JobHandle(self._next_job, job)
            key = getattr(job, "coalesce", None)
            if key:  # a newer request of the same kind replaces queued and running ones
                running = [self._current] if self._current is not None else []
                for old in [*self._jobs, *running]:
                    if getattr(old.job, "coalesce", None) == key and not old.token.cancelled:
                        old.replaced = True
                        old.cancel()
            self._jobs.append(handle)
            self._cv.notify_all()
        return handle

    def request_preview(self, req: PreviewRequest) -> None:
        with self._cv:
            self._preview = req  # latest wins; an older pending request is dropped
            self._preview_cancelled = False
            self._cv.notify_all()

    def cancel_preview(self) -> None:
        """Abandon the render in flight (and a request not started) at the end of its step."""
        with self._cv:
            self._preview = None
            self._preview_cancelled = True
            self._cv.notify_all()

    def request_strip(self, req: Optional[StripRequest]) -> None:
        with self._cv:
            self._strip = req
            self._cv.notify_all()

    def cancel_all(self) -> None:
        with self._cv:
            for h in self._jobs:
                h.cancel()
            if self._current is not None:
                self._current.cancel()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            for h in self._jobs:
                h.cancel()
            if self._current is not None:
                self._current.cancel()
            self._cv.notify_all()

    @property
    def busy(self) -> bool:
        """True while anything is queued or running."""
        with self._cv:
            return bool(self._busy or self._jobs or self._preview is not None or self._strip is not None)

    @property
    def jobs_pending(self) -> bool:
        with self._cv:
            return bool(self._jobs) or self._current is not None

    # -- the worker thread's loop ------------------------------------------------------
    def _has_work(self) -> bool:
        return bool(self._stop or self._jobs or self._preview is not None or self._strip is not None)

    @Slot()
    def run(self) -> None:
        while True:
            with self._cv:
                while not self._has_work() and not self._busy:
                    self._cv.wait()
                went_idle = not self._has_work()
                if went_idle:
                    self._busy = False
                elif self._stop:
                    return
                else:
                    self._busy = True
                    if self._jobs:
                        kind, item = "job", self._jobs.popleft()
                        self._current = item
                    elif self._preview is not None:
                        kind, item = "preview", self._preview
                        self._preview = None
                    else:
                        kind, item = "strip", self._strip
                        self._strip = None
            if went_idle:
                # Signals are emitted outside the lock that the UI thread takes in submit()
                # and busy: an emit may wait on Qt's and Python's own locks.
                self.idle.emit()
                continue
            try:
                if kind == "job":
                    self._run_job(item)
                elif kind == "preview":
                    self._run_preview(item)
                else:
                    self._run_strip(item)
            except Exception:  # noqa: BLE001 - never let the worker thread die
                traceback.print_exc()
            finally:
                with self._cv:
                    self._current = None

    def _emit_checks(self) -> None:
        try:
            self.setsChecked.emit(self.state.library.check_sets())
        except Exception:  # noqa: BLE001
            traceback.print_exc()

    def _run_job(self, h: JobHandle) -> None:
        from ..app.handlers import run_job
        from ..app.requests import describe

        if h.token.cancelled:
            self.jobFinished.emit(JobResult(h.id, h.job, False, cancelled=True,
                                            error="replaced by a newer request" if h.replaced else "cancelled"))
            return
        self.jobStarted.emit(h.id, describe(h.job))
        t0 = time.perf_counter()
        last = [0.0]
        after_cancel = [0]

        def progress(done, total, message=""):
            if h.cancelled_at is not None:
                after_cancel[0] += 1
            now = time.perf_counter()
            if now - last[0] >= self.PROGRESS_INTERVAL or done >= total:
                last[0] = now
                self.jobProgress.emit(h.id, int(done), int(total), str(message))

        version = self.state.version
        try:
            value = run_job(self.state, h.job, progress, h.token)
            res = JobResult(h.id, h.job, True, value=value, seconds=time.perf_counter() - t0)
        except Cancelled:
            res = JobResult(h.id, h.job, False, cancelled=True,
                            error="replaced by a newer request" if h.replaced else "cancelled",
                            seconds=time.perf_counter() - t0, steps_after_cancel=after_cancel[0])
        except Exception as e:  # noqa: BLE001 - report, keep running
            if not is_expected(e, APP_ERRORS) and not self._stop:  # (failures of a job interrupted
                traceback.print_exc(file=sys.stderr)  # by exit are noise)
            res = JobResult(h.id, h.job, False, error=error_message(e, APP_ERRORS),
                            seconds=time.perf_counter() - t0)
        if self.state.version != version:
            self._emit_checks()
        self.jobFinished.emit(res)

    def _preview_superseded(self) -> bool:
        return self._preview is not None or self._preview_cancelled or self._stop

    def _run_preview(self, req: PreviewRequest) -> None:
        outcome = run_preview(self.state, req, _Preempt(self._preview_superseded), self.previewReady.emit,
                              self.PREVIEW_INTERVAL)
        if outcome != EMPTY:
            self.renders_started += 1
        if outcome == DONE:
            self.renders_completed += 1
        elif outcome == SUPERSEDED:
            self.renders_superseded += 1

    def _strip_preempted(self) -> bool:
        return self._strip is not None or self._preview is not None or bool(self._jobs) or self._stop

    def _run_strip(self, req: StripRequest) -> None:
        last = [0.0]

        def progress(done, total):
            now = time.perf_counter()
            if now - last[0] >= self.PROGRESS_INTERVAL or done >= total:
                last[0] = now
                self.stripProgress.emit(req.id, int(done), int(total))

        try:
            res = run_strip(self.state, req, _Preempt(self._strip_preempted), progress)
        except Cancelled:
            with self._cv:  # pre-empted by other work, not replaced: try again later
                if self._strip is None and not self._stop:
                    self._strip = req
            return
        if res is None:
            return
        if res.error is None:
            self.strips_completed += 1
        self.stripReady.emit(res)


_live_threads: set = set()  # EngineThreads whose thread may still run (strong references:
# a running QThread must never be garbage collected, Qt aborts the process if it is)


def shutdown_all(timeout_ms: int = 30000) -> None:
    """Stop every engine thread still running (at interpreter exit; idempotent)."""
    for eng in list(_live_threads):
        eng.shutdown(timeout_ms)


atexit.register(shutdown_all)


class EngineThread:
    """Owns the QThread and the worker living on it.

    The thread stops when :meth:`shutdown` is called, when the application quits
    (``QCoreApplication.aboutToQuit``) and, as a last resort, at interpreter exit, so that
    a program that never closes its window does not die with "QThread: Destroyed while
    thread ... is still running".
    """

    def __init__(self, state=None) -> None:
        self.thread = QThread()
        self.thread.setObjectName("engine-worker")
        self.worker = EngineWorker(state)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self._stopped = False
        _live_threads.add(self)
        app = QCoreApplication.instance()
        if app is not None:
            ref = weakref.ref(self)

            def on_quit():
                eng = ref()
                if eng is not None:
                    eng.shutdown()

            app.aboutToQuit.connect(on_quit)
        self.thread.start()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Stop the worker; returns whether its thread has ended. Safe to call again,
        also late in interpreter exit, when Qt may have deleted the thread object."""
        if self._stopped:
            return True
        try:
            self.worker.stop()
            self.thread.quit()
            if not self.thread.wait(timeout_ms):
                print("warning: the engine worker did not stop in time", file=sys.stderr)
                return False
        except RuntimeError:  # the C++ QThread is gone (it had stopped, or Qt would have aborted)
            pass
        self._stopped = True
        _live_threads.discard(self)
        return True
