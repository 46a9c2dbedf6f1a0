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

from .ddim import previous_timestep


def predictions(scheduler, model_output: torch.Tensor, t, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(predicted x_0, predicted noise) of the network's output at timestep ``t``; x_0 is
    thresholded or clipped as the scheduler's config says, the noise is not."""
    t = int(t)
    cfg = scheduler.config
    ab_t = scheduler.alphas_cumprod[t]
    beta_t = 1 - ab_t
    if cfg.prediction_type == "epsilon":
        x0 = (x - beta_t ** 0.5 * model_output) / ab_t ** 0.5
        eps = model_output
    elif cfg.prediction_type == "sample":
        x0 = model_output
        eps = (x - ab_t ** 0.5 * x0) / beta_t ** 0.5
    elif cfg.prediction_type == "v_prediction":
        x0 = (ab_t ** 0.5) * x - (beta_t ** 0.5) * model_output
        eps = (ab_t ** 0.5) * model_output + (beta_t ** 0.5) * x
    else:
        raise ValueError(f"unsupported prediction type '{cfg.prediction_type}'")
    if cfg.thresholding:
        x0 = scheduler._threshold_sample(x0)
    elif cfg.clip_sample:
        x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
    return x0, eps


def ddim_step_asymmetric(scheduler, out_edited: torch.Tensor, out_plain: torch.Tensor, t,
                         x: torch.Tensor, eta: float,
                         noise: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x of the next step, predicted x_0): x_0 from ``out_edited``, the direction term
    from ``out_plain`` (the network's output without the asymmetric edit)."""
    t = int(t)
    prev_t = previous_timestep(scheduler, t)
    ab_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    x0, _ = predictions(scheduler, out_edited, t, x)
    _, eps = predictions(scheduler, out_plain, t, x)
    std = eta * scheduler._get_variance(t, prev_t) ** 0.5
    prev = ab_prev ** 0.5 * x0 + torch.clamp(1 - ab_prev - std ** 2, min=0) ** 0.5 * eps
    if eta > 0 and noise is not None:
        prev = prev + std * noise
    return prev, x0
