"""Handlers for the direction library and the image's regions: import, export, forget, disentangle, edit region, segment."""
from __future__ import annotations

from pathlib import Path

from ...core.errors import HSpaceError
from ..requests import (Disentangle, ExportDirections, ForgetSets, ImportDirections, Segment, SetRegion,
                        Sleep)
from ..direction_library import is_noise_set as _is_noise
from . import handler


@handler(ForgetSets)
def _forget_sets(state, job, progress, cancel):
    return state.forget_sets(job.set_ids)


@handler(SetRegion)
def _set_region(state, job, progress, cancel):
    return state.renderer.set_region(job.mask, job.free_steps)


@handler(Sleep)
def _sleep(state, job, progress, cancel):
    import time

    from ...core.progress import Progress

    prog = Progress(job.steps, progress, cancel, "waiting")
    for _ in range(job.steps):
        time.sleep(job.seconds_per_step)
        prog.step()
    return job.steps


@handler(ImportDirections)
def _import(state, job, progress, cancel):
    from ...engine.directions import DirectionSet

    out = []
    info = state.model_info
    for i, p in enumerate(job.paths):
        ds = DirectionSet.load(p)
        if info is not None and _is_noise(ds):
            from ...engine.noise_edits import check_noise_set

            check_noise_set(ds, info.weights_fingerprint, state.models.require().sample_shape, Path(p).name)
        elif info is not None:
            ds.check_model(info.weights_fingerprint, info.h_space, info.h_shape, Path(p).name)
        out.append(state.library.add_set(ds, Path(p).stem, str(Path(p).resolve())))
        progress(i + 1, len(job.paths), f"imported {Path(p).name}")
    return out


@handler(ExportDirections)
def _export(state, job, progress, cancel):
    from dataclasses import replace

    ds = state.library.get_set(job.set_id)
    sub = ds.subset(list(job.indices))
    sub = replace(sub, labels=list(job.labels))
    sub.save(job.path)
    whole = list(job.indices) == list(range(len(ds)))
    return {"path": str(Path(job.path).resolve()), "whole": whole}


@handler(Disentangle)
def _disentangle(state, job, progress, cancel):
    from ...engine.directions import disentangle_set

    if not job.against:
        raise HSpaceError("choose at least one direction to disentangle against")
    tgt = state.library.get_set(job.target[0])
    against = [state.library.get_set(s) for s, _ in job.against]
    ds = disentangle_set(tgt, int(job.target[1]), against, [int(i) for _, i in job.against], job.name)
    progress(1, 1, "disentangled")
    return [state.library.add_set(ds, ds.labels[0])]


@handler(Segment)
def _segment(state, job, progress, cancel):
    import torch

    model, traj = state.models.require(), state.image.require()
    seg = state.models.segmenter(job.folder)
    with torch.no_grad():
        mask = seg.part_mask(model.to_pixels(traj.x_0[None]).clamp(-1, 1), job.parts)
    parts = seg.parts
    h, w = state.model_info.image_size
    if mask.shape != (h, w):
        from ...core.mask import resize_nearest

        mask = resize_nearest(mask, (h, w))
    progress(1, 1, "segmented " + ", ".join(job.parts))
    return {"parts": tuple(job.parts), "mask": mask, "known": list(parts)}
