"""hspace-studio invert --image photo.png [--eta E] [--steps S] --trajectory t.safetensors --out recon.png"""
from __future__ import annotations

import sys

from ..core.recipe import make_recipe
from .common import add_model_args, image_note, open_model, progress_and_cancel, save_image, steps_eta


def add_parser(sub):
    p = sub.add_parser("invert", help="invert a real image into an editable trajectory",
                       description="Invert an image (edit-friendly DDPM inversion for eta > 0, "
                                   "DDIM inversion for eta 0) and write its trajectory and "
                                   "reconstruction.")
    p.add_argument("--image", required=True)
    p.add_argument("--trajectory", required=True, help="where to write the trajectory")
    p.add_argument("--out", required=True, help="reconstruction PNG")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the inversion noise (eta > 0)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..app.sources import invert_image

    model = open_model(args)
    steps, eta = steps_eta(args)
    with progress_and_cancel("inverting") as (bar, token):
        inv, _ = invert_image(model, args.image, steps, eta, args.h_space, seed=args.noise_seed,
                              progress=bar, cancel=token, on_note=image_note(args.image))
    inv.trajectory.save(args.trajectory)
    recipe = make_recipe(model, args.model, args.h_space, {"image": str(args.image), "steps": steps, "eta": eta,
                                                           "inversion": inv.trajectory.origin["inversion"]})
    save_image(model, inv.trajectory.x_0, args.out, recipe)
    print(f"{inv.trajectory.origin['inversion']} inversion: max error {inv.max_error:.2e}, "
          f"PSNR {inv.psnr:.1f} dB; wrote {args.trajectory} and {args.out}", file=sys.stderr)
    return 0
