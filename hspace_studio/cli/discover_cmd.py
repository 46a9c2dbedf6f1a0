"""Direction discovery commands: pca, jacobian, disentangle, name (supervised:
:mod:`.supervised_cmd`; what they share: :mod:`.discovery_io`).

    hspace-studio pca --samples N --out pcs.safetensors [--components K] [--mode per-step|global]
                      [--batch B] [--memory-mb M]
    hspace-studio jacobian --seed N | --trajectory t.safetensors | --image p [--mask mask.png]
                      [-k K] [--steps-subset 0,3,5] --out dirs.safetensors
    hspace-studio disentangle DIR[:INDEX] --against DIR2[:INDEX] [DIR3 ...] --out dir.safetensors
    hspace-studio name DIR[:INDEX] [--samples 8] [--scales -2 2] [--out named.safetensors]

Every direction file records its recipe in ``params``; outputs are written atomically, so
Ctrl-C (which stops the job at the next diffusion step) leaves no partial file.
"""
from __future__ import annotations

import argparse
import sys

from .common import (_nonneg_int, _number, _positive_int, add_model_args, add_source_args, load_source, open_model,
                     progress_and_cancel, steps_eta)
from .discovery_io import _distributed, _load_set, _model_params, _numbers, _positive_float, _save


def _angle(text: str) -> float:
    v = float(text)
    if not 0 <= v < 90:
        raise argparse.ArgumentTypeError("an angle in degrees, 0 <= angle < 90")
    return v


# ----------------------------------------------------------------------------- pca

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
                                  tol=args.tol, angle_tol=args.angle_tol, max_iter=args.max_iter,
                                  oversample=args.oversample, block=args.block,
                                  init_seed=args.init_seed, progress=bar, cancel=token)
    ds = res.directions
    ds.params.update(_model_params(args, model))
    if args.trajectory:
        ds.params["source"]["trajectory"] = str(args.trajectory)
    print(f"jacobian: {res.summary()}", file=sys.stderr)
    if not all(res.converged):
        print(f"warning: not converged to --tol {args.tol:g} or --angle-tol {args.angle_tol:g} degrees at "
              f"some steps within --max-iter {args.max_iter}; the file records the residuals", file=sys.stderr)
    for n, s in enumerate(res.step_indices):
        sv = ", ".join(f"{v:.4g}" for v in res.singular_values[n].tolist())
        print(f"step {s} (t={int(ds.timesteps[n])}): singular values {sv}; "
              f"{res.iterations[n]} iterations ({res.products[n]} products); {res.accuracy[n]}")
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
                                   "optionally with eps restricted to a mask, by a block Krylov "
                                   "method with batched JVPs/VJPs (J is never formed). "
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
                   help="stop a step when the residual ||J'Jv - s^2 v|| / s_1^2 is below this (default 1e-4)")
    p.add_argument("--angle-tol", dest="angle_tol", type=_angle, default=1.0, metavar="DEGREES",
                   help="... or when every direction is known to within this angle (directions with "
                        "nearly equal singular values: the subspace they span); 0 turns this rule off "
                        "(default 1)")
    p.add_argument("--max-iter", dest="max_iter", type=_positive_int, default=100,
                   help="cap on the blocks of products per step (default 100)")
    p.add_argument("--oversample", type=_nonneg_int, default=2,
                   help="the iteration starts from k + this many vectors (default 2)")
    p.add_argument("--block", type=_positive_int, default=1,
                   help="vectors added per iteration, their products batched (default 1: the fewest "
                        "products; more: fewer, larger batches)")
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
    p.add_argument("--min-change", dest="min_change", type=_number, default=0.02,
                   help="smallest score change that names a direction (default 0.02)")
    p.add_argument("--classifier", help="classifier folder or TorchScript file "
                                        "(default: the domain's classifier; a TorchScript "
                                        "file is code that runs: use only files you trust)")
    p.add_argument("--attributes", help="JSON list of the TorchScript classifier's output names")
    p.add_argument("--batch", type=_positive_int, default=16, help="edits per batch (default 16)")
    p.add_argument("--out", help="write the directions with the suggested labels here")
    add_model_args(p)
    p.set_defaults(func=run_name)
