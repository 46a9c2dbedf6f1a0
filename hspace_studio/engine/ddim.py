"""One DDIM update of x_t: the formula of diffusers' ``DDIMScheduler.step`` (any eta, the
variance noise given), with the coefficient of the noise direction kept real.

That coefficient is ``sqrt(1 - alpha_bar_prev - sigma_t^2)``. When the step starts at an
alpha_bar of about zero (the first step of a cosine schedule, whose last training
timestep is pure noise) and eta is 1, the two terms cancel exactly in exact arithmetic
and the float32 difference can come out a hair below zero: the scheduler's ``step``
then takes the square root of a negative number and the whole image is NaN (seen with
diffusers 0.42 at 5 steps on the default model). Here it is clamped at zero; every
other operation is the scheduler's own, in its order, so a chain that never meets the
case equals ``DDIMPipeline``'s.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def previous_timestep(scheduler, t) -> int:
    """The timestep a step from ``t`` goes to (negative: to x_0). diffusers' DDIM takes one
    fixed stride, T // steps, whatever its spacing; a power-spaced scheduler
    (:mod:`.timesteps`) goes to the next timestep of its list."""
    if hasattr(scheduler, "prev_timestep"):
        return scheduler.prev_timestep(int(t))
    return int(t) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps


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


def ddim_step(scheduler, model_output: torch.Tensor, t, x: torch.Tensor, eta: float,
              noise: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x of the next step, predicted x_0) from the network's output at timestep ``t``. A
    model's own-step schedule (:class:`.flow.FlowSchedule`, :mod:`.schedules`) steps by its own
    update."""
    if getattr(scheduler, "own_step", False):
        return scheduler.step(model_output, t, x, eta, noise)
    x0, eps = predictions(scheduler, model_output, t, x)
    return step_from(scheduler, t, x0, eps, eta, noise), x0


def step_from(scheduler, t, x0: torch.Tensor, eps: torch.Tensor, eta: float,
              noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The DDIM update of x at timestep ``t`` from a predicted x_0 and noise."""
    t = int(t)
    prev_t = previous_timestep(scheduler, t)
    ab_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    std = eta * scheduler._get_variance(t, prev_t) ** 0.5
    prev = ab_prev ** 0.5 * x0 + torch.clamp(1 - ab_prev - std ** 2, min=0) ** 0.5 * eps
    if eta > 0 and noise is not None:
        prev = prev + std * noise
    return prev
