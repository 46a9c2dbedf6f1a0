"""hspace-studio demo --out FOLDER: the paper's figure types on the default model."""
from __future__ import annotations

import sys
import time

from ...cli.common import add_model_args, open_model, progress_and_cancel


def add_parser(sub):
    p = sub.add_parser("demo", help="write the paper's figure types as captioned PNGs",
                       description="PCA strips, Jacobian edits inside eye/mouth/brow masks, "
                                   "supervised and disentangled edits, and an inverted-and-edited "
                                   "held-out image, on the default toyfaces model.",
                       epilog="example: hspace-studio demo --out demo/")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny sample counts (a smoke test)")
    add_model_args(p, sampling=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import Demo, DemoSettings

    model = open_model(args)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    t0 = time.time()
    with progress_and_cancel("demo") as (bar, token):
        Demo(model, args.out, settings, progress=bar, cancel=token,
             log=lambda m: print(m, file=sys.stderr), h_space=args.h_space).run()
    print(f"demo written to {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0
