"""Per-step eta schedules: a number, one number per step, or a text spec such as ``last:0.3``."""
from __future__ import annotations

from typing import Sequence, Union

import torch

EtaLike = Union[float, Sequence[float], torch.Tensor, str]  # str: see eta_schedule


ETA_SPEC_HELP = ("a number (0 = DDIM, 1 = DDPM), a comma-separated list of one number per step, "
                 "'last:F' (eta 1 on the last fraction F of the steps, 0 before) or 'first:F' (eta 1 on "
                 "the first fraction F, 0 after); 'last:F:E' and 'first:F:E' use eta E instead of 1")


def eta_schedule(spec: str, steps: int) -> torch.Tensor:
    """The per-step etas of a text spec (:data:`ETA_SPEC_HELP`) at ``steps`` steps.

    ``last:F`` sets eta 1 on the last ``floor(F * steps)`` steps and 0 before them, as the
    reference code's ``get_eta_schedule(fraction=F, where="end")``; ``first:F`` is the
    reverse. A number or a comma-separated list reads as it does on the command line.
    """
    s = str(spec).strip()
    kind, sep, rest = s.partition(":")
    if not sep:
        try:
            vals = [float(v) for v in s.split(",")]
        except ValueError:
            raise ValueError(f"eta must be {ETA_SPEC_HELP}; got '{spec}'") from None
        return etas_tensor(vals[0] if len(vals) == 1 else vals, steps)
    kind = kind.strip().lower()
    parts = rest.split(":")
    if kind not in ("last", "first") or len(parts) > 2:
        raise ValueError(f"unknown eta schedule '{spec}': use {ETA_SPEC_HELP}")
    try:
        frac = float(parts[0])
        value = float(parts[1]) if len(parts) == 2 else 1.0
    except ValueError:
        raise ValueError(f"eta schedule '{spec}': F and E must be numbers") from None
    if not 0 <= frac <= 1:
        raise ValueError(f"eta schedule '{spec}': the fraction must be between 0 and 1")
    if not 0 <= value < float("inf"):
        raise ValueError(f"eta schedule '{spec}': eta must be finite and >= 0")
    steps = int(steps)
    n_on = min(steps, int(frac * steps + 1e-9))  # floor, forgiving 0.3 * 10 = 3.0000000000000004
    on = torch.zeros(steps, dtype=torch.bool)
    if n_on:
        if kind == "last":
            on[steps - n_on:] = True
        else:
            on[:n_on] = True
    return on.float() * value


def etas_tensor(eta: EtaLike, steps: int) -> torch.Tensor:
    """A per-step eta schedule from a number, a sequence of ``steps`` numbers or a text
    spec (see :func:`eta_schedule`, e.g. ``"last:0.3"``)."""
    if isinstance(eta, str):
        e = eta_schedule(eta, steps)
    elif isinstance(eta, (int, float)):
        e = torch.full((steps,), float(eta))
    else:
        e = torch.as_tensor(eta, dtype=torch.float32).flatten()
        if e.numel() != steps:
            raise ValueError(f"eta schedule has {e.numel()} values for {steps} steps")
    if not torch.isfinite(e).all() or (e < 0).any():
        raise ValueError("eta must be finite and >= 0")
    return e


def eta_json(eta: EtaLike, steps: int):
    """What a recipe records of ``eta``: a number as it is, anything else (a sequence, a
    tensor, a text spec) as its list of per-step etas."""
    if isinstance(eta, (int, float)):
        return float(eta)
    return [float(e) for e in etas_tensor(eta, steps).tolist()]
