"""What the discovery commands share: number arguments, direction files in and out, the
model's record in a file's params, and the distributed runner (torchrun)."""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

from .common import _number, open_model, split_index


def _positive_float(s):
    v = _number(s)
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


def _model_params(args, model) -> dict:
    out = {"model": str(args.model), "model_description": model.describe()}
    if model.conditioning:  # a text-to-image model's prompt, negative prompt and guidance
        out["conditioning"] = model.conditioning
    return out



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
