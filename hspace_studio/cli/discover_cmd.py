"""Direction discovery commands: pca, jacobian, supervised, disentangle, name.

    hspace-studio pca --samples N --out pcs.safetensors [--components K] [--mode per-step|global]
                      [--batch B] [--memory-mb M]
    hspace-studio jacobian --seed N | --trajectory t.safetensors | --image p [--mask mask.png]
                      [-k K] [--steps-subset 0,3,5] --out dirs.safetensors
    hspace-studio supervised --attribute NAME [--index-size N] [--examples K] [--index idx.json]
                      [--classifier FOLDER_OR_TORCHSCRIPT --attributes names.json]
                      [--positive DIR --negative DIR] [--against ATTR ...] --out dir.safetensors
    hspace-studio supervised --attribute NAME --optimize [ITERS] | --preset NAME [fit options] --out d.safetensors
    hspace-studio disentangle DIR[:INDEX] --against DIR2[:INDEX] [DIR3 ...] --out dir.safetensors
    hspace-studio name DIR[:INDEX] [--samples 8] [--scales -2 2] [--out named.safetensors]

Every direction file records its recipe in ``params`` (a fit also the command line that
makes it again, a preset's options written out); outputs are written atomically, so Ctrl-C
(which stops the job at the next diffusion step) leaves no partial file.

Over 500 lines: the five commands share the distributed runner, the set loading and the
output helpers here; the supervised command's fit options (terms, regions, windows) are
about half of the module and the part to move to a module of its own next.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

from .common import (_nonneg_float, _nonneg_int, _positive_int, add_model_args, add_source_args, load_source,
                     open_model, progress_and_cancel, split_index, steps_eta, window)


# ------------------------------------------------------------------------- helpers

def _float(s):
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{s}'")


def _positive_float(s):
    v = _float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{s}'")
    return v


def _numbers(s):
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers, got '{s}'")


def _load_set(value: str):
    from ..engine.directions import DirectionSet

    path, idx = split_index(value)
    ds = DirectionSet.load(path)
    if idx is not None and not 0 <= idx < len(ds):
        raise IndexError(f"{path} has {len(ds)} direction(s); index {idx} is out of range")
    return path, ds, idx


def _save(ds, out) -> None:
    ds.save(out)
    print(f"wrote {out} ({len(ds)} direction(s), {ds.steps} step(s))", file=sys.stderr)


def _term_arg(s: str):
    """'NAME=W' -> (name, weight)."""
    name, sep, w = s.partition("=")
    try:
        weight = float(w)
    except ValueError:
        weight = -1.0
    if not sep or not name.strip() or not weight >= 0 or weight == float("inf"):
        raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT (a weight of 0 or more), got '{s}'")
    return name.strip(), weight


def _fit_window(s: str):
    """'all' (every step) or 'T0:T1'."""
    return "all" if s.strip().lower() == "all" else window(s)


def _model_params(args, model) -> dict:
    out = {"model": str(args.model), "model_description": model.describe()}
    if model.conditioning:  # a text-to-image model's prompt, negative prompt and guidance
        out["conditioning"] = model.conditioning
    return out


# ----------------------------------------------------------------------------- pca

@contextmanager
def _distributed(args):
    """Under torchrun (WORLD_SIZE > 1): the rank's device, the model, the process group
    joined for the body and left after it (also on errors)."""
    from ..engine import distributed as dist

    args.device = dist.device_for(args.device)
    model = open_model(args)
    dist.init(model.device)
    try:
        yield model, dist
    finally:
        dist.shutdown()


def run_pca(args) -> int:
    with _distributed(args) as (model, dist):
        return _run_pca(args, model, dist)


def _run_pca(args, model, dist) -> int:
    from ..engine.discover.pca import pca_directions

    steps, eta = steps_eta(args)
    with progress_and_cancel("PCA") as (bar, token):
        res = pca_directions(model, args.samples, components=args.components, mode=args.mode,
                             steps=steps, eta=eta, h_space=args.h_space, batch=args.batch,
                             memory_mb=args.memory_mb, solver=args.solver, seed_start=args.seed_start,
                             prompts=args.prompts, progress=bar, cancel=token)
    if not dist.is_main():
        return 0  # rank 0 reports and writes
    ds = res.directions
    ds.params.update(_model_params(args, model))
    print(res.plan.describe() + "".join(f"; {n}" for n in res.notes), file=sys.stderr)
    for k in range(len(ds)):
        v = ds.values[k]
        print(f"{ds.labels[k]}: explained variance ratio {sum(v) / len(v):.4f}"
              + (" (mean over steps)" if res.plan.mode == "per-step" else ""))
    _save(ds, args.out)
    return 0


# ------------------------------------------------------------------------ jacobian

def run_jacobian(args) -> int:
    from ..engine.discover.jacobian import jacobian_directions

    if args.contained is not None:
        return run_contained(args)
    model = open_model(args)
    with progress_and_cancel("Jacobian") as (bar, token):
        traj = load_source(args, model, bar, token)
        res = jacobian_directions(model, traj, k=args.k, mask=args.mask, steps_subset=args.steps_subset,
                                  tol=args.tol, max_iter=args.max_iter, oversample=args.oversample,
                                  init_seed=args.init_seed, progress=bar, cancel=token)
    ds = res.directions
    ds.params.update(_model_params(args, model))
    if args.trajectory:
        ds.params["source"]["trajectory"] = str(args.trajectory)
    print(f"jacobian: {res.summary()}", file=sys.stderr)
    if not all(res.converged):
        print(f"warning: not converged to --tol {args.tol:g} at some steps within --max-iter "
              f"{args.max_iter}; the file records the residuals", file=sys.stderr)
    for n, s in enumerate(res.step_indices):
        sv = ", ".join(f"{v:.4g}" for v in res.singular_values[n].tolist())
        print(f"step {s} (t={int(ds.timesteps[n])}): singular values {sv}; "
              f"{res.iterations[n]} iterations, residual {res.residuals[n]:.1e}")
    _save(ds, args.out)
    return 0


def run_contained(args) -> int:
    from ..engine.discover.contained import contained_jacobian_directions

    if not args.mask:
        raise ValueError("--contained needs --mask")
    if args.steps_subset:
        raise ValueError("--contained takes its one step as its value, not --steps-subset")
    model = open_model(args)
    with progress_and_cancel("Jacobian (contained)") as (bar, token):
        traj = load_source(args, model, bar, token)
        step = args.contained if args.contained >= 0 else traj.steps + args.contained
        res = contained_jacobian_directions(model, traj, args.mask, step, k=args.k, rho=args.rho,
                                            tol=args.tol, max_iter=args.max_iter,
                                            oversample=args.oversample, init_seed=args.init_seed,
                                            progress=bar, cancel=token)
    ds = res.directions
    ds.params.update(_model_params(args, model))
    if args.trajectory:
        ds.params["source"]["trajectory"] = str(args.trajectory)
    print(f"jacobian (contained): {res.summary()}", file=sys.stderr)
    if not res.converged:
        print(f"warning: not converged to --tol {args.tol:g} within --max-iter {args.max_iter}; "
              f"the file records the residual", file=sys.stderr)
    for j, (r, i, o) in enumerate(zip(res.ratios, res.inside, res.outside)):
        print(f"J {j}: ratio {r:.4g}; first-order change of x_0 inside the mask {i:.4g}, outside {o:.4g}")
    _save(ds, args.out)
    return 0


# ---------------------------------------------------------------------- supervised

def run_supervised(args) -> int:
    if args.list_terms or args.list_presets:
        from ..engine.domain import active_domain

        domain = active_domain()
        if args.list_terms:
            for name, text in sorted(domain.terms.items()):
                print(f"{name}: {text}")
            if not domain.terms:
                print(f"the {domain.name} domain has no fit terms", file=sys.stderr)
        if args.list_presets:
            for preset in domain.presets:
                print(f"{preset.name}: {preset.description}")
            if not domain.presets:
                print(f"the {domain.name} domain has no presets", file=sys.stderr)
        return 0
    if not args.out:
        from . import ArgumentError

        raise ArgumentError("hspace-studio supervised: the following arguments are required: --out")
    _resolve_fit_options(args)
    if (args.positive is None) != (args.negative is None):
        raise ValueError("--positive and --negative go together")
    from_images = args.positive is not None
    if from_images and args.against:
        raise ValueError("--against needs a classifier index, not --positive/--negative folders")
    if not from_images and not args.attribute:
        raise ValueError("--attribute is required (or give --positive and --negative folders)")
    if args.optimize is not None:
        if from_images or args.against:
            raise ValueError("--optimize fits a direction on sampled images: it does not take "
                             "--positive/--negative or --against")
        return _run_optimized(args)
    given = [flag for flag, on in (("--train-samples", args.train_samples is not None),
                                   ("--window", args.window is not None), ("--shared", args.shared),
                                   ("--per-channel", args.per_channel), ("--still", args.still > 0),
                                   ("--region", args.region is not None), ("--free", bool(args.free)),
                                   ("--keep-in", args.keep_in is not None),
                                   ("--keep-in-part", bool(args.keep_in_part)),
                                   ("--free-steps", args.free_steps is not None),
                                   ("--term", any(w > 0 for w in _term_weights(args).values())),
                                   ("--segmenter", args.segmenter is not None), ("--skip", bool(args.skip)))
             if on]
    if given:
        raise ValueError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --optimize")
    if not from_images and 2 * args.examples > args.index_size:
        raise ValueError(f"{args.examples} positive and {args.examples} negative examples need "
                         f"--index-size {2 * args.examples} or more (got {args.index_size})")
    with _distributed(args) as (model, dist):
        return _run_supervised(args, model, dist)


def _run_supervised(args, model, dist) -> int:
    from ..engine.annotate import load_classifier
    from ..engine.discover.supervised import (build_index, index_recipe, recipe_key,
                                              supervised_directions, supervised_from_images)

    from_images = args.positive is not None
    steps, eta = steps_eta(args)
    with progress_and_cancel("supervised") as (bar, token):
        bar = bar if dist.is_main() else None  # rank 0 shows progress
        if from_images:
            clf = None
            if args.classifier is not None:
                clf = load_classifier(args.classifier, args.attributes, device=model.device)
            res = supervised_from_images(model, args.positive, args.negative, steps=steps, eta=eta,
                                         h_space=args.h_space, attribute=args.attribute or "attribute",
                                         classifier=clf, progress=bar, cancel=token)
        else:
            clf = load_classifier(args.classifier, args.attributes, device=model.device)
            names = [args.attribute] + list(args.against or [])
            for a in names:
                clf.index_of(a)
            index_path = args.index
            if index_path is None:
                key = recipe_key(index_recipe(model, clf, steps, eta, args.h_space))
                index_path = Path(args.out).expanduser().resolve().parent / f"hspace-index-{key}.json"
            seeds = list(range(args.seed_start, args.seed_start + args.index_size))
            index = build_index(model, clf, args.index_size, index_path, steps=steps, eta=eta,
                                h_space=args.h_space, batch=args.batch, seeds=seeds, progress=bar,
                                cancel=token)
            if dist.is_main():
                print(f"index {index_path}: {len(index)} annotated sample(s)", file=sys.stderr)
            res = supervised_directions(model, index.subset(seeds), args.attribute,
                                        examples=args.examples, against=args.against or (),
                                        batch=args.batch, progress=bar, cancel=token)
    if not dist.is_main():
        return 0  # rank 0 reports and writes
    ds = res.directions
    ds.params.update(_model_params(args, model))
    for e in res.examples[:1]:
        print(f"{e.attribute}: score gap {e.gap:+.3f} between the top {len(e.positive)} and "
              f"bottom {len(e.negative)} samples", file=sys.stderr)
    _save(ds, args.out)
    return 0


def _run_optimized(args) -> int:
    import os

    from ..core.mask import read_mask_png
    from ..engine.annotate import load_classifier
    from ..engine.discover.optimized import default_window, optimized_direction

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("supervised --optimize runs in one process (start it without torchrun)")
    model = open_model(args)
    steps, eta = steps_eta(args)
    clf = load_classifier(args.classifier, args.attributes, device=model.device)
    clf.index_of(args.attribute)
    region = read_mask_png(args.region) if args.region else None
    keep_in = _keep_in(args, model)
    part = _part_term(args)
    n = args.train_samples or args.optimize * args.batch  # default: a fresh batch every iteration
    seeds = list(range(args.seed_start, args.seed_start + n))
    window = args.window or default_window(model)
    if window == "all":
        window = (int(model.scheduler.config.num_train_timesteps) - 1, 0)
    with progress_and_cancel("supervised --optimize") as (bar, token):
        res = optimized_direction(model, clf, args.attribute, seeds, steps=steps, eta=eta,
                                  h_space=args.h_space, iters=args.optimize, lr=args.lr,
                                  keep=args.keep, batch=args.batch, still=args.still, shared=args.shared,
                                  per_channel=args.per_channel, region=region, free=args.free,
                                  keep_in=keep_in, window=window,
                                  part_term=part[0], part_weight=part[1], part_name=part[2], skip=args.skip,
                                  progress=bar, cancel=token)
    ds = res.directions
    ds.params.update(_model_params(args, model))
    ds.params["command"] = _fit_command(args)  # replays without the preset
    if args.preset is not None:
        ds.params["preset"] = {"name": args.preset, "options": args.preset_options}
    last = res.history[-1]
    print(f"{ds.params['attribute']} (optimised, {args.optimize} iterations, {res.seconds:.0f} s): on the "
          f"last batch of {args.batch} training samples it flipped {last['flipped']:.0%}, mean "
          f"off-target score change {last['off_target']:.3f}; score change at scale 1 "
          f"{ds.params['score_change']:+.3f}", file=sys.stderr)
    _save(ds, args.out)
    if args.keep_in is not None:
        print(f"fitted for edits kept inside {args.keep_in}: apply it with "
              f"edit --region {args.keep_in} --free-steps {keep_in.free_steps}", file=sys.stderr)
    elif args.keep_in_part:
        print(f"fitted for edits kept inside each face's {' '.join(args.keep_in_part)}: apply it with "
              f"edit --region-from {args.segmenter or 'default'}:{','.join(args.keep_in_part)} --grow {args.grow} "
              f"--free-steps {ds.params['kept_in']['free_steps']}", file=sys.stderr)
    return 0


# the toy faces' term flags, kept as aliases of --term NAME=W so that recipes still replay
TERM_ALIASES = {"part_check": "part-check", "hair_colour": "hair-colour", "outside_hair": "outside-hair"}

# the fit options a preset may set, and their values when neither it nor the user does
# (their parser defaults are None, so that an option given, even at this value, overrides
# the preset)
FIT_DEFAULTS = {"optimize": None, "train_samples": None, "keep": 30.0, "lr": 0.25, "window": None,
                "shared": False, "per_channel": False, "still": 0.0, "free": [], "skip": [],
                "keep_in_part": None, "grow": 3, "free_steps": None}


def _resolve_fit_options(args) -> None:
    """Fill the fit options: the user's, else the preset's (``--preset``, expanded for the
    attribute), else :data:`FIT_DEFAULTS`. The preset's terms go to ``args.preset_terms``
    (an explicit ``--term`` or alias flag overrides each); its expanded values to
    ``args.preset_options``."""
    args.preset_terms, args.preset_options = {}, None
    if args.preset is not None:
        from ..engine.domain import active_domain

        if not args.attribute:
            raise ValueError(f"--preset {args.preset} needs --attribute")
        opts = active_domain().preset(args.preset).expand(args.attribute)
        args.preset_options = opts
        args.preset_terms = dict(opts.get("terms", {}))
        for key, value in opts.items():
            if key != "terms" and getattr(args, key, None) is None:
                setattr(args, key, value)
        if args.optimize is None:
            raise ValueError(f"the preset {args.preset} sets no iterations: add --optimize ITERS")
    for key, value in FIT_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)


def _explicit_terms(args) -> dict:
    """{term name: weight} given on the command line: ``--term NAME=W`` and the alias flags
    (an alias and --term naming the same term: the larger weight)."""
    out = dict(args.term or [])
    for dest, name in TERM_ALIASES.items():
        w = getattr(args, dest, None)
        if w is not None:
            out[name] = max(w, out.get(name, w))
    return out


def _term_weights(args) -> dict:
    """{term name: weight}: the preset's, each overridden by the command line's."""
    return {**(getattr(args, "preset_terms", None) or {}), **_explicit_terms(args)}


def _part_term(args):
    """The fit's penalty from the domain's fit terms (``--term NAME=W``): one as it is or
    several weighted and summed (weight 1, the name giving each weight); (None, 0, None)
    without any."""
    from ..engine.domain import TermRefused, fit_terms

    try:
        return fit_terms(args.attribute, _term_weights(args))
    except TermRefused as e:
        alias = next((d for d, n in TERM_ALIASES.items() if n == e.term and (getattr(args, d, None) or 0) > 0), None)
        if alias:
            flag = f"--{e.term}"
        elif e.term in _explicit_terms(args) or not args.preset:
            flag = f"--term {e.term}"
        else:
            flag = f"--preset {args.preset}"
        raise ValueError(f"{flag}: {e}") from None


# options a fit's recorded command leaves out: outputs, listings, what the preset expands to
# (written out instead), the terms (written as --term), the machine it ran on
_NOT_RECORDED = {"out", "index", "index_size", "examples", "against", "positive", "negative", "list_terms",
                 "list_presets", "preset", "term", "device", "help", *TERM_ALIASES}
_SUPERVISED_ACTIONS: list = []  # the supervised parser's options (add_parser)


def _fit_command(args) -> list:
    """The ``hspace-studio`` arguments (without --out) that make this fit again: every
    option as it took effect, a preset's written out, so the file replays without it."""
    from ..domains import DOMAINS
    from ..engine.domain import active_domain

    name = active_domain().name
    out = (["--domain", name] if name in DOMAINS else []) + ["supervised"]
    for action in _SUPERVISED_ACTIONS:
        if not action.option_strings or action.dest in _NOT_RECORDED:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or (isinstance(value, (list, tuple)) and not value
                                                and action.dest != "eta"):
            continue
        flag = max(action.option_strings, key=len)
        if value is True:
            out.append(flag)
        elif action.dest in ("window", "guide_interval") and isinstance(value, (list, tuple)):
            out.append(f"{flag}={int(value[0])}:{int(value[1])}")
        elif action.dest == "eta" and isinstance(value, (list, tuple)):
            out.append(f"{flag}={','.join(repr(float(v)) for v in value)}")
        elif action.nargs in ("+", "*"):
            out += [flag, *[str(v) for v in value]]
        else:
            out.append(f"{flag}={value}")
    for term, weight in sorted(_term_weights(args).items()):
        if weight > 0:
            out.append(f"--term={term}={weight!r}")
    return out


def _keep_in(args, model):
    """The image region of ``--keep-in``, or the per-sample one of ``--keep-in-part`` (with
    ``--free-steps``), or None."""
    from ..engine.sampler import Region, region_weights

    free = 1 if args.free_steps is None else args.free_steps
    if args.keep_in is not None and args.keep_in_part:
        raise ValueError("--keep-in and --keep-in-part exclude each other: give one")
    if args.keep_in_part:
        from ..engine.segmenter import part_region

        return part_region(model, args.keep_in_part, args.grow, free, segmenter=args.segmenter)
    if args.keep_in is None:
        if args.free_steps is not None:
            raise ValueError("--free-steps goes with --keep-in or --keep-in-part")
        return None
    return Region(region_weights(model, args.keep_in), free)


# --------------------------------------------------------------------- disentangle

def run_disentangle(args) -> int:
    import torch

    from ..engine.directions import DirectionSet, disentangle

    tpath, target, tidx = _load_set(args.direction)
    conds, names, recs = [], [], []
    for item in args.against:
        path, s, idx = _load_set(item)
        s.check_model(target.fingerprint, target.h_space, tuple(target.delta_h.shape[2:]), path)
        s = s.for_timesteps(target.timesteps)
        for j in ([idx] if idx is not None else range(len(s))):
            conds.append(s.delta_h[j])
            names.append(s.labels[j])
            recs.append({"file": str(path), "index": j, "label": s.labels[j], "method": s.method})
    if getattr(args, "model", None):
        model = open_model(args)
        target.check_model(model.weights_fingerprint, target.h_space, None, tpath)
    ks = [tidx] if tidx is not None else list(range(len(target)))
    deltas, labels = [], []
    for k in ks:
        d = disentangle(target.delta_h[k], conds, per_step=args.per_step)
        before = float(target.delta_h[k].norm())
        after = float(d.norm())
        if before == 0 or after <= 1e-6 * before:
            raise ValueError(f"direction {k} of {tpath} lies in the span of the --against directions "
                             f"(nothing is left after projecting them out)")
        print(f"{target.labels[k]}: kept {after / before:.1%} of its norm", file=sys.stderr)
        deltas.append(d)
        labels.append(args.label if args.label and len(ks) == 1
                      else f"{target.labels[k]} ⟂ {', '.join(names)}")
    values = [target.values[k] for k in ks] if target.values is not None else None
    params = {"method": "disentangled", "per_step": bool(args.per_step),
              "target": {"file": str(tpath), "indices": ks, "labels": [target.labels[k] for k in ks],
                         "method": target.method, "params": target.params},
              "against": recs}
    out = DirectionSet(delta_h=torch.stack(deltas), timesteps=target.timesteps.clone(),
                       fingerprint=target.fingerprint, h_space=target.h_space, method="disentangled",
                       labels=labels, values=values, params=params)
    _save(out, args.out)
    return 0


# ---------------------------------------------------------------------------- name

def run_name(args) -> int:
    from ..engine.annotate import load_classifier
    from ..engine.discover.naming import apply_names, name_directions

    path, ds, idx = _load_set(args.direction)
    model = open_model(args)
    clf = load_classifier(args.classifier, args.attributes, device=model.device)
    scales = None
    if args.scales:
        scales = [v for group in args.scales for v in group]
    with progress_and_cancel("naming") as (bar, token):
        res = name_directions(model, ds, clf, samples=args.samples, scales=scales,
                              seed_start=args.seed_start, steps=args.steps, eta=args.eta,
                              indices=[idx] if idx is not None else None, at_step=args.at_step,
                              top=args.top, min_change=args.min_change, batch=args.batch,
                              progress=bar, cancel=token)
    for n in res.names:
        print(n.line())
    if args.out:
        _save(apply_names(ds, res), args.out)
    return 0


# -------------------------------------------------------------------------- parsers

def add_parser(sub):
    # pca
    p = sub.add_parser("pca", help="principal components of h over generated samples",
                       description="Principal components of h over N generated samples, per timestep "
                                   "or over all steps at once, streamed in batches within a memory "
                                   "budget. Directions are at one standard deviation; values are "
                                   "explained-variance ratios.",
                       epilog="example: hspace-studio pca --samples 1000 --components 10 --out pcs.safetensors")
    p.add_argument("--samples", type=_positive_int, required=True, help="number of generated samples N")
    p.add_argument("--out", required=True, help="direction file to write (.safetensors)")
    p.add_argument("--components", "-k", type=_positive_int, default=8, help="components K (default 8)")
    p.add_argument("--mode", choices=("per-step", "global"), default="per-step",
                   help="one basis per timestep (default) or one over all steps flattened")
    p.add_argument("--batch", type=_positive_int, default=16, help="samples per batch (default 16)")
    p.add_argument("--memory-mb", dest="memory_mb", type=_positive_float, default=1024,
                   help="memory budget of the accumulators and one batch (default 1024)")
    p.add_argument("--solver", choices=("auto", "covariance", "incremental"), default="auto",
                   help="exact covariance or IncrementalPCA; auto picks by the budget")
    p.add_argument("--seed-start", dest="seed_start", type=_nonneg_int, default=0,
                   help="samples use seeds SEED_START .. SEED_START+N-1 (default 0)")
    p.add_argument("--prompts", nargs="+", default=None, metavar="PROMPT",
                   help="text-to-image models: sample every seed under each of these prompts "
                        "(default: --prompt)")
    add_model_args(p)
    p.set_defaults(func=run_pca)

    # jacobian
    p = sub.add_parser("jacobian", help="image-specific directions from the Jacobian of eps",
                       description="Top-k right singular vectors of d eps_t / d h_t for one image, "
                                   "optionally with eps restricted to a mask, by block subspace "
                                   "iteration with batched JVPs/VJPs (J is never formed). "
                                   "Directions are unit vectors per step; values are singular values.",
                       epilog="example: hspace-studio jacobian --seed 7 --mask mouth.png -k 3 "
                              "--out mouth.safetensors   (apply with edit --at-step J); "
                              "hspace-studio jacobian --seed 7 --mask eyes.png --contained 6 -k 1 --out eyes.safetensors")
    add_source_args(p)
    p.add_argument("--mask", help="PNG mask in image pixels (white = where eps counts)")
    p.add_argument("-k", type=_positive_int, default=3, help="directions per step (default 3)")
    p.add_argument("--steps-subset", dest="steps_subset", nargs="+", metavar="STEPS",
                   help="step indices, e.g. 0,3,5 or 2-5 (default: every step)")
    p.add_argument("--tol", type=_positive_float, default=1e-4,
                   help="residual tolerance ||J'Jv - s^2 v|| / s_1^2 (default 1e-4)")
    p.add_argument("--max-iter", dest="max_iter", type=_positive_int, default=100,
                   help="iteration cap per step (default 100)")
    p.add_argument("--oversample", type=_nonneg_int, default=2,
                   help="extra vectors in the block (default 2)")
    p.add_argument("--init-seed", dest="init_seed", type=int, default=0,
                   help="seed of the random starting block (default 0)")
    p.add_argument("--contained", type=int, metavar="STEP", default=None,
                   help="instead of the masked Jacobian of eps: directions at this one step (negative "
                        "counts from the end) that maximise the change of the final image inside "
                        "--mask per change outside it; applied at that step only. Needs --mask")
    p.add_argument("--rho", type=_positive_float, default=0.1,
                   help="with --contained: the least overall change that counts, as a fraction of a "
                        "random direction's (default 0.1)")
    p.add_argument("--out", required=True, help="direction file to write (.safetensors)")
    add_model_args(p)
    p.set_defaults(func=run_jacobian)

    # supervised
    p = sub.add_parser("supervised", help="a direction from examples ranked by a classifier, or "
                                          "from labelled images",
                       description="Mean h of the K top-scored samples minus that of the K bottom-scored "
                                   "ones (from a resumable annotation index of N samples), or of two "
                                   "folders of labelled images (inverted). Values are the score gap.",
                       epilog="example: hspace-studio supervised --attribute smiling --index-size 1000 "
                              "--examples 100 --against eyeglasses --out smiling.safetensors")
    p.add_argument("--attribute", help="attribute name (the classifier's)")
    p.add_argument("--index-size", dest="index_size", type=_positive_int, default=1000,
                   help="samples N in the index (default 1000)")
    p.add_argument("--examples", type=_positive_int, default=100,
                   help="positive and negative examples K each (default 100)")
    p.add_argument("--index", help="index file (JSON; resumed if it exists; default: "
                                   "hspace-index-<recipe>.json next to --out)")
    p.add_argument("--classifier", help="classifier folder or TorchScript file "
                                        "(default: the domain's classifier; a TorchScript "
                                        "file is code that runs: use only files you trust)")
    p.add_argument("--attributes", help="JSON list of the TorchScript classifier's output names")
    p.add_argument("--positive", help="folder of images with the attribute (inverted)")
    p.add_argument("--negative", help="folder of images without the attribute (inverted)")
    p.add_argument("--against", nargs="+", metavar="ATTR",
                   help="project these attributes' directions (same index) out")
    p.add_argument("--optimize", type=_positive_int, nargs="?", const=40, metavar="ITERS",
                   help="instead of a mean difference, fit one direction through the sampling "
                        "chain that flips the attribute of --train-samples samples and keeps the "
                        "classifier's other attributes (ITERS Adam iterations, default 40)")
    p.add_argument("--preset", metavar="NAME",
                   help="a recipe of --optimize from the domain (--list-presets names them): the fit "
                        "options it sets, for its attributes; options given beside it override its values")
    p.add_argument("--list-presets", dest="list_presets", action="store_true",
                   help="print the domain's presets and stop")
    p.add_argument("--train-samples", dest="train_samples", type=_positive_int, default=None,
                   help="with --optimize: samples to fit on, seeds SEED_START..; each iteration "
                        "takes the next --batch of them (default ITERS x BATCH: all fresh)")
    p.add_argument("--keep", type=_nonneg_float, default=None,
                   help="with --optimize: weight of the other attributes' squared score change "
                        "(default 30)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="with --optimize: Adam's step, in units of the RMS of h (default 0.25)")
    p.add_argument("--window", type=_fit_window, default=None, metavar="T0:T1",
                   help="with --optimize: the timesteps the change is fitted and applied at "
                        "(default: the last 70%% of the schedule, 699:0 on a 1000-step model; "
                        "'all' = every step, 999:0 on a 1000-step model)")
    p.add_argument("--shared", action="store_true", default=None,
                   help="with --optimize: one change of h for every step in the window")
    p.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                   help="with --optimize: one number per channel of h, the same at every position")
    p.add_argument("--still", type=_nonneg_float, default=None,
                   help="with --optimize: weight of the mean squared pixel change (default 0)")
    p.add_argument("--free", nargs="+", metavar="ATTR", default=None,
                   help="with --optimize: attributes the change may move (not kept), e.g. the "
                        "other hair colours when fitting blond hair")
    p.add_argument("--region", metavar="MASK.png",
                   help="with --optimize: change h only at the positions whose part of the image "
                        "meets this mask (white = inside; e.g. where glasses can be)")
    p.add_argument("--keep-in", dest="keep_in", metavar="MASK.png",
                   help="with --optimize: fit the change for edits kept inside this mask (white = "
                        "inside), as edit --region MASK.png decodes them; use it with that region")
    p.add_argument("--keep-in-part", dest="keep_in_part", nargs="+", metavar="PART",
                   help="with --optimize: fit for edits kept inside each sample's own PART (e.g. "
                        "mouth), found by --segmenter and grown by --grow pixels; apply it with "
                        "edit --region-from SEGMENTER:PART")
    p.add_argument("--segmenter", default=None, metavar="SPEC",
                   help="with --keep-in-part: the segmenter (a TorchScript file with its part names "
                        "in a .json beside it, or a folder; default: the domain's)")
    p.add_argument("--term", action="append", type=_term_arg, metavar="NAME=W",
                   help="with --optimize: weight of one of the domain's fit terms (repeat for "
                        "several; --list-terms names them)")
    p.add_argument("--list-terms", dest="list_terms", action="store_true",
                   help="print the domain's fit terms and stop")
    p.add_argument("--grow", type=_nonneg_int, default=None, metavar="N",
                   help="with --keep-in-part: pixels to grow the part by (default 3)")
    p.add_argument("--free-steps", dest="free_steps", type=_nonneg_int, default=None, metavar="N",
                   help="with --keep-in or --keep-in-part: the last N steps run without the mask "
                        "(default 1)")
    p.add_argument("--part-check", dest="part_check", type=_nonneg_float, default=None, metavar="W",
                   help="the same as --term part-check=W")
    p.add_argument("--hair-colour", dest="hair_colour", type=_nonneg_float, default=None, metavar="W",
                   help="the same as --term hair-colour=W")
    p.add_argument("--outside-hair", dest="outside_hair", type=_nonneg_float, default=None, metavar="W",
                   help="the same as --term outside-hair=W")
    p.add_argument("--skip", nargs="+", metavar="ATTR", default=None,
                   help="with --optimize: leave out the training samples the classifier reads with "
                        "ATTR (e.g. --skip bald for a hair colour: a bald head has no hair to recolour)")
    p.add_argument("--batch", type=_positive_int, default=16, help="samples per batch (default 16)")
    p.add_argument("--seed-start", dest="seed_start", type=_nonneg_int, default=0,
                   help="the index (or --optimize's samples) uses seeds SEED_START .. "
                        "SEED_START+N-1 (default 0)")
    p.add_argument("--out", help="direction file to write (.safetensors; required but with --list-terms "
                                 "or --list-presets)")
    add_model_args(p)
    p.set_defaults(func=run_supervised)
    _SUPERVISED_ACTIONS[:] = p._actions

    # disentangle
    p = sub.add_parser("disentangle", help="project directions out of a direction",
                       description="Project a direction onto the orthogonal complement of others "
                                   "(a file without :INDEX means all of its directions).",
                       epilog="example: hspace-studio disentangle smiling.safetensors "
                              "--against glasses.safetensors pcs.safetensors:0 --out smile2.safetensors")
    p.add_argument("direction", metavar="DIR", help="direction file, optionally :INDEX")
    p.add_argument("--against", nargs="+", required=True, metavar="DIR",
                   help="direction files (optionally :INDEX) to project out")
    p.add_argument("--per-step", dest="per_step", action="store_true",
                   help="project at every step separately (default: the whole vector over all steps)")
    p.add_argument("--label", help="label of the result")
    p.add_argument("--out", required=True, help="direction file to write (.safetensors)")
    p.add_argument("--model", default=None, help="also check the files against this model")
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run_disentangle)

    # name
    p = sub.add_parser("name", help="suggest names for directions with an attribute classifier",
                       description="Apply each direction at a few scales to a handful of samples and "
                                   "report which classifier attributes move most.",
                       epilog="example: hspace-studio name pcs.safetensors --samples 8 --scales -2 2 "
                              "--out pcs-named.safetensors")
    p.add_argument("direction", metavar="DIR", help="direction file, optionally :INDEX")
    p.add_argument("--samples", type=_positive_int, default=8, help="sampled images (default 8)")
    p.add_argument("--scales", type=_numbers, nargs="+",
                   help="scales to apply (default: +-2 for PCA, +-1 for supervised, 30%% of |h| "
                        "for unit vectors)")
    p.add_argument("--seed-start", dest="seed_start", type=_nonneg_int, default=0)
    p.add_argument("--at-step", dest="at_step", type=_nonneg_int,
                   help="use this step's vector at every step (masked Jacobian directions)")
    p.add_argument("--top", type=_positive_int, default=3, help="attributes reported (default 3)")
    p.add_argument("--min-change", dest="min_change", type=_float, default=0.02,
                   help="smallest score change that names a direction (default 0.02)")
    p.add_argument("--classifier", help="classifier folder or TorchScript file "
                                        "(default: the domain's classifier; a TorchScript "
                                        "file is code that runs: use only files you trust)")
    p.add_argument("--attributes", help="JSON list of the TorchScript classifier's output names")
    p.add_argument("--batch", type=_positive_int, default=16, help="edits per batch (default 16)")
    p.add_argument("--out", help="write the directions with the suggested labels here")
    add_model_args(p)
    p.set_defaults(func=run_name)
