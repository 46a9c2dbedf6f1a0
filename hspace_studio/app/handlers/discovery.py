"""Discovery handlers: thin adapters over ``engine/discover`` whose ``DirectionSet`` lands in the library.

:func:`discover_pca`, :func:`discover_jacobian` and :func:`discover_supervised` call
``pca.pca_directions``, ``jacobian.jacobian_directions`` (or ``contained``), and
``supervised.build_index`` + ``supervised.supervised_directions``,
``supervised.supervised_from_images`` or ``optimized.optimized_direction``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from ...core.errors import HSpaceError
from ...core.session import SetState
from ..requests import DiscoverJacobian, DiscoverPCA, DiscoverSupervised
from ..sources import index_file
from . import handler


def _engine_module(name: str):
    """``engine.discover.<name>`` (or ``engine.<name>``), with a readable error if the
    build lacks it."""
    import importlib

    for full in (f"hspace_studio.engine.discover.{name}", f"hspace_studio.engine.{name}"):
        try:
            return importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name != full:
                raise
    raise HSpaceError(f"{name} discovery is not available in this build")


def discover_pca(state, job: DiscoverPCA, progress, cancel):
    """PCA over ``job.samples`` samples: ``engine.discover.pca.pca_directions``."""
    model = state.models.require()
    pca = _engine_module("pca")
    return pca.pca_directions(model, n_samples=int(job.samples), components=int(job.k), mode=job.mode,
                              steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                              seed_start=int(job.seed), solver=job.solver,
                              prompts=list(job.prompts) if job.prompts else None, progress=progress,
                              cancel=cancel)


def discover_jacobian(state, job: DiscoverJacobian, progress, cancel):
    """Top-k singular vectors of d eps / d h on the current image:
    ``engine.discover.jacobian.jacobian_directions``."""
    model, traj = state.models.require(), state.image.require()
    mask = None
    if job.mask is not None:
        if not np.asarray(job.mask).any():
            raise HSpaceError("the mask is empty: paint a region or untick 'use mask'")
        mask = np.asarray(job.mask, dtype=bool)
    if job.contained is not None:
        if mask is None:
            raise HSpaceError("contained directions need the painted mask: tick 'use mask'")
        con = _engine_module("contained")  # (it checks the step against the image's steps)
        return con.contained_jacobian_directions(model, traj, mask, int(job.contained), k=int(job.k),
                                                 max_iter=int(job.iterations), progress=progress,
                                                 cancel=cancel)
    jac = _engine_module("jacobian")
    return jac.jacobian_directions(model, traj, k=int(job.k), mask=mask,
                                   steps_subset=list(job.steps) if job.steps is not None else None,
                                   max_iter=int(job.iterations), progress=progress, cancel=cancel)


def discover_supervised(state, job: DiscoverSupervised, progress, cancel):
    """A supervised direction: from a (resumable, cached) classifier index of generated
    samples, or from two folders of labelled images (inverted)."""
    model = state.models.require()
    sup = _engine_module("supervised")
    annotate = _engine_module("annotate")
    if job.positive_folder or job.negative_folder:
        if not (job.positive_folder and job.negative_folder):
            raise HSpaceError("choose both a folder of positive and one of negative images")
        name = job.attribute or (f"{Path(job.positive_folder).name} vs {Path(job.negative_folder).name}")
        return sup.supervised_from_images(model, job.positive_folder, job.negative_folder,
                                          steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                                          attribute=name, progress=progress, cancel=cancel)
    if not job.attribute:
        raise HSpaceError("choose an attribute")
    clf = annotate.load_classifier(job.classifier or None, device=model.device)
    if job.optimize > 0:
        opt = _engine_module("optimized")
        keep_in = state.renderer.region() if job.keep_in else None
        if job.keep_in and keep_in is None:
            raise HSpaceError("fitting for edits kept inside the mask needs 'Keep edits inside the "
                              "mask' ticked, with a painted mask")
        if job.keep_in_part:
            if job.keep_in:
                raise HSpaceError("fit for edits kept inside the mask or in each face's own part, not both")
            from ...engine.segmenter import part_region

            try:
                keep_in = part_region(model, job.keep_in_part, int(job.keep_in_grow))
            except (ValueError, OSError) as e:
                raise HSpaceError(f"cannot keep the edits in each face's {' '.join(job.keep_in_part)}: {e}") from None
        res = opt.optimized_direction(model, clf, job.attribute, list(range(int(job.train_samples))),
                                      steps=int(job.steps), eta=float(job.eta), h_space=state.h_space,
                                      iters=int(job.optimize), window=_fit_window(opt, model, job),
                                      region=job.region, keep_in=keep_in, free=list(job.free),
                                      skip=list(job.skip), **_part_term(job), progress=progress, cancel=cancel)
        if job.preset:  # the options it recorded are the expanded ones, as the panel had them
            res.directions.params["preset"] = {"name": str(job.preset)}
        return res
    seeds = list(range(int(job.index_size)))
    path = None
    if job.index_dir:
        path = index_file(job.index_dir, model, clf, job.steps, float(job.eta), state.h_space)
        path.parent.mkdir(parents=True, exist_ok=True)
    index = sup.build_index(model, clf, int(job.index_size), path, steps=int(job.steps), eta=float(job.eta),
                            h_space=state.h_space, seeds=seeds, progress=progress, cancel=cancel)
    return sup.supervised_directions(model, index.subset(seeds), job.attribute, examples=int(job.examples),
                                     progress=progress, cancel=cancel)


def _fit_window(opt, model, job: DiscoverSupervised):
    """The timesteps a fit changes h at: every step (as ``--window 999:0`` on a 1000-step
    model), or the engine's default window."""
    if job.every_step:
        return (int(model.scheduler.config.num_train_timesteps) - 1, 0)
    return opt.default_window(model)


def _part_term(job: DiscoverSupervised) -> dict:
    """The fit's penalty from the domain's fit terms the job names, as the ``part_term``,
    ``part_weight`` and ``part_name`` arguments of the fit."""
    from ...engine.domain import TermRefused, fit_terms

    try:
        term, weight, name = fit_terms(job.attribute, dict(job.terms))
    except TermRefused as e:
        raise HSpaceError(f"{e}: untick the option that asks for it") from None
    return {"part_term": term, "part_weight": weight, "part_name": name}


def _add_discovered(state, result, default_name: str) -> List[SetState]:
    from ...engine.directions import DirectionSet

    sets = result if isinstance(result, (list, tuple)) else [result]
    out = []
    for ds in sets:
        if not isinstance(ds, DirectionSet):
            ds = getattr(ds, "directions", None) or getattr(ds, "direction_set", None)
        if ds is None:
            raise HSpaceError("the discovery step returned no direction set")
        out.append(state.library.add_set(ds, default_name))
    return out


@handler(DiscoverPCA)
def _pca(state, job, progress, cancel):
    return _add_discovered(state, discover_pca(state, job, progress, cancel),
                           f"PCA {job.mode} ({job.samples} samples"
                           + (f" x {len(job.prompts)} prompts)" if job.prompts else ")"))


@handler(DiscoverJacobian)
def _jac(state, job, progress, cancel):
    traj = state.image.require()
    what = "masked " if job.mask is not None else ""
    if job.contained is not None:
        what = f"contained, step {job.contained} "
    return _add_discovered(state, discover_jacobian(state, job, progress, cancel),
                           f"Jacobian {what}({traj.describe_origin()})")


@handler(DiscoverSupervised)
def _sup(state, job, progress, cancel):
    if job.positive_folder:
        name = f"{Path(job.positive_folder).name} vs {Path(job.negative_folder or '').name}"
    elif job.optimize > 0:
        where = (", in the mask" if job.region is not None else "") + (", for edits kept in the mask" if job.keep_in else "")
        if job.keep_in_part:
            where += f", for edits kept in each face's {'+'.join(job.keep_in_part)} (+{job.keep_in_grow} px)"
        where += "".join(f", {name}" for name, w in job.terms if w > 0)
        where += f", {'+'.join(job.skip)} left out" if job.skip else ""
        where += ", every step" if job.every_step else ""
        name = f"{job.attribute} (optimised on {job.train_samples}{where})"
    else:
        name = f"{job.attribute} ({job.examples} of {job.index_size})"
    return _add_discovered(state, discover_supervised(state, job, progress, cancel), name)
