"""What the status bar says about a running job: percentage, step i of n, time left.

Pure functions (no Qt) so the wording is easy to test; the window calls them on every
progress report of the engine and once a second in between.
"""
from __future__ import annotations

from typing import Optional


def duration(seconds: float) -> str:
    """A short, readable duration: '< 1 s', '42 s', '3 min 05 s', '1 h 12 min'."""
    s = int(round(max(0.0, seconds)))
    if seconds < 1:
        return "< 1 s"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def time_left(done: int, total: int, elapsed_at_report: float, elapsed_now: float) -> Optional[float]:
    """Seconds left, at the rate so far (the time up to the last report over the steps it
    finished), less the time since that report; None before the first step, and None once the
    estimate has run out while steps remain (a step slower than those before: the time left is
    not known, and "< 1 s left" would be wrong for as long as it runs)."""
    if done <= 0 or total <= 0 or done >= total or elapsed_at_report <= 0:
        return None
    per_step = elapsed_at_report / done
    left = per_step * total - elapsed_now
    return left if left > 0 else None


def bar_format(done: int, total: int, left: Optional[float], queued: int = 0, phase: int = 1) -> str:
    """The progress bar's format (``%p%`` is Qt's percentage). From a job's second phase on
    (its steps counted again), the steps and the time left are the phase's."""
    parts = ["%p%"]
    if total > 0:
        parts.append((f"phase {phase}: " if phase > 1 else "") + f"step {min(done, total)} of {total}")
    if left is not None:
        parts.append(f"{duration(left)} left" + (" in this phase" if phase > 1 else ""))
    text = " · ".join(parts)
    return text + (f"  (+{queued} queued)" if queued > 0 else "")
