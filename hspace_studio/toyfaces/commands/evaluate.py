"""hspace-studio evaluate: edit quality on the toyfaces model, measured against ground truth."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ...cli.common import (_int_at_least, _nonneg_float, _nonneg_int, _positive_int, add_model_args, open_model,
                     progress_and_cancel, window)

SECTIONS = ("quality", "inversion", "supervised", "optimized", "pca", "jacobian")


def _scales(text: str):
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None
    if not vals or any(not (v > 0) or v != v or v == float("inf") for v in vals):
        raise argparse.ArgumentTypeError(f"'{text}': scales must be positive numbers")
    return vals


def _names_from(choices):
    """An argparse type: a comma-separated list of names, each one of ``choices()``."""
    def parse(text: str):
        allowed = list(choices())
        vals = [v.strip() for v in str(text).split(",") if v.strip()]
        if not vals or any(v not in allowed for v in vals):
            raise argparse.ArgumentTypeError(f"'{text}': choose from {','.join(allowed)}")
        return vals

    return parse


def _supervised_names():
    from ..evaluation import SUPERVISED_ATTRS

    return SUPERVISED_ATTRS


def _all_names():
    from ..generator import ATTRIBUTE_NAMES

    return ATTRIBUTE_NAMES


_attributes = _names_from(_supervised_names)
_any_attributes = _names_from(_all_names)


def _eta(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"eta {text} is not between 0 and 1")
    return v


def add_parser(sub):
    p = sub.add_parser(
        "evaluate", help="measure model and edit quality on the toyfaces domain",
        description="Print the evaluation table of the toyfaces model: sample quality (Frechet "
                    "distance in the shipped classifier's feature space), supervised and "
                    "disentangled edits, classifier-optimised edits, PCA components vs ground-truth factors, masked "
                    "Jacobian locality, inversion PSNR.",
        epilog="example: hspace-studio evaluate --samples 1000 --seeds 100 --json eval.json")
    p.add_argument("--samples", type=int, default=1000, help="images per set for the Frechet distance")
    p.add_argument("--seeds", type=int, default=100, help="held-out seeds for edit measurements")
    p.add_argument("--index-size", type=int, default=1000, help="annotated samples for supervised directions")
    p.add_argument("--examples", type=int, default=100, help="top/bottom examples per attribute")
    p.add_argument("--scale", type=_scales, default=[1.0, 2.0, 3.0], metavar="S[,S...]",
                   help="scales of supervised edits, comma-separated (default 1,2,3; 1 is the "
                        "mean-to-mean shift)")
    p.add_argument("--optimize-iters", dest="optimize_iters", type=_positive_int,
                   default=40, help="iterations of each classifier-optimised direction (default 40)")
    p.add_argument("--train-samples", dest="train_samples", type=_positive_int, default=None,
                   help="samples each classifier-optimised direction is fitted on, 16 per "
                        "iteration (default: 16 x iterations, all fresh)")
    p.add_argument("--train-seed", dest="train_seed", type=_nonneg_int, default=None, metavar="N",
                   help="first seed of the training samples of the supervised and optimised sections "
                        "(default 300000); another one fits on other samples, to see how much a fit "
                        "varies. They may not overlap the held-out seeds (from 1000, --seeds of them)")
    p.add_argument("--optimize-keep", dest="optimize_keep", type=_nonneg_float, default=30.0,
                   help="weight of the other attributes' squared score change in the classifier-"
                        "optimised fits (default 30, as supervised --keep)")
    p.add_argument("--optimize-window", dest="optimize_window", type=window, default=None,
                   metavar="T0:T1", help="timesteps of the classifier-optimised changes (default: "
                                        "the last 70%% of the schedule, as supervised --optimize)")
    p.add_argument("--optimize-region", dest="optimize_region", action="store_true",
                   help="fit each classifier-optimised change only where its part can be (the union "
                        "of the generator's part masks over the training samples: the mouth for "
                        "smiling and mouth_open, eyes and glasses for eyeglasses, hair for blond_hair)")
    p.add_argument("--optimize-keep-in", dest="optimize_keep_in", action="store_true",
                   help="fit and measure each classifier-optimised edit kept inside the image "
                        "region where its part can be (the same unions as --optimize-region), as "
                        "edit --region decodes it: outside, every step but the last follows the "
                        "unedited chain")
    p.add_argument("--optimize-keep-in-part", dest="optimize_keep_in_part", action="store_true",
                   help="fit and measure each classifier-optimised edit kept inside each sample's own "
                        "part (found by the shipped segmenter, grown by --optimize-grow pixels), as "
                        "edit --region-part decodes it; instead of --optimize-keep-in's union")
    p.add_argument("--optimize-grow", dest="optimize_grow", type=_nonneg_int, default=None, metavar="N",
                   help="with --optimize-keep-in-part: pixels each sample's own part is grown by "
                        "(default 3)")
    p.add_argument("--optimize-part", dest="optimize_part", type=_nonneg_float, default=0.0, metavar="W",
                   help="weight of the segmenter's part check in the classifier-optimised fits: a "
                        "penalty for edits that erase the mouth or draw one lens (default 0: none)")
    p.add_argument("--optimize-free", dest="optimize_free", type=_any_attributes, default=None,
                   metavar="A[,A...]", help="attributes the classifier-optimised fits may move (left out "
                                            "of the keep term, as supervised --free; a fit never lists "
                                            "its own), e.g. black_hair,red_hair,grey_hair for blond_hair")
    p.add_argument("--optimize-hair-colour", dest="optimize_hair_colour", type=_nonneg_float, default=0.0,
                   metavar="W", help="weight of the pull of the hair towards its palette colour in the "
                                     "fits of hair colours (blond_hair), as supervised --hair-colour "
                                     "(default 0: none)")
    p.add_argument("--optimize-outside-hair", dest="optimize_outside_hair", type=_nonneg_float, default=0.0,
                   metavar="W", help="weight of holding the pixels outside the unedited hair in the fits of "
                                     "hair colours, as supervised --outside-hair (default 0: none)")
    p.add_argument("--optimize-skip", dest="optimize_skip", type=_any_attributes, default=None,
                   metavar="A[,A...]", help="leave out of the classifier-optimised fits and of their "
                                            "held-out samples the samples the shipped classifier reads "
                                            "with these attributes (e.g. bald for blond_hair: a bald head "
                                            "has no hair to recolour)")
    p.add_argument("--optimize-attributes", dest="optimize_attributes", type=_attributes, default=None,
                   metavar="A[,A...]", help="the attributes of the optimized section (default: "
                                            "smiling,eyeglasses,blond_hair,mouth_open)")
    p.add_argument("--optimize-scale", dest="optimize_scale", type=_scales, default=[0.5, 1.0],
                   metavar="S[,S...]", help="scales of the classifier-optimised edits (default 0.5,1; "
                                            "1 is the fitted change)")
    p.add_argument("--eta", type=_eta, default=1.0,
                   help="noise of the samples that model quality is measured on and that supervised "
                        "directions are found from and measured on: 1 = DDPM with fixed noise "
                        "(default), 0 = DDIM")
    p.add_argument("--pca-samples", type=int, default=500)
    p.add_argument("--jacobian-seeds", type=int, default=10)
    p.add_argument("--jacobian-steps", type=_int_at_least(2, "2 to 200 steps", hi=200), default=10, metavar="N",
                   help="diffusion steps of the Jacobian locality section (default 10; directions "
                        "at steps 0.4 N and 0.5 N)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--json", help="also write the figures as JSON here")
    add_model_args(p, sampling=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from ...core.atomic import write_text
    from .. import evaluation

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {', '.join(bad)} (choose from {', '.join(SECTIONS)})")
    if "supervised" in sections:  # refused before the model loads
        evaluation.train_start(args, args.index_size)
    if "optimized" in sections:
        evaluation.train_start(args, evaluation.optimized_train_count(args))
    model = open_model(args)
    results = {"model": model.describe()}
    print(f"Model: {results['model']}\n", flush=True)
    with progress_and_cancel("evaluating") as (bar, token):
        for s in sections:
            t = time.time()
            results[s] = evaluation.SECTIONS[s](model, args, bar, token)
            results[s]["seconds"] = round(time.time() - t, 1)
            print(evaluation.render(s, results[s]), flush=True)
            print(flush=True)
    if args.json:
        write_text(args.json, json.dumps(results, indent=2, default=float))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
