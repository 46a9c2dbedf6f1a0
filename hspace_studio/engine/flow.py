"""Flow-matching sampling: x_t = (1 - sigma) x_0 + sigma eps, the network predicting the
velocity v = eps - x_0.

:class:`FlowSchedule` takes the place of the DDIM scheduler for flow models. Its sigmas are
the model's own ``FlowMatchEulerDiscreteScheduler``'s, set as the family's pipeline sets them
(the family's ``set_timesteps``: static shift, or dynamic shifting with the image's token
count), so ``timesteps`` (sigma * 1000) and the steps equal the pipeline's.

One step from sigma to the next sigma' is

- with eta 0, the scheduler's Euler update ``x + (sigma' - sigma) v`` in float32 (the
  pipeline's image for the same initial noise);
- with eta > 0, the same marginal with fresh noise: ``(1 - sigma') x_0 +
  sqrt(sigma'^2 - s^2) eps + s z`` with ``s = eta sigma' sqrt(1 - r^2)``,
  ``r = (1 - sigma) sigma' / ((1 - sigma') sigma)``: DDIM's eta on the flow's noise levels
  (the variance-preserving form of this flow has alpha-bar = (1 - sigma)^2 / ((1 - sigma)^2 +
  sigma^2)). At eta 1 it is the posterior of a stochastic (DDPM-like) sampler; edit-friendly
  inversion solves for z as it does for DDPMs and is exact.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from .schedules import OwnStepSchedule


class FlowSchedule(OwnStepSchedule):
    """The sampling schedule of a flow-matching model (see the module doc).

    ``scheduler``: the model's ``FlowMatchEulerDiscreteScheduler``; ``set_timesteps(scheduler,
    steps)``: how the family's pipeline sets it for the model's image size."""

    is_flow = True
    init_noise_sigma = 1.0

    def __init__(self, scheduler, set_timesteps: Callable[[object, int], None]):
        super().__init__(scheduler, prediction_type="flow")
        self._set = set_timesteps

    def _set_scheduler(self, steps: int) -> None:
        self._set(self.scheduler, steps)

    def predictions(self, v: torch.Tensor, t, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(predicted x_0, predicted noise) from the velocity ``v`` at timestep ``t``."""
        s, _ = self.sigma_pair(t)
        return x - s * v, x + (1 - s) * v

    def noise_std(self, t) -> float:
        """The std of the fresh noise that eta = 1 adds at the step from ``t`` (0 at the last)."""
        s, sn = (float(v) for v in self.sigma_pair(t))
        if sn <= 0 or s <= 0:
            return 0.0
        r = (1 - s) * sn / ((1 - sn) * s)
        return sn * max(0.0, 1 - r * r) ** 0.5

    def step(self, v: torch.Tensor, t, x: torch.Tensor, eta: float,
             noise: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(x of the next step, predicted x_0) from the velocity ``v`` at timestep ``t``."""
        s, sn = self.sigma_pair(t)
        x = x.to(torch.float32)
        x0 = x - s * v
        if eta <= 0:
            return x + (sn - s) * v, x0
        eps = x + (1 - s) * v
        std = float(eta) * self.noise_std(t)
        prev = (1 - sn) * x0 + torch.clamp(sn * sn - torch.tensor(std * std), min=0) ** 0.5 * eps
        if noise is not None and std > 0:
            prev = prev + std * noise
        return prev, x0

    def model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        return x

    def reverse(self, v: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """The Euler step backwards, from the next sigma to this one."""
        s, sn = self.sigma_pair(t)
        return x + (s - sn) * v

    def noise(self, x0: torch.Tensor, t, n: torch.Tensor) -> torch.Tensor:
        """x_t drawn from q(x_t | x_0) with the standard normal ``n``."""
        s, _ = self.sigma_pair(t)
        return (1 - s) * x0 + s * n


def shifted_mu(image_seq_len: int, config, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """The dynamic shift ``mu`` of an image of ``image_seq_len`` tokens: the line through
    (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift) of the scheduler's
    config, as the pipelines compute it (their defaults where the config names none)."""
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    b_shift = config.get("base_shift", base_shift)
    m_shift = config.get("max_shift", max_shift)
    m = (m_shift - b_shift) / (max_len - base_len)
    return image_seq_len * m + (b_shift - m * base_len)
