"""The sections of ``hspace-studio evaluate``: each measures one claim against ground truth.

A section is ``fn(model, args, progress, cancel) -> dict`` and ``render(name, dict)``
turns its figures into a table. ``args`` carries ``samples`` (images per FD set),
``seeds`` (held-out seeds for edit measurements) and ``h_space`` (where directions are read
and applied; the sections that find directions report the point their trajectories used).
"""
from __future__ import annotations

from . import quality as Q
from .generator import ATTRIBUTE_NAMES, render_batch


def _h_space(args) -> str:
    return getattr(args, "h_space", None) or "after"


def section_quality(model, args, progress, cancel) -> dict:
    clf, _ = Q.load_shipped_classifier()
    r = Q.model_quality(model, clf, n=args.samples, steps_list=(10, 50), eta=float(args.eta),
                        progress=progress, cancel=cancel)
    r["eta"] = float(args.eta)
    return r


def section_inversion(model, args, progress, cancel) -> dict:
    seeds = list(range(min(args.seeds, 100)))
    return Q.inversion_quality(model, seeds, steps=10, progress=progress, cancel=cancel)


def _render_quality(r) -> str:
    rows = [["generator vs generator (noise floor)", f"{r['noise_floor']:.3f}", "", ""]]
    for steps, s in r["steps"].items():
        rows.append([f"samples, {steps} steps, no clipping", f"{s['fd']:.3f}",
                     f"{s['fd'] / max(r['noise_floor'], 1e-9):.1f}x", f"{s['x0_abs_max']:.2f}"])
    out = [f"Model quality ({r['n']} images per set, eta {r.get('eta', 1.0):g}; Frechet distance in "
           "classifier features)",
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


SUPERVISED_ATTRS = ("smiling", "eyeglasses", "blond_hair", "mouth_open")
# the parts each attribute is drawn in: the region of its fit with --optimize-region
ATTRIBUTE_PARTS = {"smiling": ("mouth",), "mouth_open": ("mouth",),
                   "eyeglasses": ("glasses", "left_eye", "right_eye"), "blond_hair": ("hair",)}

CONTAINED_SCALES = (0.1, 0.25, 0.5)  # times the mean norm of h
TRAIN_SEED = 300_000  # the first training seed of the supervised and optimised sections (--train-seed)
HELD_OUT_SEED = 1_000  # their held-out seeds: HELD_OUT_SEED .. + --seeds


def train_start(args, count: int) -> int:
    """The first of ``count`` training seeds: ``--train-seed`` (default :data:`TRAIN_SEED`); a
    ValueError when they would overlap the held-out seeds the edits are measured on."""
    start = getattr(args, "train_seed", None)
    start = TRAIN_SEED if start is None else int(start)
    if start < HELD_OUT_SEED + args.seeds and HELD_OUT_SEED < start + count:
        raise ValueError(f"--train-seed {start}: training seeds {start}..{start + count - 1} overlap the "
                         f"held-out seeds {HELD_OUT_SEED}..{HELD_OUT_SEED + args.seeds - 1}")
    return start


def optimized_train_count(args) -> int:
    """The training samples of each optimised fit: ``--train-samples``, or 16 per iteration."""
    return args.train_samples or 16 * args.optimize_iters


REGION_FREE_STEPS = 1  # kept-in-mask rows: the last step runs free and blends the border
OWN_GROW = 3  # --optimize-keep-in-part: pixels each sample's own part is grown by (--optimize-grow)


def part_region(parts, labels) -> "np.ndarray":
    """Where ``parts`` can be: the union of their ground-truth masks in the generator's part
    labels ``labels`` (N, H, W) (bool, image size)."""
    import numpy as np

    from .generator import PARTS

    return np.isin(labels, [PARTS.index(p) for p in parts]).any(0)


def section_supervised(model, args, progress, cancel) -> dict:
    from ..engine.annotate import load_classifier
    from ..engine.discover.supervised import build_index, supervised_directions
    from ..engine.sampler import sample
    from .edit_metrics import attribute_shift
    from .part_checks import shipped_checker

    start = train_start(args, args.index_size)
    clf, _ = Q.load_shipped_classifier()
    eta = float(args.eta)
    index = build_index(model, load_classifier("toyfaces"), args.index_size, steps=10, eta=eta,
                        h_space=_h_space(args), seed_start=start, progress=progress, cancel=cancel)
    seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + args.seeds))
    scales = list(args.scale)
    res = {"index_size": args.index_size, "examples": args.examples, "scales": scales, "eta": eta,
           "train_seed": start, "directions": {}}
    ds = supervised_directions(model, index, list(SUPERVISED_ATTRS), examples=args.examples,
                               progress=progress, cancel=cancel).directions
    trajs = sample(model, seeds, steps=10, eta=eta, h_space=_h_space(args), batch_size=min(len(seeds), 50),
                   cancel=cancel)
    res["h_space"] = ds.h_space
    checker = shipped_checker()
    for k, a in enumerate(SUPERVISED_ATTRS):
        res["directions"][a] = attribute_shift(model, clf, ds.delta_h[k], a, scales, seeds, trajs=trajs,
                                               checker=checker, progress=progress, cancel=cancel)
    # disentangling: beards occur only with short hair, so the beard direction also moves hair style
    plain = supervised_directions(model, index, "beard", examples=args.examples, cancel=cancel)
    dis = supervised_directions(model, index, "beard", examples=args.examples,
                                against=["long_hair", "bald"], cancel=cancel)
    targets = ("long_hair", "bald")
    pr = attribute_shift(model, clf, plain.directions.delta_h[0], "beard", scales, seeds, trajs=trajs,
                         cancel=cancel)
    dr = attribute_shift(model, clf, dis.directions.delta_h[0], "beard", scales, seeds, trajs=trajs,
                         cancel=cancel)
    res["disentangle"] = {"target": "beard", "against": list(targets), "scales": {
        str(s): {"plain": {"flip_rate": pr[str(s)]["flip_rate"], **{t: pr[str(s)]["off_target"][t] for t in targets}},
                 "disentangled": {"flip_rate": dr[str(s)]["flip_rate"],
                                  **{t: dr[str(s)]["off_target"][t] for t in targets}}}
        for s in scales}}
    return res


def section_optimized(model, args, progress, cancel) -> dict:
    """Classifier-optimised directions (``supervised --optimize``) for the supervised
    section's attributes, fitted on training seeds and measured on the held-out ones."""
    from ..engine.annotate import load_classifier
    from ..engine.discover.optimized import default_window, optimized_direction
    from ..engine.sampler import Region, region_weights, sample
    from .edit_metrics import attribute_shift
    from .part_checks import shipped_checker, shipped_terms

    if getattr(args, "optimize_keep_in", False) and getattr(args, "optimize_keep_in_part", False):
        raise ValueError("--optimize-keep-in and --optimize-keep-in-part exclude each other: give one")
    grow = getattr(args, "optimize_grow", None)
    if grow is not None and not getattr(args, "optimize_keep_in_part", False):
        raise ValueError("--optimize-grow goes with --optimize-keep-in-part")
    grow = OWN_GROW if grow is None else int(grow)
    clf, _ = Q.load_shipped_classifier()
    referee, _ = Q.load_referee()
    checker = shipped_checker()
    part = float(getattr(args, "optimize_part", 0.0) or 0.0)
    fit_clf = load_classifier("toyfaces", device=model.device)
    eta = float(args.eta)
    count = optimized_train_count(args)
    first = train_start(args, count)
    train = list(range(first, first + count))
    seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + args.seeds))
    scales = list(args.optimize_scale)
    trajs = sample(model, seeds, steps=10, eta=eta, h_space=_h_space(args), batch_size=min(len(seeds), 50),
                   cancel=cancel)
    skip = list(getattr(args, "optimize_skip", None) or [])
    free = list(getattr(args, "optimize_free", None) or [])
    colour = float(getattr(args, "optimize_hair_colour", 0.0) or 0.0)
    outside = float(getattr(args, "optimize_outside_hair", 0.0) or 0.0)
    if skip:  # held out as the fits leave them out: by the shipped classifier's reading
        import torch

        _, p = Q.classify(clf, model.to_pixels(torch.stack([t.x_0 for t in trajs])))
        kept = (p[:, [ATTRIBUTE_NAMES.index(a) for a in skip]] < 0.5).all(1).tolist()
        seeds = [s for s, k in zip(seeds, kept) if k]
        trajs = [t for t, k in zip(trajs, kept) if k]
    win = getattr(args, "optimize_window", None) or default_window(model)
    attrs = list(getattr(args, "optimize_attributes", None) or SUPERVISED_ATTRS)
    regions = getattr(args, "optimize_region", False)
    kept = getattr(args, "optimize_keep_in", False)
    own = getattr(args, "optimize_keep_in_part", False)
    res = {"train_samples": len(train), "train_seed": train[0], "iterations": args.optimize_iters, "keep": args.optimize_keep,
           "window": list(win), "regions": {a: list(ATTRIBUTE_PARTS[a]) for a in attrs} if regions else None,
           "kept_in": {a: list(ATTRIBUTE_PARTS[a]) for a in attrs} if kept else None,
           "kept_in_own": {a: list(ATTRIBUTE_PARTS[a]) for a in attrs} if own else None, "own_grow": grow,
           "free_steps": REGION_FREE_STEPS, "scales": scales, "eta": eta,
           "h_space": _h_space(args), "part_weight": part, "directions": {}, "fit": {},
           "skip": skip, "free": free, "hair_colour": colour, "outside_hair": outside}
    # the part masks, drawn once
    labels = render_batch(train[:256])[1] if regions or kept else None
    for a in attrs:
        mask = part_region(ATTRIBUTE_PARTS[a], labels) if regions or kept else None
        keep_in = Region(region_weights(model, mask.astype("float32")), REGION_FREE_STEPS) if kept else None
        if own:
            keep_in = checker.own_region(ATTRIBUTE_PARTS[a], grow, tuple(model.sample_shape[1:]),
                                         REGION_FREE_STEPS)
        term, weight, name = shipped_terms(a, part, colour, outside, checker=checker, strict=False)
        fit = optimized_direction(model, fit_clf, a, train, steps=10, eta=eta, h_space=_h_space(args),
                                  iters=args.optimize_iters, keep=args.optimize_keep, window=win,
                                  region=mask if regions else None, keep_in=keep_in, free=[f for f in free if f != a],
                                  part_term=term, part_weight=weight, part_name=name, skip=skip,
                                  progress=progress, cancel=cancel)
        res["fit"][a] = {"seconds": round(fit.seconds, 1), "region_cells": fit.directions.params["region_cells"],
                         "kept_in_pixels": int(mask.sum()) if kept else None, **fit.history[-1]}
        res["batch"] = fit.directions.params["batch"]
        res["directions"][a] = attribute_shift(model, clf, fit.directions.delta_h[0], a, scales, seeds,
                                               trajs=trajs, referee=referee, region=keep_in, checker=checker,
                                               progress=progress, cancel=cancel)
    return res


def section_pca(model, args, progress, cancel) -> dict:
    from ..engine.discover.pca import pca_directions
    from .edit_metrics import factor_correlations

    pca = pca_directions(model, n_samples=args.pca_samples, components=5, mode="global", steps=10,
                         eta=1.0, h_space=_h_space(args), seed_start=400_000, progress=progress,
                         cancel=cancel)
    seeds = list(range(2_000, 2_000 + args.seeds))
    rows = factor_correlations(model, pca.directions, seeds, steps=10, k_max=5,
                               progress=progress, cancel=cancel)
    for r, ev in zip(rows, pca.explained_variance_ratio[:, 0].tolist()):
        r["explained_variance_ratio"] = ev
    return {"samples": args.pca_samples, "components": rows, "h_space": pca.directions.h_space,
            "strong": sum(abs(r["r"]) >= 0.6 for r in rows)}


def section_jacobian(model, args, progress, cancel) -> dict:
    from ..engine.discover.contained import contained_jacobian_directions
    from ..engine.discover.jacobian import jacobian_directions
    from ..engine.sampler import Region, region_weights, sample
    from .edit_metrics import mask_locality, segment
    from .nets import load_segmenter

    seg, parts = load_segmenter(Q.SEGMENTER_DIR)
    steps = int(args.jacobian_steps)
    at, at_contained = (4 * steps) // 10, steps // 2  # steps 4 and 5 of 10
    out = {"parts": {}, "n": args.jacobian_seeds, "steps": steps, "at": at, "at_contained": at_contained}
    trajs = sample(model, list(range(3_000, 3_000 + args.jacobian_seeds)), steps=steps, eta=1.0,
                   h_space=_h_space(args), cancel=cancel)
    out["h_space"] = trajs[0].h_space if trajs else _h_space(args)
    for name, plist in (("mouth", ["mouth"]), ("eyes", ["left_eye", "right_eye"])):
        shares, contained = [], {f: [] for f in CONTAINED_SCALES}
        kept = {"masked": [], "contained": []}
        for t in trajs:
            img = model.to_pixels(t.x_0[None])[0].cpu()
            mask = segment(img, seg, plist, parts)
            if mask.sum() == 0:
                continue
            hnorm = float(t.hs.flatten(1).norm(dim=1).mean())
            # the paper's masked edit: step `at`'s vector applied at every step
            ds = jacobian_directions(model, t, k=1, mask=mask, steps_subset=[at], cancel=cancel).directions
            delta = ds.for_timesteps(t.timesteps).delta_h[0]
            shares.append(mask_locality(model, t, delta, mask, 0.5 * hnorm, dilate=2, cancel=cancel))
            # contained: the most change inside per change outside, applied at its step only
            cd = contained_jacobian_directions(model, t, mask, at_contained, k=1, cancel=cancel).directions
            for f in CONTAINED_SCALES:
                contained[f].append(mask_locality(model, t, cd.delta_h[0], mask, f * hnorm, dilate=2,
                                                  cancel=cancel))
            # either, decoded with the edit kept inside the mask (the last step free)
            region = Region(region_weights(model, mask.astype("float32")), REGION_FREE_STEPS)
            kept["masked"].append(mask_locality(model, t, delta, mask, 0.5 * hnorm, dilate=2,
                                                region=region, cancel=cancel))
            kept["contained"].append(mask_locality(model, t, cd.delta_h[0], mask, 0.25 * hnorm, dilate=2,
                                                   region=region, cancel=cancel))
            if progress:
                progress(len(shares), len(trajs), f"jacobian locality ({name})")
        n = max(1, len(shares))
        out["parts"][name] = {"share_inside": float(sum(shares) / n), "images": len(shares),
                              "contained": {str(f): float(sum(v) / n) for f, v in contained.items()},
                              "kept_in_mask": {k: float(sum(v) / n) for k, v in kept.items()},
                              "free_steps": REGION_FREE_STEPS}
    return out


FLIP_HEADER = ["attribute", "scale", "flipped", "and part drawn", "mean off-target |dp|", "largest off-target"]
PART_NOTE = ("'and part drawn': flipped by the classifier and passing the segmenter's check of the "
             "part (eyeglasses: a lens at both eyes, or at neither when removing them; smiling: a "
             "mouth whose upper edge bends the aimed way; mouth_open: a mouth, open or closed as "
             "aimed; blond_hair: the hair keeps its area, or grows on a bald head)")


def _flip_rows(directions):
    """Table rows of attribute_shift results per attribute, and their sample count."""
    rows = [[a, s, f"{d['flip_rate']:.0%}",
             f"{d['checked_flip_rate']:.0%}" if "checked_flip_rate" in d else "",
             f"{d['off_target_mean']:.3f}", max(d["off_target"], key=d["off_target"].get)]
            for a, per in directions.items() for s, d in per.items()]
    return rows, next(iter(next(iter(directions.values())).values()))["n"]


def _from_seed(r) -> str:
    start = r.get("train_seed", TRAIN_SEED)
    return "" if start == TRAIN_SEED else f" from seed {start}"


def _render_supervised(r) -> str:
    rows, n = _flip_rows(r["directions"])
    out = [f"Supervised directions (index {r['index_size']}{_from_seed(r)}, {r['examples']} examples each side; "
           f"{n} held-out samples, eta {r.get('eta', 1.0):g}, h-space {r.get('h_space', 'after')}; "
           "scale 1 = the mean-to-mean shift)",
           Q.format_table(rows, FLIP_HEADER), PART_NOTE]
    d = r["disentangle"]
    rows = [[k, s, f"{v[k]['flip_rate']:.0%}"] + [f"{v[k][t]:.3f}" for t in d["against"]]
            for s, v in d["scales"].items() for k in ("plain", "disentangled")]
    out += ["", f"Disentangling {d['target']} against {', '.join(d['against'])}",
            Q.format_table(rows, ["direction", "scale", "flipped"] + [f"|dp| {t}" for t in d["against"]])]
    return "\n".join(out)


def _window_text(r) -> str:
    w = r.get("window")
    return "all" if w is None else f"{w[0]}:{w[1]}"


def _regions_text(r) -> str:
    if not r.get("regions"):
        return ""
    return "; only where the part can be: " + ", ".join(
        f"{a} {'+'.join(p)} ({r['fit'][a]['region_cells']} positions of h)" for a, p in r["regions"].items())


def _kept_text(r) -> str:
    if r.get("kept_in_own"):
        return (f"; edits kept inside each sample's own part, grown by {r.get('own_grow', OWN_GROW)} px (last "
                f"{r.get('free_steps', 1)} step free): " +
                ", ".join(f"{a} {'+'.join(p)}" for a, p in r["kept_in_own"].items()))
    if not r.get("kept_in"):
        return ""
    return (f"; edits kept inside the image region where the part can be (last {r.get('free_steps', 1)} "
            "step free): " + ", ".join(f"{a} {'+'.join(p)} ({r['fit'][a]['kept_in_pixels']} pixels)"
                                       for a, p in r["kept_in"].items()))


def _render_optimized(r) -> str:
    rows, n = _flip_rows(r["directions"])
    refs = [d.get("referee") for per in r["directions"].values() for d in per.values()]
    if all(refs):
        rows = [row + [f"{f['flip_rate']:.0%}", f"{f['target_side']:.0%}" if "target_side" in f else "",
                       f"{f['off_target_mean']:.3f}"] for row, f in zip(rows, refs)]
    fits = ", ".join(f"{a} {f['seconds']:.0f} s" for a, f in r["fit"].items())
    part = (f"; segmenter part term, weight {r['part_weight']:g}" if r.get("part_weight") else "")
    if r.get("hair_colour"):
        part += f"; hair pulled to its palette colour, weight {r['hair_colour']:g}"
    if r.get("outside_hair"):
        part += f"; pixels outside the hair held, weight {r['outside_hair']:g}"
    if r.get("free"):
        part += f"; free: {', '.join(r['free'])}"
    if r.get("skip"):
        part += f"; samples read as {' or '.join(r['skip'])} left out of fitting and measuring"
    return (f"Classifier-optimised directions ({r['iterations']} iterations of {r['batch']} of "
            f"{r['train_samples']} training samples{_from_seed(r)}, keep {r['keep']:g}, timesteps {_window_text(r)}{_regions_text(r)}{_kept_text(r)}{part}; {n} held-out samples, eta {r['eta']:g}, h-space {r['h_space']}; "
            f"scale 1 = the fitted change; fitting took {fits}"
            + ("; referee: the same edits read by an independently trained classifier, and the share it "
                             "puts on the side each edit aimed at)\n" if all(refs) else ")\n")
            + Q.format_table(rows, FLIP_HEADER + (["referee flipped", "on target side", "referee off-target"] if all(refs) else []))
            + "\n" + PART_NOTE)


def _render_pca(r) -> str:
    rows = [[c["direction"], f"{c['explained_variance_ratio']:.3f}", c["factor"], f"{c['r']:+.2f}"]
            for c in r["components"]]
    return (f"Top PCs (global, {r['samples']} samples, h-space {r.get('h_space', 'after')}) vs "
            "ground-truth factors of inverted "
            f"held-out generator images: {r['strong']} of {len(rows)} with |r| >= 0.6\n"
            + Q.format_table(rows, ["PC", "explained var", "best factor", "r"]))


def _render_jacobian(r) -> str:
    rows = []
    at, atc, steps = r.get("at", 4), r.get("at_contained", 5), r.get("steps", 10)
    for p, v in r["parts"].items():
        rows.append([p, f"masked (paper): step {at}'s vector at every step, 0.5 |h|", f"{v['share_inside']:.0%}",
                     v["images"]])
        for f, share in v.get("contained", {}).items():
            rows.append([p, f"contained: at step {atc} only, {float(f):g} |h|", f"{share:.0%}", v["images"]])
        kept = v.get("kept_in_mask", {})
        free = v.get("free_steps", 1)
        if "masked" in kept:
            rows.append([p, f"masked (paper), 0.5 |h|, kept in the mask (last {free} step free)",
                         f"{kept['masked']:.0%}", v["images"]])
        if "contained" in kept:
            rows.append([p, f"contained, 0.25 |h|, kept in the mask (last {free} step free)",
                         f"{kept['contained']:.0%}", v["images"]])
    return (f"Masked Jacobian edits ({steps} steps, h-space {r.get('h_space', 'after')}): share of "
            "the pixel change (L1) inside the mask dilated by 2 px\n"
            + Q.format_table(rows, ["mask", "directions, applied", "inside", "images"]))


SECTIONS = {
    "quality": section_quality,
    "inversion": section_inversion,
    "supervised": section_supervised,
    "optimized": section_optimized,
    "pca": section_pca,
    "jacobian": section_jacobian,
}
RENDER = {
    "quality": _render_quality,
    "inversion": _render_inversion,
    "supervised": _render_supervised,
    "optimized": _render_optimized,
    "pca": _render_pca,
    "jacobian": _render_jacobian,
}


def render(name: str, result: dict) -> str:
    return RENDER[name](result)
