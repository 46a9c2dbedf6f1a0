"""Progress reporting and cancellation for long operations.

Every long loop in the engine takes ``progress`` (a callable ``(done, total, message)``
or ``None``) and ``cancel`` (a :class:`CancelToken` or ``None``) and calls
:func:`step` once per diffusion step, which reports progress and raises
:class:`~hspace_studio.core.errors.Cancelled` when the token is set.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import Cancelled

ProgressFn = Callable[[int, int, str], None]


class CancelToken:
    """Thread-safe cancellation flag shared between a requester and a worker."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def check(cancel: Optional[CancelToken]) -> None:
    if cancel is not None:
        cancel.check()


class Progress:
    """Counts steps of a job made of several loops and forwards them to a callback."""

    def __init__(self, total: int, callback: Optional[ProgressFn] = None,
                 cancel: Optional[CancelToken] = None, message: str = "") -> None:
        self.total = max(1, int(total))
        self.done = 0
        self.callback = callback
        self.cancel = cancel
        self.message = message

    def step(self, n: int = 1, message: Optional[str] = None) -> None:
        check(self.cancel)
        self.done = min(self.total, self.done + n)
        if message is not None:
            self.message = message
        if self.callback is not None:
            self.callback(self.done, self.total, self.message)
