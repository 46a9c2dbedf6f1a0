"""hspace-studio sample --seed N [--eta E] [--steps S] --out img.png [--trajectory t.safetensors]"""
from __future__ import annotations

import sys

from ..core.recipe import make_recipe
from .common import add_model_args, open_model, progress_and_cancel, save_image, steps_eta


def add_parser(sub):
    p = sub.add_parser("sample", help="sample one image from a seed",
                       description="Sample an image from a seed and optionally save its trajectory.")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--trajectory", help="also save the trajectory here (.safetensors)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..app.sources import sample_seed

    model = open_model(args)
    steps, eta = steps_eta(args)
    with progress_and_cancel("sampling") as (bar, token):
        traj = sample_seed(model, args.seed, steps, eta, args.h_space, bar, token)
    recipe = make_recipe(model, args.model, args.h_space, {"seed": args.seed, "steps": steps, "eta": eta})
    if args.trajectory:
        traj.save(args.trajectory)
    save_image(model, traj.x_0, args.out, recipe)
    print(f"wrote {args.out}" + (f" and {args.trajectory}" if args.trajectory else ""), file=sys.stderr)
    return 0
