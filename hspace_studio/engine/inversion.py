"""Invert a real image into an editable trajectory.

- ``method="ddpm"`` (edit-friendly DDPM inversion, eta > 0): each x_t is drawn
  independently from q(x_t | x_0); the variance noise z_t of each step is then solved
  for so that the scheduler's own step maps x_t exactly to x_{t-1}. Replaying the
  trajectory reconstructs the image up to float error.
- ``method="ddim"`` (eta = 0): the deterministic DDIM chain run backwards, with the
  noise estimate at each step taken at the less noisy point. Reconstruction is close
  but not exact; its error is reported.

Flow-matching models invert the same two ways: x_t drawn from q(x_t | x_0) =
(1 - sigma) x_0 + sigma n and the noise of each stochastic step solved for (exact), or
their Euler steps run backwards (eta 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..core.progress import CancelToken, Progress, ProgressFn
from .ddim import ddim_step, previous_timestep
from .model import DiffusionModel
from .etas import EtaLike, etas_tensor
from .sampler import decode, noise_levels, prepare_scheduler, timesteps_for
from .trajectory import Trajectory


@dataclass
class Inversion:
    trajectory: Trajectory
    max_error: float  # max |reconstruction - input| in the diffusion space
    psnr: float  # of the reconstruction in pixel space, in dB (inf if exact)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else float(10 * torch.log10(torch.tensor(1.0 / mse)))


def _model_out(model, x, t, h_space, record):
    with torch.no_grad(), model.denoiser.hook(h_space, record=record):
        return model.denoiser(model.network_input(x, t).to(model.dtype), t).float()


def invert_ddpm(model: DiffusionModel, x0: torch.Tensor, steps: int, eta: EtaLike = 1.0,
                h_space: Optional[str] = None, seed: int = 0, prog: Optional[Progress] = None) -> Trajectory:
    h_space = model.point(h_space)
    etas = etas_tensor(eta, steps)
    if (etas <= 0).any():
        raise ValueError("edit-friendly inversion needs eta > 0 at every step (use ddim for eta 0)")
    ts = timesteps_for(model, steps)
    dev = model.device
    x0 = x0.to(dev, torch.float32)[None]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    prepare_scheduler(model, ts)
    noisy = []
    for t in ts:
        n = torch.randn(x0.shape, generator=g).to(dev)
        if model.own_step:
            noisy.append(model.scheduler.noise(x0, t, n))
        else:
            ab = model.scheduler.alphas_cumprod[int(t)].to(dev)
            noisy.append(ab.sqrt() * x0 + (1 - ab).sqrt() * n)
    x = noisy[0]
    levels = noise_levels(model, ts)
    xs, hs, zs, x0s = [], [], [], []
    for i, t in enumerate(ts):
        rec: list = []
        xs.append(x)
        out = _model_out(model, x, t, h_space, rec)
        hs.append(rec[-1].float())
        eta_i = float(etas[i])
        mu, x0_pred = ddim_step(model.scheduler, out, t, x, eta_i, torch.zeros_like(x))
        x0s.append(x0_pred.float().cpu())
        target = noisy[i + 1] if i + 1 < len(ts) else x0
        if levels[i] > 0:
            std = eta_i * levels[i]
            z = (target - mu) / std
            x, _ = ddim_step(model.scheduler, out, t, x, eta_i, z)
        else:  # a step without noise: z is the residual, added as it is
            z = target - mu
            x = mu + z
        zs.append(z)
        if prog is not None:
            prog.step()
    return Trajectory(x_T=noisy[0][0].cpu(), zs=torch.cat(zs).cpu(), etas=etas, timesteps=ts,
                      hs=torch.cat(hs).cpu(), x_0=x[0].cpu(), fingerprint=model.fingerprint,
                      h_space=h_space, origin={}, xs=torch.cat(xs).cpu(), x0s=torch.cat(x0s))


def invert_ddim(model: DiffusionModel, x0: torch.Tensor, steps: int, h_space: Optional[str] = None,
                prog: Optional[Progress] = None) -> Trajectory:
    h_space = model.point(h_space)
    ts = timesteps_for(model, steps)
    prepare_scheduler(model, ts)
    sched = model.scheduler
    dev = model.device
    x = x0.to(dev, torch.float32)[None]
    for i in reversed(range(steps)):
        t = ts[i]
        out = _model_out(model, x, t, h_space, None)  # taken at the less noisy point
        if model.own_step:  # the schedule's own step backwards
            x = sched.reverse(out, t, x)
        else:
            prev = previous_timestep(sched, t)
            ab_prev = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
            ab_prev, ab_t = ab_prev.to(dev), sched.alphas_cumprod[int(t)].to(dev)
            eps = model.predict_eps(out, x, t)
            x0_hat = (x - (1 - ab_prev).sqrt() * eps) / ab_prev.sqrt()
            x = ab_t.sqrt() * x0_hat + (1 - ab_t).sqrt() * eps
        if prog is not None:
            prog.step()
    traj = Trajectory(x_T=x[0].cpu(), zs=torch.zeros((steps, *x.shape[1:])), etas=torch.zeros(steps),
                      timesteps=ts, hs=torch.empty(0), x_0=x0.cpu(), fingerprint=model.fingerprint,
                      h_space=h_space, origin={})
    return traj


def invert(model: DiffusionModel, image: torch.Tensor, steps: int = 10, eta: EtaLike = 1.0,
           method: Optional[str] = None, h_space: Optional[str] = None, seed: int = 0,
           progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
           origin: Optional[dict] = None) -> Inversion:
    """Invert ``image`` ((3, H, W) in [-1, 1] at the model's image size).

    ``method`` defaults to ``"ddpm"`` when eta > 0 and ``"ddim"`` when eta is 0.
    """
    h_space = model.point(h_space)
    if method is None:
        method = "ddim" if isinstance(eta, (int, float)) and float(eta) == 0 else "ddpm"
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"unknown inversion method '{method}' (ddpm or ddim)")
    x0 = model.from_pixels(image[None])[0]
    total = steps if method == "ddpm" else 2 * steps
    prog = Progress(total, progress, cancel, f"inverting ({method})")
    if method == "ddpm":
        traj = invert_ddpm(model, x0, steps, eta, h_space, seed, prog)
    else:
        traj = invert_ddim(model, x0, steps, h_space, prog)
        decode(model, traj, lambda d, t, m: prog.step(), cancel)
    traj.origin = dict(origin or {}, **model.conditioning, inversion=method, steps=steps,
                       eta=0.0 if method == "ddim" else (eta if isinstance(eta, (int, float))
                                                          else etas_tensor(eta, steps).tolist()))
    err = (traj.x_0 - x0.cpu()).abs().max().item()
    recon = model.to_pixels(traj.x_0[None])[0].cpu()
    return Inversion(trajectory=traj, max_error=err, psnr=_psnr(recon, image.cpu()))
