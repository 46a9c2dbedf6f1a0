"""Handlers that load a model and make the current image: sample a seed, invert an image, open or save a trajectory."""
from __future__ import annotations

import time
from pathlib import Path

from ..requests import Invert, LoadModel, OpenTrajectory, Sample, SaveTrajectory
from ..sources import invert_image, open_trajectory, sample_seed
from . import handler


@handler(LoadModel)
def _load_model(state, job, progress, cancel):
    progress(0, 1, f"loading {job.source}")
    info = state.load_model(job.source, job.h_space, job.device, job.guide, job.guide_weight, job.timesteps,
                            loras=job.loras, model_config=job.model_config, progress=progress, cancel=cancel)
    progress(1, 1, "model loaded")
    return info


def _prompt_of(src: dict) -> tuple:
    """(prompt, negative prompt, guidance) a session's image source records (Nones if none)."""
    g = src.get("guidance")
    return (src.get("prompt"), src.get("negative_prompt"), float(g) if g is not None else None)


@handler(Sample)
def _sample(state, job, progress, cancel):
    model = state.models.require()
    job.apply(model)
    t0 = time.perf_counter()
    traj = sample_seed(model, job.seed, job.steps, float(job.eta), state.h_space, progress, cancel, keep_x0s=True)
    state.renderer.call_seconds = (time.perf_counter() - t0) / max(1, int(job.steps))
    return state.set_trajectory(traj, {"kind": "seed", "seed": int(job.seed), "steps": int(job.steps),
                                       "eta": float(job.eta), **model.conditioning})


@handler(Invert)
def _invert(state, job, progress, cancel):
    model = state.models.require()
    job.apply(model)
    inv, note = invert_image(model, job.path, job.steps, float(job.eta), state.h_space,
                             progress=progress, cancel=cancel)
    return state.set_trajectory(inv.trajectory, {"kind": "image", "path": str(job.path),
                                                 "steps": int(job.steps), "eta": float(job.eta),
                                                 **model.conditioning},
                                note=note, psnr=inv.psnr)


@handler(OpenTrajectory)
def _open_traj(state, job, progress, cancel):
    from ...engine.sampler import decode

    model = state.models.require()
    traj = open_trajectory(model, job.path, state.h_space, Path(job.path).name, state.model_info.h_shape)
    decode(model, traj, progress, cancel)
    return state.set_trajectory(traj, {"kind": "trajectory", "path": str(job.path),
                                       "steps": traj.steps})


@handler(SaveTrajectory)
def _save_traj(state, job, progress, cancel):
    state.image.require().save(job.path)
    return job.path
