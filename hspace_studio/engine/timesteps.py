"""Where the sampling steps fall: the scheduler's own spacing, or power spacing.

``"scheduler"`` (the default) keeps the spacing the model's scheduler config names
(``leading``, ``trailing`` or ``linspace``), stepped exactly as diffusers' DDIM does.

``"power:P"`` places N steps at t_i = (T - 1) (1 - i / N)^P, i = 0 .. N-1, rounded to
whole timesteps (T: the training timesteps). P = 1 spaces them evenly (within a timestep
of ``trailing``); P < 1 puts more steps at high noise, where a few-step chain of a
cosine-schedule model loses the most (the default model samples better at 10 steps with
P = 0.8). Each step goes to the next timestep of the list (the last one to the
scheduler's final alpha-bar, as in diffusers' DDIM), so a DDIM update spans uneven
intervals; ``eta`` still sets the share of the posterior noise at each step.
"""
from __future__ import annotations

from functools import lru_cache

import torch

# the scheduler settings that define the noise schedule (part of a model's fingerprint; a
# guide must share them)
SCHEDULE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end",
                 "prediction_type", "trained_betas")


def power_timesteps(num_train_timesteps: int, steps: int, power: float) -> torch.Tensor:
    """``steps`` strictly decreasing whole timesteps t_i = (T-1)(1 - i/steps)^power.

    Where rounding makes two equal (many steps, P < 1 near t = T-1), each is moved down to
    one below the previous, and then up to at least its distance from the end, so the list
    always holds ``steps`` distinct timesteps in [0, T-1]."""
    T, n = int(num_train_timesteps), int(steps)
    if not 1 <= n <= T:
        raise ValueError(f"steps must be between 1 and {T}")
    ts = [int(round((T - 1) * (1 - i / n) ** power)) for i in range(n)]
    for i in range(1, n):
        ts[i] = min(ts[i], ts[i - 1] - 1)
    for i in range(n - 1, -1, -1):
        ts[i] = max(ts[i], n - 1 - i)
    return torch.tensor(ts, dtype=torch.long)


@lru_cache(maxsize=None)
def spaced_scheduler_class():
    """A ``DDIMScheduler`` whose timesteps follow a power spacing (see the module doc)."""
    from diffusers import DDIMScheduler

    class PowerSpacedDDIMScheduler(DDIMScheduler):
        timestep_power: float = 1.0

        def set_timesteps(self, num_inference_steps: int, device=None):
            n = int(num_inference_steps)
            self.num_inference_steps = n
            self.timesteps = power_timesteps(self.config.num_train_timesteps, n,
                                             self.timestep_power).to(device or "cpu")

        def prev_timestep(self, t: int) -> int:
            """The timestep the step from ``t`` goes to; -1 for x_0."""
            ts = self.timesteps.tolist()
            i = ts.index(int(t))
            return ts[i + 1] if i + 1 < len(ts) else -1

    return PowerSpacedDDIMScheduler
