"""Names of timestep spacings (``--timesteps``): parsed here, without torch, so that the
command line can check them before loading anything. :mod:`..engine.timesteps` places the
steps."""
from __future__ import annotations

from typing import Optional

SPACINGS_HELP = ("'scheduler' (the scheduler's own; the default, unless the model folder records "
                 "the spacing it was distilled for) or 'power:P' (t = 999 (1 - i/N)^P, e.g. power:0.8)")
POWER_RANGE = (0.25, 4.0)


def parse_spacing(spec: Optional[str]) -> Optional[float]:
    """The power P of a ``"power:P"`` spacing; None for the scheduler's own. ValueError if bad."""
    if spec is None or str(spec).strip() in ("", "scheduler"):
        return None
    kind, _, value = str(spec).strip().partition(":")
    if kind != "power" or not value:
        raise ValueError(f"unknown timestep spacing '{spec}': use {SPACINGS_HELP}")
    try:
        p = float(value)
    except ValueError:
        raise ValueError(f"timestep spacing '{spec}': P must be a number") from None
    lo, hi = POWER_RANGE
    if not lo <= p <= hi:  # also refuses nan
        raise ValueError(f"timestep spacing '{spec}': P must be between {lo:g} and {hi:g}")
    return p


def spacing_name(power: Optional[float]) -> str:
    return "scheduler" if power is None else f"power:{power:g}"


def spacing_key(spec: Optional[str]) -> Optional[str]:
    """The canonical name of ``spec`` (None for the scheduler's own), to compare spacings;
    a bad one is returned as it is (loading it reports the error)."""
    try:
        p = parse_spacing(spec)
    except ValueError:
        return spec
    return None if p is None else spacing_name(p)
