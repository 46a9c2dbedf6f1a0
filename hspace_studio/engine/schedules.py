"""Few-step models keep the scheduler they ship: Euler (SD-Turbo, Lightning: trailing
spacing), Euler ancestral (SDXL-Turbo) and LCM.

Like :class:`.flow.FlowSchedule`, each is an *own-step schedule*: it wraps the model's diffusers
scheduler for its timesteps and sigmas (set exactly as its pipeline sets them) and does the
update itself, with the noise of each step given rather than drawn, so a trajectory records
that noise and an edit replays exactly. The protocol (``own_step = True``): ``set_timesteps``,
``timesteps``, ``config.num_train_timesteps``, ``init_noise_sigma``, ``model_input(x, t)`` (what
the network is given), ``predictions(out, t, x)`` (x_0, eps), ``step(out, t, x, eta, noise)``,
``noise_std(t)`` (the fresh noise of eta 1), ``noise(x0, t, n)`` (x_t from x_0) and
``reverse(out, t, x)`` (a deterministic step backwards, for inversion at eta 0).

eta follows DDIM's meaning on every schedule: 0 is the deterministic sampler, 1 the
stochastic one. So an Euler model equals its pipeline at eta 0, and an Euler-ancestral or
LCM model at eta 1 (the noise of each step drawn from the seed in the pipeline's order).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Tuple

import torch

# the diffusers schedulers whose own update the engine follows (with these spacings)
EULER = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler")
OWN = EULER + ("LCMScheduler",)


def ships_own_sampler(config: dict) -> bool:
    """Whether a scheduler config names a few-step sampler the engine follows: LCM, Euler
    ancestral, or Euler with trailing spacing (Turbo, Lightning). Others (an SDXL base's
    leading-spaced Euler, PNDM ...) are sampled with DDIM from their config, as before."""
    name = config.get("_class_name")
    if name in ("LCMScheduler", "EulerAncestralDiscreteScheduler"):
        return True
    return name == "EulerDiscreteScheduler" and config.get("timestep_spacing") == "trailing"


class OwnStepSchedule:
    """What every own-step schedule shares: the model's diffusers scheduler set for a number of
    steps (``_set_scheduler``; a family may set it as its pipeline does), its timesteps and sigmas
    (where it has them) read back, and a step's index by its timestep."""

    own_step = True
    is_flow = False

    def __init__(self, scheduler, prediction_type=None):
        self.scheduler = scheduler
        self.config = SimpleNamespace(num_train_timesteps=int(scheduler.config.num_train_timesteps),
                                      prediction_type=prediction_type or scheduler.config.prediction_type)
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0)
        self._index: dict = {}
        self.num_inference_steps = 0

    def _set_scheduler(self, steps: int) -> None:
        self.scheduler.set_timesteps(steps, device="cpu")

    def set_timesteps(self, steps: int) -> None:
        self._set_scheduler(int(steps))
        self.timesteps = self.scheduler.timesteps.detach().cpu().clone()
        sigmas = getattr(self.scheduler, "sigmas", None)
        if sigmas is not None:
            self.sigmas = sigmas.detach().float().cpu().clone()
        self.num_inference_steps = int(self.timesteps.shape[0])
        self._index = {float(t): i for i, t in enumerate(self.timesteps.tolist())}
        self._after_set()

    def _after_set(self) -> None:
        pass

    def index(self, t) -> int:
        try:
            return self._index[float(t)]
        except KeyError:
            raise ValueError(f"timestep {float(t):g} is not one of this schedule's") from None

    def sigma_pair(self, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """The sigma of the step from ``t``, and of the next (schedules with sigmas)."""
        i = self.index(t)
        return self.sigmas[i], self.sigmas[i + 1]


class SigmaSchedule(OwnStepSchedule):
    """Euler and Euler ancestral in the schedulers' own variable x = x_0 + sigma eps (the network
    sees x / sqrt(sigma^2 + 1)). A step from sigma to sigma' with eta:
    ``x + (x - x_0) / sigma (sigma_down - sigma) + sigma_up z``, ``sigma_up = eta sqrt(sigma'^2
    (sigma^2 - sigma'^2) / sigma^2)``, ``sigma_down = sqrt(sigma'^2 - sigma_up^2)``."""

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.init_noise_sigma = float(scheduler.init_noise_sigma)

    def _after_set(self) -> None:
        self.init_noise_sigma = float(self.scheduler.init_noise_sigma)

    def model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        s, _ = self.sigma_pair(t)
        return x / ((s ** 2 + 1) ** 0.5)

    def predictions(self, out: torch.Tensor, t, x: torch.Tensor):
        s, _ = self.sigma_pair(t)
        if self.config.prediction_type == "v_prediction":
            x0 = out * (-s / (s ** 2 + 1) ** 0.5) + (x / (s ** 2 + 1))
        else:
            x0 = x - s * out
        return x0, (x - x0) / s

    def _up_down(self, t, eta: float):
        s, sn = self.sigma_pair(t)
        up = (sn ** 2 * (s ** 2 - sn ** 2) / s ** 2) ** 0.5
        up = up * float(eta)
        return s, sn, up, (sn ** 2 - up ** 2) ** 0.5

    def noise_std(self, t) -> float:
        return float(self._up_down(t, 1.0)[2])

    def step(self, out, t, x, eta: float, noise=None):
        x = x.to(torch.float32)
        x0, _ = self.predictions(out, t, x)
        s, sn, up, down = self._up_down(t, eta)
        d = (x - x0) / s
        if eta <= 0:
            return x + d * (sn - s), x0
        prev = x + d * (down - s)
        if noise is not None:
            prev = prev + noise * up
        return prev, x0

    def noise(self, x0, t, n):
        s, _ = self.sigma_pair(t)
        return x0 + s * n

    def reverse(self, out, t, x):
        s, sn = self.sigma_pair(t)
        _, eps = self.predictions(out, t, x)
        return x + (s - sn) * eps


class LCMSchedule(OwnStepSchedule):
    """LCM (latent consistency): the boundary-condition scalings turn the network's x_0 into
    ``denoised = c_out x_0 + c_skip x``; a step goes to ``sqrt(ab') denoised + sqrt(1 - ab' - std^2)
    eps + std z`` with ``std = eta sqrt(1 - ab')`` (at eta 1 LCM's own step), and the last step
    returns ``denoised``."""

    init_noise_sigma = 1.0

    def _after_set(self) -> None:
        ts = [int(v) for v in self.timesteps.tolist()]
        self._next = {t: (ts[i + 1] if i + 1 < len(ts) else None) for i, t in enumerate(ts)}

    def model_input(self, x, t):
        return x

    def _ab(self, t):
        return self.scheduler.alphas_cumprod[int(t)].to(torch.float32)

    def _ab_next(self, t):
        nxt = self._next[int(t)]
        if nxt is None:
            return None
        return self.scheduler.alphas_cumprod[nxt].to(torch.float32) if nxt >= 0 else \
            torch.as_tensor(self.scheduler.final_alpha_cumprod, dtype=torch.float32)

    def _raw(self, out, t, x):
        ab = self._ab(t)
        p = self.config.prediction_type
        if p == "v_prediction":
            return ab.sqrt() * x - (1 - ab).sqrt() * out
        if p == "sample":
            return out
        return (x - (1 - ab).sqrt() * out) / ab.sqrt()

    def predictions(self, out, t, x):
        """(LCM's denoised x_0, the noise that x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps gives for it)."""
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition_discrete(int(t))
        den = c_out * self._raw(out, t, x) + c_skip * x
        ab = self._ab(t)
        return den, (x - ab.sqrt() * den) / (1 - ab).sqrt()

    def noise_std(self, t) -> float:
        ab_n = self._ab_next(t)
        return 0.0 if ab_n is None else float((1 - ab_n).sqrt())

    def step(self, out, t, x, eta: float, noise=None):
        x = x.to(torch.float32)
        den, eps = self.predictions(out, t, x)
        ab_n = self._ab_next(t)
        if ab_n is None:
            return den, den
        std = float(eta) * (1 - ab_n).sqrt()
        prev = ab_n.sqrt() * den + torch.clamp(1 - ab_n - std ** 2, min=0) ** 0.5 * eps
        if noise is not None and float(eta) > 0:
            prev = prev + std * noise
        return prev, den

    def noise(self, x0, t, n):
        ab = self._ab(t)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * n

    def reverse(self, out, t, x):
        """DDIM's step backwards from x (at the next timestep's level; x_0 after the last) to t,
        with the network's raw x_0 and noise."""
        ab = self._ab(t)
        ab_n = self._ab_next(t)
        ab_n = torch.tensor(1.0) if ab_n is None else ab_n
        x0 = self._raw(out, t, x)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        x0 = (x - (1 - ab_n).sqrt() * eps) / ab_n.sqrt()
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def own_schedule(scheduler):
    """The own-step schedule for a diffusers scheduler that :func:`ships_own_sampler`."""
    name = type(scheduler).__name__
    if name == "LCMScheduler":
        return LCMSchedule(scheduler)
    if name in EULER:
        return SigmaSchedule(scheduler)
    raise ValueError(f"no own-step schedule for {name}")
