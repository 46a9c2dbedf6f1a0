"""The sections of ``hspace-studio evaluate``: each measures one claim against ground truth.

A section is ``fn(model, args, progress, cancel) -> dict`` and ``render(name, dict)``
turns its figures into a table. ``args`` carries ``samples`` (images per FD set) and
``seeds`` (held-out seeds for edit measurements).
"""
from __future__ import annotations

from . import quality as Q
from .generator import ATTRIBUTE_NAMES


def section_quality(model, args, progress, cancel) -> dict:
    clf, _ = Q.load_shipped_classifier()
    return Q.model_quality(model, clf, n=args.samples, steps_list=(10, 50), progress=progress,
                           cancel=cancel)


def section_inversion(model, args, progress, cancel) -> dict:
    seeds = list(range(min(args.seeds, 100)))
    return Q.inversion_quality(model, seeds, steps=10, progress=progress, cancel=cancel)


def _render_quality(r) -> str:
    rows = [["generator vs generator (noise floor)", f"{r['noise_floor']:.3f}", "", ""]]
    for steps, s in r["steps"].items():
        rows.append([f"samples, {steps} steps, no clipping", f"{s['fd']:.3f}",
                     f"{s['fd'] / max(r['noise_floor'], 1e-9):.1f}x", f"{s['x0_abs_max']:.2f}"])
    out = [f"Model quality ({r['n']} images per set; Frechet distance in classifier features)",
           Q.format_table(rows, ["set", "FD", "vs floor", "max |x0|"]), "",
           "Attribute frequencies (classifier > 0.5)"]
    steps = list(r["steps"])
    rows = [[a, f"{r['generator_freq'][a]:.3f}"] + [f"{r['steps'][s]['freq'][a]:.3f}" for s in steps]
            for a in ATTRIBUTE_NAMES]
    out.append(Q.format_table(rows, ["attribute", "generator"] + [f"{s} steps" for s in steps]))
    return "\n".join(out)


def _render_inversion(r) -> str:
    rows = [[k, "exact (float error only)" if v >= 100 else f"{v:.1f} dB"]
            for k, v in r.items() if k != "seconds"]
    return "Inversion of held-out generator images (10 steps)\n" + Q.format_table(rows, ["method", "PSNR"])


SECTIONS = {
    "quality": section_quality,
    "inversion": section_inversion,
}
RENDER = {
    "quality": _render_quality,
    "inversion": _render_inversion,
}


def render(name: str, result: dict) -> str:
    return RENDER[name](result)
