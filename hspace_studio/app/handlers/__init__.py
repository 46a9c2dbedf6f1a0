"""The handler registry: ``run_job(state, job, progress, cancel)`` runs the handler of a request's type.

Handlers are grouped by concern in the modules of this package (``source``, ``library``,
``discovery``, ``export``, ``sessions``); importing the package registers them all.
"""
from __future__ import annotations

from typing import Callable, Dict

from ...core.errors import HSpaceError
from ..state import EngineState


ProgressFn = Callable[[int, int, str], None]
HANDLERS: Dict[type, Callable] = {}


def handler(cls):
    def deco(fn):
        HANDLERS[cls] = fn
        return fn
    return deco


def run_job(state: EngineState, job, progress: ProgressFn, cancel):
    fn = HANDLERS.get(type(job))
    if fn is None:
        raise HSpaceError(f"unknown job {type(job).__name__}")
    return fn(state, job, progress, cancel)


from . import discovery, export, library, sessions, source, speed  # noqa: E402,F401  (registers the handlers)
