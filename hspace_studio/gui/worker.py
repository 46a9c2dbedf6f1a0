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
  therefore costs at most one extra step, never a backlog.
- :meth:`EngineWorker.request_strip`: the same for the thumbnail strip, at the lowest
  priority (any job or preview pre-empts it; it is retried afterwards).

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
from typing import Optional, Tuple

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from ..core.errors import Cancelled, HSpaceError
from ..core.progress import CancelToken


# --------------------------------------------------------------------------- requests

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
    id: int
    edits: Tuple[EditItem, ...]
    progressive: bool = True
    sent_at: float = 0.0  # time.perf_counter() in the UI when the request was made


@dataclass(frozen=True)
class StripRequest:
    id: int
    item: EditItem  # scale is ignored
    scales: Tuple[float, ...]
    others: Tuple[EditItem, ...] = ()


@dataclass(frozen=True)
class PreviewResult:
    id: int
    image: object  # numpy uint8 (H, W, 3)
    final: bool
    render_s: float  # worker time for this request so far
    step: int = 0
    steps: int = 0
    error: Optional[str] = None


@dataclass(frozen=True)
class StripResult:
    id: int
    images: tuple  # numpy uint8 (H, W, 3) each
    scales: Tuple[float, ...]
    error: Optional[str] = None


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
    setsChecked = Signal(object)  # {set_id: (status, text)}
    idle = Signal()

    PROGRESS_INTERVAL = 0.03  # seconds between progress signals of a job
    PREVIEW_INTERVAL = 0.25  # seconds between intermediate images of a preview: each costs the
    # UI thread a repaint that competes with the decode for the GIL (at 0.1 s the default
    # model's previews were ~15% slower; see bench/bench_preview.py)

    def __init__(self, state=None) -> None:
        super().__init__()
        from ..app.state import EngineState

        self.state = state or EngineState()
        self._cv = threading.Condition()
        self._jobs: deque = deque()
        self._preview: Optional[PreviewRequest] = None
        self._strip: Optional[StripRequest] = None
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
            self.setsChecked.emit(self.state.check_sets())
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
        except (HSpaceError, ValueError, IndexError, OSError, KeyError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            res = JobResult(h.id, h.job, False, error=msg, seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - report, keep running
            if not self._stop:  # failures of a job interrupted by exit are noise
                traceback.print_exc(file=sys.stderr)
            msg = str(e).splitlines()[0] if str(e) else ""
            res = JobResult(h.id, h.job, False, error=f"unexpected {type(e).__name__}: {msg}",
                            seconds=time.perf_counter() - t0)
        if self.state.version != version:
            self._emit_checks()
        self.jobFinished.emit(res)

    def _preview_superseded(self) -> bool:
        return self._preview is not None or self._stop

    def _run_preview(self, req: PreviewRequest) -> None:
        st = self.state
        if st.model is None or st.traj is None:  # nothing to edit: answer, so the UI is not left waiting
            self.previewReady.emit(PreviewResult(req.id, None, True, 0.0))
            return
        self.renders_started += 1
        t0 = time.perf_counter()
        last = [t0]
        token = _Preempt(self._preview_superseded)

        def intermediate(i, total, pred_x0):
            now = time.perf_counter()
            if i + 1 < total and now - last[0] >= self.PREVIEW_INTERVAL and not token.cancelled:
                last[0] = now
                img = st.preview_pixels(pred_x0[0])
                if img is not None:
                    self.previewReady.emit(PreviewResult(req.id, img, False, now - t0, i + 1, total))

        try:
            img = st.render(req.edits, cancel=token,
                            preview=intermediate if req.progressive else None)
        except Cancelled:
            self.renders_superseded += 1
            return
        except Exception as e:  # noqa: BLE001 - answer the request whatever happened
            if not isinstance(e, (HSpaceError, ValueError, IndexError, KeyError)):
                traceback.print_exc(file=sys.stderr)
            self.previewReady.emit(PreviewResult(req.id, None, True, time.perf_counter() - t0,
                                                 error=_message(e)))
            return
        self.renders_completed += 1
        self.previewReady.emit(PreviewResult(req.id, img, True, time.perf_counter() - t0,
                                             st.traj.steps, st.traj.steps))

    def _strip_preempted(self) -> bool:
        return self._strip is not None or self._preview is not None or bool(self._jobs) or self._stop

    def _run_strip(self, req: StripRequest) -> None:
        st = self.state
        if st.model is None or st.traj is None:
            return
        token = _Preempt(self._strip_preempted)
        try:
            images = st.render_strip(req.item, req.scales, req.others, cancel=token)
        except Cancelled:
            with self._cv:  # pre-empted by other work, not replaced: try again later
                if self._strip is None and not self._stop:
                    self._strip = req
            return
        except Exception as e:  # noqa: BLE001
            if not isinstance(e, (HSpaceError, ValueError, IndexError, KeyError)):
                traceback.print_exc(file=sys.stderr)
            self.stripReady.emit(StripResult(req.id, (), req.scales, error=_message(e)))
            return
        self.strips_completed += 1
        self.stripReady.emit(StripResult(req.id, tuple(images), req.scales))


def _message(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, (HSpaceError, ValueError, IndexError, KeyError, OSError)):
        return text or type(e).__name__
    return f"unexpected {type(e).__name__}: {text}"


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
