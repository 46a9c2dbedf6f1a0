"""The supervised command: a direction from examples ranked by a classifier, from labelled
images, or fitted through the sampling chain (``--optimize``, with the domain's fit terms
and presets).

    hspace-studio supervised --attribute NAME [--index-size N] [--examples K] [--index idx.json]
                      [--classifier FOLDER_OR_TORCHSCRIPT --attributes names.json]
                      [--positive DIR --negative DIR] [--against ATTR ...] --out dir.safetensors
    hspace-studio supervised --attribute NAME --optimize [ITERS] | --preset NAME [fit options] --out d.safetensors

A fit's file records the command line that makes it again (a preset's options written
out); outputs are written atomically.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (_nonneg_float, _nonneg_int, _positive_int, add_model_args, open_model, progress_and_cancel,
                     steps_eta, window)
from .discovery_io import _distributed, _model_params, _positive_float, _save


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
    from ..engine.discover.supervised import build_index, supervised_directions, supervised_from_images

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
                from ..app.sources import index_file

                index_path = index_file(Path(args.out).expanduser().resolve().parent, model, clf, steps, eta,
                                        args.h_space)
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
    from ..app.edits import mask_region

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
    return mask_region(model, args.keep_in, free)


def add_parser(sub):
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
