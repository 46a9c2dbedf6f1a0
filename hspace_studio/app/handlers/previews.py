"""Slider previews and strips: how a :class:`~..requests.PreviewRequest` or a
:class:`~..requests.StripRequest` becomes engine calls and result records.

The GUI's worker (``gui/worker.py``) owns only the thread, the latest-request slots and the
signals: it passes a cancel token that fires when newer or more urgent work waits, and a
function that sends a result to the UI.
"""
from __future__ import annotations

import sys
import time
import traceback
from typing import Callable, Optional

from ...core.errors import Cancelled
from ..errors import APP_ERRORS, error_message, is_expected
from ..records import PreviewResult, StripResult
from ..requests import PreviewRequest, StripRequest

PREVIEW_INTERVAL = 0.25  # seconds between intermediate images of a preview: each costs the
# UI thread a repaint that competes with the decode for the GIL (at 0.1 s the default
# model's previews were ~15% slower; see bench/bench_preview.py)

# what run_preview reports
EMPTY, DONE, FAILED, SUPERSEDED = "empty", "done", "failed", "superseded"


def _report(e: BaseException) -> str:
    """The one-line message of a failed preview or strip; a bug's traceback goes to stderr."""
    if not is_expected(e, APP_ERRORS):
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    return error_message(e, APP_ERRORS)


def run_preview(state, req: PreviewRequest, cancel, emit: Callable[[PreviewResult], None],
                interval: float = PREVIEW_INTERVAL) -> str:
    """Render ``req.edits`` on ``state``'s image, sending every answer to ``emit``: at most
    every ``interval`` seconds (while ``cancel`` has not fired) the step reached, with
    ``req.progressive`` that step's preview image (:mod:`..progressive`); then the exact
    image, or a final result with the error.

    Returns what happened: ``EMPTY`` (no model or image: answered without an image, so the
    UI is not left waiting), ``DONE``, ``FAILED``, or ``SUPERSEDED`` (``cancel`` fired:
    nothing final is sent, a newer request will answer)."""
    if state.model is None or state.traj is None:
        emit(PreviewResult(req.id, None, True, 0.0))
        return EMPTY
    t0 = time.perf_counter()
    last = [t0]

    def intermediate(i, total, image):
        now = time.perf_counter()
        if i + 1 < total and now - last[0] >= interval and not cancel.cancelled:
            last[0] = now
            img = state.models.preview_pixels(image) if req.progressive else None
            emit(PreviewResult(req.id, img, False, now - t0, i + 1, total))

    try:
        img = state.renderer.render(req.edits, cancel=cancel, preview=intermediate)
    except Cancelled:
        return SUPERSEDED
    except Exception as e:  # noqa: BLE001 - answer the request whatever happened
        emit(PreviewResult(req.id, None, True, time.perf_counter() - t0, error=_report(e)))
        return FAILED
    emit(PreviewResult(req.id, img, True, time.perf_counter() - t0, state.traj.steps, state.traj.steps))
    return DONE


def run_strip(state, req: StripRequest, cancel, progress=None) -> Optional[StripResult]:
    """The images of ``req`` on ``state``'s image (one per scale), or a result with the error;
    None with no model or image. Raises :class:`Cancelled` when ``cancel`` fires (the caller
    may ask again later: the finished images are kept). ``progress(done, total)``: chains'
    steps."""
    if state.model is None or state.traj is None:
        return None
    try:
        images = state.renderer.render_strip(req.item, req.scales, req.others, cancel=cancel, progress=progress)
    except Cancelled:
        raise
    except Exception as e:  # noqa: BLE001
        return StripResult(req.id, (), req.scales, error=_report(e))
    return StripResult(req.id, tuple(images), req.scales)
