"""Guiding a denoiser by a weaker version of itself (autoguidance, Karras et al. 2024).

The guided output is ``g + w (m - g)``: ``m`` the main UNet's output, ``g`` the output of a
guide UNet of the same family that is worse (here an earlier checkpoint of the same
training run), ``w`` the weight (1 = no guidance). Extrapolating away from the guide's
errors counters what both models get wrong in the same way (for the toyfaces model: too
few dark regions, beards and black hair). Guidance can be limited to an interval of
timesteps: outside it the main output is used as it is.

:class:`.denoiser.Guide` holds the guide in the main network's :class:`.denoiser.Denoiser`;
h-space hooks and the Jacobian's module stubs act on the main network only. The guide's
output does not depend on h, so an edit of h moves the guided output ``w`` times as much as
the main one, and the Jacobian is ``w`` times the main network's. This module checks that a
guide fits its model.
"""
from __future__ import annotations

from ..core.errors import ModelLoadError
from .timesteps import SCHEDULE_KEYS

# what a guide must share with the main UNet for their outputs to be combined (and the
# noise schedule: timesteps.SCHEDULE_KEYS)
SAME_CONFIG = ("sample_size", "in_channels", "out_channels")


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
