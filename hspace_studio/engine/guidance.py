"""Guiding a denoiser by a weaker version of itself (autoguidance, Karras et al. 2024).

The guided output is ``g + w (m - g)``: ``m`` the main UNet's output, ``g`` the output of a
guide UNet of the same family that is worse (here an earlier checkpoint of the same
training run), ``w`` the weight (1 = no guidance). Extrapolating away from the guide's
errors counters what both models get wrong in the same way (for the toyfaces model: too
few dark regions, beards and black hair). Guidance can be limited to an interval of
timesteps: outside it the main output is used as it is.

:class:`GuidedUNet` stands in for the main ``UNet2DModel``: its output is the guided one,
and every other attribute (``config``, ``mid_block``, ``down_blocks``...) is the main
UNet's, so h-space hooks and the Jacobian's module stubs act on the main UNet only. The
guide's output does not depend on h, so an edit of h moves the guided output ``w`` times
as much as the main one, and the Jacobian is ``w`` times the main UNet's.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..core.errors import ModelLoadError
from .timesteps import SCHEDULE_KEYS

# what a guide must share with the main UNet for their outputs to be combined (and the
# noise schedule: timesteps.SCHEDULE_KEYS)
SAME_CONFIG = ("sample_size", "in_channels", "out_channels")


class UNetOutput:
    """What a diffusers UNet's ``forward`` returns, as far as the engine reads it (for the
    UNet wrappers here and in :mod:`.text_model`)."""

    def __init__(self, sample: torch.Tensor):
        self.sample = sample

    def __getitem__(self, i):
        return (self.sample,)[i]


class GuidedUNet(torch.nn.Module):
    def __init__(self, main: torch.nn.Module, guide: torch.nn.Module, weight: float,
                 interval: Optional[Tuple[int, int]] = None):
        super().__init__()
        weight = float(weight)
        if not weight == weight or weight in (float("inf"), float("-inf")):
            raise ValueError("the guidance weight must be a finite number")
        self.main = main
        self.guide = guide
        self.weight = weight
        self.interval = (int(interval[0]), int(interval[1])) if interval is not None else None
        if self.interval is not None and self.interval[0] > self.interval[1]:
            raise ValueError(f"guidance interval {self.interval[0]}:{self.interval[1]}: "
                             "the first timestep must not be above the second")

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("main"), name)

    def guided_at(self, timestep) -> torch.Tensor:
        """Boolean per timestep value: where guidance applies."""
        t = torch.as_tensor(timestep).flatten()
        if self.interval is None:
            return torch.ones_like(t, dtype=torch.bool)
        lo, hi = self.interval
        return (t >= lo) & (t <= hi)

    def forward(self, sample, timestep, *args, return_dict: bool = True, **kwargs):
        out = self.main(sample, timestep, *args, **kwargs).sample
        where = self.guided_at(timestep)
        if self.weight != 1.0 and bool(where.any()):
            g = self.guide(sample, timestep, *args, **kwargs).sample
            guided = g + self.weight * (out - g)
            if where.numel() == 1:
                out = guided
            else:  # one timestep per sample
                m = where.to(out.device).view(-1, *([1] * (out.dim() - 1)))
                out = torch.where(m, guided, out)
        return UNetOutput(out) if return_dict else (out,)


def check_guide(main, guide, main_schedule: dict, guide_schedule: dict, name: str) -> None:
    """Refuse a guide whose outputs cannot be combined with the main UNet's."""
    for k in SAME_CONFIG:
        a, b = main.config.get(k), guide.config.get(k)
        if a != b:
            raise ModelLoadError(f"the guide {name} has {k} {b}, the model {a}: a guide must "
                                 "be the same kind of model (an earlier or smaller one)")
    for k in SCHEDULE_KEYS:
        a, b = main_schedule.get(k), guide_schedule.get(k)
        if a != b:
            raise ModelLoadError(f"the guide {name} has {k} {b!r}, the model {a!r}: a guide "
                                 "must be trained with the same noise schedule")
