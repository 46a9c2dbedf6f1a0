"""The engine's speed settings: a compiled network and bf16 arithmetic (:mod:`...engine.compiled`)."""
from __future__ import annotations

from ..requests import SetAcceleration
from . import handler


@handler(SetAcceleration)
def _set_acceleration(state, job, progress, cancel):
    """Keep the setting for every model loaded from now on, apply it to the loaded one and
    build its compiled code now (tens of seconds on a CPU the first time), so that no
    slider waits for it. Returns what is in force: ``{"compile": bool, "bf16": bool, "low_memory": bool}``."""
    progress(0, 3, "building the compiled network (once per model: tens of seconds)"
             if job.compile else "setting the engine's arithmetic")
    in_force = state.set_acceleration(job.compile, job.bf16, progress, cancel, low_memory=job.low_memory)
    progress(3, 3, "done")
    return in_force
