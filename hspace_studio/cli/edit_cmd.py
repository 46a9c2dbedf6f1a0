"""hspace-studio edit --seed N | --trajectory t | --image p --direction d.safetensors[:INDEX]
--scale S [--window T0:T1] [--at-step J] [--asymmetric] [--direction ...]
[--noise-direction n.safetensors[:INDEX] --noise-scale S] [--region MASK.png] --out img.png

hspace-studio edit ... --interpolate-with SEED_OR_TRAJECTORY [--mode lerp|slerp|h] [--frames N]
--out strip.png

Each ``--direction`` starts an h-space edit; the ``--scale``, ``--window``, ``--at-step``
and ``--asymmetric`` after it belong to that edit. Each ``--noise-direction`` starts a
noise-space edit (x_T and the per-step noise); the ``--noise-scale`` after it is its
scale. ``--strip S1,S2,...`` writes the first edit at several scales side by side
instead. ``--interpolate-with`` writes a strip from the image to another one.
"""
from __future__ import annotations

import argparse
import sys

from ..app.edits import NOISE  # the "space" of a noise-space edit in the recipe
from ..core.recipe import make_recipe
from .common import (_nonneg_int, _number, add_model_args, add_source_args, load_source, open_model,
                     progress_and_cancel, save_image, split_index, window)


class _EditAction(argparse.Action):
    """Collects --direction/--scale/--window/--at-step/--asymmetric and
    --noise-direction/--noise-scale into a list of edit dicts."""

    def __call__(self, parser, ns, value, option_string=None):
        edits = getattr(ns, "edits", None) or []
        if self.dest == "direction":
            path, idx = split_index(value)
            edits.append({"direction": path, "index": idx or 0, "scale": 1.0,
                          "window": None, "at_step": None, "asymmetric": False})
        elif self.dest == "noise_direction":
            path, idx = split_index(value)
            edits.append({"space": NOISE, "direction": path, "index": idx or 0, "scale": 1.0})
        elif self.dest == "noise_scale":
            if not edits or edits[-1].get("space") != NOISE:
                parser.error(f"{option_string} must follow a --noise-direction")
            edits[-1]["scale"] = value
        else:
            if not edits:
                parser.error(f"{option_string} must follow a --direction")
            if edits[-1].get("space") == NOISE:
                parser.error(f"{option_string} must follow a --direction, not a --noise-direction "
                             "(whose scale is --noise-scale)")
            edits[-1][self.dest] = True if self.dest == "asymmetric" else value
        ns.edits = edits


def _frames(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{s}'")
    if v < 2:
        raise argparse.ArgumentTypeError(f"an interpolation needs at least 2 frames, got {v}")
    return v


def _scales(s):
    try:
        return [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{s}'")


def add_parser(sub):
    p = sub.add_parser("edit", help="apply directions to an image",
                       description="Decode an image again with directions added to h.",
                       epilog="example: hspace-studio edit --seed 7 --direction pcs.safetensors:2 "
                              "--scale 3 --window 999:400 --out edited.png")
    add_source_args(p)
    p.add_argument("--direction", action=_EditAction, dest="direction",
                   help="direction file, optionally :INDEX (default 0); repeat for several")
    p.add_argument("--scale", action=_EditAction, dest="scale", type=_number,
                   help="scale of the preceding direction (default 1)")
    p.add_argument("--window", action=_EditAction, dest="window", type=window,
                   help="edit only at timesteps between T0 and T1 (e.g. 999:500)")
    p.add_argument("--at-step", action=_EditAction, dest="at_step", type=int,
                   help="use this step's vector at every step (masked Jacobian edits)")
    p.add_argument("--asymmetric", action=_EditAction, dest="asymmetric", nargs=0,
                   help="apply the preceding direction asymmetrically (Asyrp): the edited h "
                        "changes only the predicted x_0 of each step, the noise direction term "
                        "comes from the unedited network (two network runs per edited step)")
    p.add_argument("--noise-direction", action=_EditAction, dest="noise_direction", metavar="FILE[:INDEX]",
                   help="a noise-space direction file (x_T and per-step noise), optionally :INDEX; "
                        "repeat for several")
    p.add_argument("--noise-scale", action=_EditAction, dest="noise_scale", type=_number, metavar="S",
                   help="scale of the preceding --noise-direction (default 1)")
    p.add_argument("--strip", type=_scales, help="write the first edit at these scales side by side")
    p.add_argument("--region", metavar="MASK.png",
                   help="keep the change inside this mask (white = inside): outside it the "
                        "image follows the unedited chain until the last --free-steps steps")
    p.add_argument("--region-from", dest="region_from", type=_region_spec, metavar="SEGMENTER:PART",
                   help="keep the change inside the image's own PART (several: PART,PART), found on "
                        "the unedited image by SEGMENTER (a TorchScript file with its part names in a "
                        ".json beside it, a segmenter folder, or 'default': the domain's) and grown "
                        "by --grow pixels (for directions fitted with supervised --keep-in-part)")
    p.add_argument("--region-part", dest="region_part", nargs="+", metavar="PART",
                   help="the same as --region-from default:PART[,PART]")
    p.add_argument("--grow", type=_nonneg_int, default=3, metavar="N",
                   help="with --region-from: pixels to grow the part by (default 3)")
    p.add_argument("--free-steps", type=_nonneg_int, default=1, metavar="N",
                   help="with --region or --region-part: the last N steps run without the mask, so "
                        "the network blends its border (default 1; 0 keeps the outside exactly as it was)")
    g = p.add_argument_group("interpolation")
    g.add_argument("--interpolate-with", dest="interpolate_with", metavar="SEED_OR_TRAJECTORY",
                   help="write a strip from this image to another one: a seed (sampled with this "
                        "image's steps and eta) or a saved trajectory; not with edits")
    g.add_argument("--mode", choices=("lerp", "slerp", "h"), default="slerp",
                   help="with --interpolate-with: lerp or slerp of x_T and the per-step noise, or h: "
                        "this image's h moved toward the other's at every step (default slerp)")
    g.add_argument("--frames", type=_frames, default=5, metavar="N",
                   help="with --interpolate-with: images in the strip, both ends included (default 5)")
    p.add_argument("--out", required=True)
    add_model_args(p)
    p.set_defaults(func=run, edits=None)


def build_edits(model, traj, edits):
    """EditSpecs and NoiseEdits from the parsed edit dicts (a recipe's ``edits``), each
    direction checked against the model, and the ``(path, params)`` of each direction file,
    read once."""
    from ..app.edits import h_edit, noise_edit
    from ..core.errors import ModelMismatchError
    from ..engine.directions import DirectionSet
    from ..engine.noise_edits import is_noise_set

    specs, files = [], []
    for e in edits:
        path = e["direction"]
        ds = DirectionSet.load(path)
        files.append((path, ds.params))
        if e.get("space") == NOISE:
            specs.append(noise_edit(ds, e["index"], e["scale"], traj, model.weights_fingerprint, path))
            continue
        if is_noise_set(ds):
            raise ModelMismatchError(f"{path} holds noise-space directions: pass it with "
                                     "--noise-direction, not --direction")
        specs.append(h_edit(ds, e["index"], e["scale"], traj, model.weights_fingerprint, e["window"],
                            e["at_step"], e.get("asymmetric", False), path))
    return specs, files


def run(args) -> int:
    from ..app.edits import region_entry, strip_x0
    from ..engine.images import grid, to_pil, save_png
    from ..engine.sampler import edit

    edits = args.edits or []
    if args.interpolate_with is not None:
        if (edits or args.strip or args.region is not None or getattr(args, "region_part", None)
                or getattr(args, "region_from", None)):
            raise ValueError("--interpolate-with writes a strip of its own: it takes no --direction, "
                             "--noise-direction, --strip or region")
        return _run_interpolation(args)
    if not edits:
        raise ValueError("give at least one --direction or --noise-direction (or --interpolate-with)")
    model = open_model(args)
    with progress_and_cancel("editing") as (bar, token):
        traj = load_source(args, model, bar, token)
        specs, files = build_edits(model, traj, edits)
        region = _region(args, model, traj)
        if region is None:
            for line in kept_in_hints(files):
                print(f"note: {line}", file=sys.stderr)
        entry = None
        if args.region_from:
            seg, parts = args.region_from
            entry = region_entry(region.free_steps, parts=parts, grow=args.grow, segmenter=seg)
        elif region is not None:
            entry = region_entry(region.free_steps, mask=args.region)
        recipe = make_recipe(model, args.model, traj.h_space, _source_recipe(args, traj), edits, region=entry,
                             strip=args.strip or None)
        if args.strip:
            xs = strip_x0(model, traj, specs[0], args.strip, specs[1:], region=region, progress=bar, cancel=token)
            imgs = [to_pil(model.to_pixels(x[None])[0]) for x in xs]
            save_png(args.out, grid(imgs, cols=len(imgs)), recipe)
        else:
            x0 = edit(model, traj, specs, progress=bar, cancel=token, region=region)
            save_image(model, x0, args.out, recipe)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _other_image(args, model, traj, bar, token):
    """The trajectory --interpolate-with names (a saved trajectory, or a seed sampled with the
    image's steps and eta) and its recipe entry."""
    from pathlib import Path

    from ..app.sources import open_trajectory, sample_seed

    value = str(args.interpolate_with)
    if Path(value).is_file():
        return open_trajectory(model, value, traj.h_space), {"trajectory": value}
    try:
        seed = int(value)
    except ValueError:
        raise ValueError(f"--interpolate-with: '{value}' is neither a seed nor a trajectory file") from None
    return sample_seed(model, seed, traj.steps, traj.etas.tolist(), traj.h_space, bar, token), {"seed": seed}


def _run_interpolation(args) -> int:
    from ..engine.images import grid, save_png, to_pil
    from ..engine.interpolate import interpolate

    model = open_model(args)
    with progress_and_cancel("interpolating") as (bar, token):
        traj = load_source(args, model, bar, token)
        other, which = _other_image(args, model, traj, bar, token)
        res = interpolate(model, traj, other, args.mode, args.frames, progress=bar, cancel=token)
        imgs = [to_pil(model.to_pixels(x[None].to(model.device))[0].cpu()) for x in res.x_0]
        recipe = make_recipe(model, args.model, traj.h_space, _source_recipe(args, traj),
                             interpolate={"with": which, "mode": args.mode, "frames": int(args.frames)})
        save_png(args.out, grid(imgs, cols=len(imgs)), recipe)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def kept_in_hints(files) -> list:
    """For each direction file, given as ``(path, params)``, fitted for edits kept in a region:
    how to apply it that way (one line per path)."""
    out = []
    for path, params in dict((str(p), q) for p, q in files).items():
        kept = (params or {}).get("kept_in")
        if not isinstance(kept, dict):
            continue
        free = kept.get("free_steps", 1)
        if isinstance(kept.get("parts"), list) and kept["parts"]:
            parts = ",".join(str(v) for v in kept["parts"])
            out.append(f"{path} was fitted for edits kept in each face's own {parts}: add "
                       f"--region-from {kept.get('segmenter', 'default')}:{parts} --grow {kept.get('grow', 3)} "
                       f"--free-steps {free}")
        elif kept.get("pixels"):
            out.append(f"{path} was fitted for edits kept inside a mask: add --region MASK.png "
                       f"--free-steps {free} with that mask")
    return out


def _region_spec(s: str):
    from ..engine.segmenter import split_region_spec

    try:
        return split_region_spec(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _region(args, model, traj):
    """The region of --region, --region-from or --region-part (None: none)."""
    from ..app.edits import mask_region, part_region

    if args.region_part:
        if args.region_from:
            raise ValueError("--region-part is --region-from default:PART: give one of them")
        args.region_from = ("default", list(args.region_part))
    if args.region is not None and args.region_from:
        raise ValueError("--region and --region-from exclude each other: give one")
    if args.region_from:
        seg, parts = args.region_from
        return part_region(model, traj, parts, args.grow, args.free_steps, segmenter=seg)
    if args.region is None:
        return None
    return mask_region(model, args.region, args.free_steps)


def _source_recipe(args, traj):
    o = dict(traj.origin)
    if args.trajectory:
        o["trajectory"] = str(args.trajectory)
    return o
