"""The asymmetric reverse process (Asyrp, Kwon et al. 2023), as the reference code offers it.

An asymmetric edit changes only the predicted x_0 of a DDIM step: the network runs twice
at the same x_t, once with the edited h and once without, and

    x_{t-1} = sqrt(ab_prev) * x0(out_edited) + sqrt(1 - ab_prev - sigma_t^2) * eps(out_plain)
              + sigma_t * z_t

where ``x0(.)`` and ``eps(.)`` convert the network's output by its prediction type exactly
as :func:`.ddim.ddim_step` does (epsilon, v_prediction, sample; x_0 thresholded or
clipped as the scheduler says). With ``out_edited`` equal to ``out_plain`` this is
:func:`.ddim.ddim_step`, operation for operation.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .ddim import predictions, step_from


def ddim_step_asymmetric(scheduler, out_edited: torch.Tensor, out_plain: torch.Tensor, t,
                         x: torch.Tensor, eta: float,
                         noise: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x of the next step, predicted x_0): x_0 from ``out_edited``, the direction term
    from ``out_plain`` (the network's output without the asymmetric edit)."""
    x0, _ = predictions(scheduler, out_edited, t, x)
    _, eps = predictions(scheduler, out_plain, t, x)
    return step_from(scheduler, t, x0, eps, eta, noise), x0
