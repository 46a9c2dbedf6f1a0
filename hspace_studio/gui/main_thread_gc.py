"""Python's cycle collector, run in the UI thread only while an engine thread is alive.

CPython collects reference cycles in whichever thread allocates past its threshold. With
the engine allocating on its worker thread, that is usually the worker; a cycle that holds
Qt objects (a closed window, plot items, timers) would then be destroyed off the UI thread,
which Qt does not support (it can crash or hang). While any window with an engine worker is
open, automatic collection is off and a timer in the UI thread collects instead, following
the same per-generation thresholds.

Call :func:`acquire` in the UI thread before starting a worker thread and :func:`release`
after it has stopped; the collector is back to automatic when the last user releases it.
"""
from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 1000


class _Collector(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.users = 0
        self.was_enabled = True
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.collect_due)

    def collect_due(self) -> Optional[int]:
        """Collect the oldest generation whose count is past its threshold (and the younger
        ones with it); returns that generation, or None."""
        counts, limits = gc.get_count(), gc.get_threshold()
        due = None
        for g in range(3):
            if counts[g] <= limits[g]:
                break
            due = g
        if due is not None:
            gc.collect(due)
        return due


_collector: Optional[_Collector] = None


def acquire() -> None:
    global _collector
    if _collector is None:
        _collector = _Collector()
    c = _collector
    if c.users == 0:
        c.was_enabled = gc.isenabled()
        gc.disable()
        c.timer.start()
    c.users += 1


def release() -> None:
    c = _collector
    if c is None or c.users == 0:
        return
    c.users -= 1
    if c.users == 0:
        c.timer.stop()
        gc.collect()  # what the open windows left, here in the UI thread
        if c.was_enabled:
            gc.enable()


def active() -> bool:
    return _collector is not None and _collector.users > 0
