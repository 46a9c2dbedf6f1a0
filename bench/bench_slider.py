"""Slider latency on a real-size model: first feedback (first-order preview) and the exact
image, against today's decode and against a plain diffusers loop, side by side.

    nice .venv/bin/python -m bench.bench_slider                # both models, ~3-5 min on 2 CPU cores
    nice .venv/bin/python -m bench.bench_slider --no-big       # the default model only
    nice .venv/bin/python -m bench.bench_slider --variants     # + decode variants (inference_mode, bf16 ...)
    nice .venv/bin/python -m bench.bench_slider --errors       # preview error vs scale (PCA, Jacobian, supervised)

Models: the default model (``load_model("default")``, 64 px) and a CelebA-HQ-size UNet
(``google/ddpm-ema-celebahq-256``'s UNet2DModel config, random weights, saved with a
DDPMScheduler config to a temporary folder and loaded by path; ``--big-dir`` reuses one).
One trajectory (seed 0, eta 1) each; a random direction (0.1 of h's norm) edits every step.

Per model, in one run, interleaved:

- **engine decode**: ``engine.sampler.edit`` as the GUI calls it today (``torch.no_grad``);
- **diffusers loop**: the floor any tool pays for an exact edit: ``unet`` + ``DDIMScheduler.step``
  over every step, the edit added by a forward hook on ``unet.mid_block``, no caching;
- **exact (proposed)**: the same ``edit`` under ``torch.inference_mode``;
- **edit from a trajectory file**: the CLI's ``edit --trajectory FILE`` (the file read and
  checked, no cached chain; the app decodes a file once when it opens it, after which a
  move costs the same as on a sampled image);
- **prepare**: ``LinearPreview.prepare`` (one-time per image, directions and linearisation
  point; its result includes the exact image at that point) for ``fd1``, ``fd``, ``jvp``;
- **first feedback**: ``LinearPreview.pixels(scale)``, the uint8 image the canvas shows
  (median and p95 over ``--moves`` random slider values); the same for ``NodePreview``
  (exact images at the strip's five scales, cross-faded; its one-time cost is one strip
  decode, measured on the big model only with ``--big-nodes``).

Figures are printed as ratios against the baselines measured in the same run. Torch runs
on ``--threads`` threads (default 1: on a 2-core machine shared with other work, 2 threads
were 5x slower than 1 in this project's measurements).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import med, p95

CELEBA_UNET = dict(sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
                   block_out_channels=(128, 128, 256, 256, 512, 512),
                   down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D",
                                     "AttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D",
                                   "UpBlock2D"))


def celeba_size_model(folder: Path) -> Path:
    """A random-weight UNet of google/ddpm-ema-celebahq-256's size, saved as a diffusers folder."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    folder = Path(folder)
    if (folder / "unet" / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    UNet2DModel(**CELEBA_UNET).save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(folder / "scheduler")
    return folder


def random_direction(traj, seed=0, size=0.1):
    import torch

    g = torch.Generator().manual_seed(seed)
    d = torch.randn(traj.hs.shape, generator=g)
    return d * (traj.hs.flatten(1).norm(dim=1).mean() / d.flatten(1).norm(dim=1).mean() * size)


def plain_loop(model, traj, delta, scale):
    """x_0 by diffusers' UNet and DDIMScheduler.step alone, h edited by a mid-block hook."""
    import torch
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(model.scheduler.config)
    sched.set_timesteps(traj.steps)
    step = [0]

    def hook(mod, args, out):
        return out + scale * delta[step[0]]

    handle = model.net.mid_block.register_forward_hook(hook)
    try:
        x = traj.x_T[None].clone()
        with torch.no_grad():
            for i, t in enumerate(sched.timesteps):
                step[0] = i
                eps = model.denoiser(x, t)
                x = sched.step(eps, t, x, eta=float(traj.etas[i]), variance_noise=traj.zs[i][None]).prev_sample
    finally:
        handle.remove()
    return x[0]


def psnr8(a, b) -> float:
    """PSNR of two images in [-1, 1] after the GUI's 8-bit rounding."""
    import torch

    qa = ((a.clamp(-1, 1) + 1) * 127.5).round()
    qb = ((b.clamp(-1, 1) + 1) * 127.5).round()
    mse = float(((qa - qb) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def maxerr8(a, b) -> int:
    qa = ((a.clamp(-1, 1) + 1) * 127.5).round()
    qb = ((b.clamp(-1, 1) + 1) * 127.5).round()
    return int((qa - qb).abs().max())


def ms(x):
    return f"{1000 * x:9.1f} ms"


def bench_model(name, model, steps, repeats, moves, methods, variants, nodes=True, compiled=False):
    import torch

    from hspace_studio.engine.preview import LinearPreview, NodePreview
    from hspace_studio.engine.sampler import EditSpec, edit, sample

    t0 = time.perf_counter()
    traj = sample(model, [0], steps=steps, eta=1.0)[0]
    sample_s = time.perf_counter() - t0
    delta = random_direction(traj)
    print(f"\n== {name}: {model.describe()}\n   {steps} steps, edit on every step, sampling took "
          f"{sample_s:.1f} s, {repeats} repeat(s)", flush=True)

    def engine(scale):
        return edit(model, traj, [EditSpec(delta, scale)])

    def proposed(scale):
        with torch.inference_mode():
            return edit(model, traj, [EditSpec(delta, scale)])

    traj_file = Path(tempfile.mkdtemp(prefix="hspace-bench-")) / "seed0.traj"
    traj.save(traj_file)

    def from_file(scale):  # the CLI's `edit --trajectory FILE`: the file read, no cached chain
        from hspace_studio.app.sources import open_trajectory

        loaded = open_trajectory(model, traj_file, traj.h_space)
        return edit(model, loaded, [EditSpec(delta, scale)])

    timings = {"engine decode (today)": [], "diffusers loop + hook": [], "exact, inference_mode": [],
               "edit from a trajectory file": []}
    extra = {}
    if variants:
        timings.update({"exact, bf16 autocast": [], "exact, channels_last": []})
    check = None
    for r in range(repeats):
        s = 0.3 + 0.4 * r / max(1, repeats)
        t = time.perf_counter()
        ref = engine(s)
        timings["engine decode (today)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        x = plain_loop(model, traj, delta, s)
        timings["diffusers loop + hook"].append(time.perf_counter() - t)
        check = float((x - ref).abs().max())
        t = time.perf_counter()
        x = proposed(s)
        timings["exact, inference_mode"].append(time.perf_counter() - t)
        extra.setdefault("inference_mode", []).append(psnr8(model.to_pixels(x[None])[0], model.to_pixels(ref[None])[0]))
        t = time.perf_counter()
        x = from_file(s)
        timings["edit from a trajectory file"].append(time.perf_counter() - t)
        extra.setdefault("trajectory file", []).append(psnr8(model.to_pixels(x[None])[0],
                                                             model.to_pixels(ref[None])[0]))
        if variants:
            t = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                x = edit(model, traj, [EditSpec(delta, s)])
            timings["exact, bf16 autocast"].append(time.perf_counter() - t)
            extra.setdefault("bf16 autocast", []).append(psnr8(model.to_pixels(x[None])[0],
                                                               model.to_pixels(ref[None])[0]))
            model.net.to(memory_format=torch.channels_last)
            try:
                t = time.perf_counter()
                x = proposed(s)
                timings["exact, channels_last"].append(time.perf_counter() - t)
            finally:
                model.net.to(memory_format=torch.contiguous_format)
            extra.setdefault("channels_last", []).append(psnr8(model.to_pixels(x[None])[0],
                                                               model.to_pixels(ref[None])[0]))
    if compiled:  # engine.compiled, one setting at a time (each built once: a one-time cost)
        from hspace_studio.engine.compiled import accelerate, restore

        refs = {}
        for r in range(repeats):
            s = 0.3 + 0.4 * r / max(1, repeats)
            refs[s] = model.to_pixels(engine(s)[None])[0]
        for label, comp, bf16 in (("compiled", True, False), ("compiled + bf16", True, True),
                                  ("bf16 autocast (gated)", False, True)):
            accelerate(model, compile=comp, bf16=bf16)
            try:
                t = time.perf_counter()
                engine(0.5)
                build = time.perf_counter() - t
                key = f"exact, {label}"
                timings[key] = []
                for s, want in refs.items():
                    t = time.perf_counter()
                    x = engine(s)
                    timings[key].append(time.perf_counter() - t)
                    extra.setdefault(label, []).append(psnr8(model.to_pixels(x[None])[0], want))
                print(f"   {label}: first call (building) {build:.1f} s", flush=True)
            finally:
                restore(model)
    base = med(timings["engine decode (today)"])
    floor = med(timings["diffusers loop + hook"])
    print(f"   diffusers loop vs engine image: max |diff| {check:.1e} (same chain)")
    print(f"   {'':34s} {'median':>12s} {'p95':>12s}   vs engine   vs diffusers loop")
    for k, v in timings.items():
        note = ""
        for key, ps in extra.items():
            if key in k:
                note = f"   PSNR vs float32/no_grad {min(ps):.1f} dB"
        print(f"   {k:34s} {ms(med(v))} {ms(p95(v))}   {med(v) / base:8.3f}   {med(v) / floor:8.3f}{note}")

    preps = {}
    for method in methods:
        t = time.perf_counter()
        lp = LinearPreview.prepare(model, traj, [EditSpec(delta, 0.5)], method=method)
        preps[method] = (time.perf_counter() - t, lp)
    lp = preps[methods[0]][1]
    exact05 = model.to_pixels(engine(0.5)[None])[0]
    g = torch.Generator().manual_seed(1)
    vals = (torch.rand(moves, generator=g) * 2 - 0.5).tolist()
    lp.pixels([0.6])  # warm
    first = []
    for v in vals:
        t = time.perf_counter()
        lp.pixels([v])
        first.append(time.perf_counter() - t)
    for method, (sec, p) in preps.items():
        agree = float((p.dimage - lp.dimage).norm() / lp.dimage.norm()) if p is not lp else 0.0
        exact_ok = maxerr8(p.image([0.5]), exact05)
        print(f"   prepare ({method:4s}, one-time)            {ms(sec)} {'':12s}   {sec / base:8.3f}   "
              f"{sec / floor:8.3f}   image(s0) vs exact: max {exact_ok} levels; d/ds vs {methods[0]}: "
              f"{100 * agree:.2f}%")
    print(f"   first feedback (preview pixels)    {ms(med(first))} {ms(p95(first))}   {med(first) / base:8.5f}"
          f"   {med(first) / floor:8.5f}   target <= 50 ms: {'OK' if med(first) <= 0.05 else 'MISSED'}")
    if nodes:  # the strip's five scales (gui STRIP_SCALES) as exact nodes
        t = time.perf_counter()
        npv = NodePreview.prepare(model, traj, EditSpec(delta, 0.0), [-1.0, -0.5, 0.0, 0.5, 1.0])
        sec = time.perf_counter() - t
        node_first = []
        for v in vals:
            t = time.perf_counter()
            npv.pixels(v)
            node_first.append(time.perf_counter() - t)
        print(f"   prepare (5 exact nodes, one strip) {ms(sec)} {'':12s}   {sec / base:8.3f}   {sec / floor:8.3f}")
        print(f"   first feedback (node preview)      {ms(med(node_first))} {ms(p95(node_first))}   "
              f"{med(node_first) / base:8.5f}   {med(node_first) / floor:8.5f}   target <= 50 ms: "
              f"{'OK' if med(node_first) <= 0.05 else 'MISSED'}")
    exact_med = med(timings["exact, inference_mode"])
    print(f"   slider move -> first feedback {1000 * med(first):.2f} ms (p95 {1000 * p95(first):.2f}); "
          f"-> exact image {exact_med:.2f} s (p95 {p95(timings['exact, inference_mode']):.2f}) = "
          f"{exact_med / base:.2f} x today's decode, {exact_med / floor:.2f} x the diffusers loop", flush=True)


def error_table(threads: int, pca_samples: int = 64, index_samples: int = 96, eta: float = 1.0) -> None:
    """Preview error against the exact image vs the slider value, default model, 10 steps
    (directions found on eta-1 samples; the edited trajectory sampled at ``eta``)."""
    import torch

    from hspace_studio.core.session import default_range
    from hspace_studio.engine import load_model
    from hspace_studio.engine.annotate import CallableClassifier
    from hspace_studio.engine.model import RESOURCES
    from hspace_studio.toyfaces.nets import load_classifier as toyfaces_classifier
    from hspace_studio.engine.discover.jacobian import jacobian_directions
    from hspace_studio.engine.discover.pca import pca_directions
    from hspace_studio.engine.discover.supervised import build_index, supervised_directions
    from hspace_studio.engine.preview import LinearPreview, NodePreview
    from hspace_studio.engine.sampler import EditSpec, sample, strip

    model = load_model("default", device="cpu")
    traj = sample(model, [0], steps=10, eta=eta)[0]
    t = time.perf_counter()
    module, names = toyfaces_classifier(RESOURCES / "toyfaces-classifier")
    clf = CallableClassifier(lambda x: torch.sigmoid(module(x)), names, name="toyfaces", input_size=(64, 64))
    index = build_index(model, clf, index_samples, steps=10, eta=1.0)
    sup = supervised_directions(model, index, "smiling", examples=index_samples // 4).directions
    print(f"supervised ('smiling', the toy-face classifier): index of {index_samples} samples, "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    pca = pca_directions(model, n_samples=pca_samples, components=1, steps=10, eta=1.0).directions
    print(f"PCA: {pca_samples} samples, {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    jac = jacobian_directions(model, traj, k=1).directions
    print(f"Jacobian: seed 0, {time.perf_counter() - t:.0f} s", flush=True)
    hn = traj.hs.flatten(1).norm(dim=1).median().item()
    rows, agree = [], {}
    for name, ds in (("pca", pca), ("jacobian", jac), ("supervised", sup)):
        d = ds.for_timesteps(traj.timesteps).steps_delta(0)
        if ds.method in ("pca", "supervised"):
            rng = default_range(ds.method)
        else:  # the GUI's default for other methods: half the typical norm of h in direction units
            from hspace_studio.gui.jobs import _nice  # a pure function; no Qt needed

            rng = _nice(0.5 * hn / d.flatten(1).norm(dim=1).median().item())
        grid = [rng * (k / 8) for k in range(-8, 9)]  # the slider's range in 16 intervals
        exact = strip(model, traj, d, grid)
        with torch.no_grad():
            imgs = torch.cat([model.to_pixels(x[None]) for x in exact])
        lps = {m: LinearPreview.prepare(model, traj, [EditSpec(d, 0.0)], method=m) for m in ("jvp", "fd")}
        agree[name] = float((lps["fd"].dimage - lps["jvp"].dimage).norm() / lps["jvp"].dimage.norm())
        lp = lps["jvp"]
        node5 = NodePreview.from_images(grid[::4], imgs[::4])  # nodes every quarter of the range
        node9 = NodePreview.from_images(grid[::2], imgs[::2])
        for s, img in zip(grid, imgs):
            if s == 0:
                continue
            cands = (lp.image([s]), lp.image0, node5.image(s), node9.image(s))
            rows.append((name, rng, s, *[(psnr8(c, img), maxerr8(c, img)) for c in cands]))
    print(f"\npreview error vs the exact image at each slider value (default model, seed 0, 10 steps, "
          f"eta {eta:g}); PSNR in dB / max abs error in 8-bit levels:")
    print("  first-order = LinearPreview at s0 = 0 (jvp); stale = the image at s0 shown unchanged;")
    print("  nodes5 / nodes9 = NodePreview between exact images at 5 / 9 evenly spaced scales (exact at them)")
    print(f"{'direction':10s} {'range':>6s} {'s':>7s}   {'first-order':>13s} {'stale':>13s} {'nodes5':>13s} "
          f"{'nodes9':>13s}")
    for name, rng, s, *c in rows:
        cells = " ".join(f"{p:7.1f} /{e:4d}" for p, e in c)
        print(f"{name:10s} {rng:6g} {s:7.3g}   {cells}")
    for name, a in agree.items():
        print(f"{name}: d image / d s at s = 0, central differences vs forward-mode AD: {100 * a:.2f}% (relative)")
    for name in agree:
        ok = [abs(r[2]) / r[1] for r in rows if r[0] == name and r[3][0] >= r[4][0]]
        print(f"{name}: first-order beats stale at |s|/range in {sorted(set(round(v, 3) for v in ok))}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="steps on the default model")
    ap.add_argument("--big-steps", type=int, default=2, help="steps on the CelebA-HQ-size model")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big-repeats", type=int, default=2)
    ap.add_argument("--moves", type=int, default=200, help="slider values timed for the preview")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--big-dir", default=None, help="reuse (or create) the CelebA-HQ-size model here")
    ap.add_argument("--big-methods", default="fd1,jvp", help="prepare methods timed on the big model")
    ap.add_argument("--variants", action="store_true", help="also time bf16 autocast and channels_last")
    ap.add_argument("--compiled", action="store_true",
                    help="also time engine.compiled: compiled, compiled + bf16, bf16 alone")
    ap.add_argument("--big-nodes", action="store_true", help="also time the node preview on the big model")
    ap.add_argument("--errors", action="store_true", help="print the preview error table and stop")
    ap.add_argument("--eta", type=float, default=1.0, help="eta of the edited trajectory (--errors)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.errors:
        error_table(args.threads, eta=args.eta)
        return 0
    from hspace_studio.engine import load_model

    t_all = time.perf_counter()
    print(f"bench_slider: torch {torch.__version__}, {torch.get_num_threads()} thread(s); default model "
          f"{args.steps} steps x {args.repeats} repeats; CelebA-HQ-size "
          f"{'skipped' if args.no_big else f'{args.big_steps} steps x {args.big_repeats} repeats'}; "
          f"{args.moves} slider moves per preview", flush=True)
    bench_model("default model", load_model("default", device="cpu"), args.steps, args.repeats, args.moves,
                ["fd1", "fd", "jvp"], args.variants,
                compiled=args.compiled)
    if not args.no_big:
        folder = Path(args.big_dir) if args.big_dir else Path(tempfile.mkdtemp(prefix="hspace-celeba-")) / "m"
        t = time.perf_counter()
        model = load_model(str(celeba_size_model(folder)), device="cpu")
        print(f"\n(CelebA-HQ-size model ready in {time.perf_counter() - t:.0f} s: {folder})", flush=True)
        bench_model("CelebA-HQ-size UNet (random weights)", model, args.big_steps, args.big_repeats,
                    args.moves, [m for m in args.big_methods.split(",") if m], args.variants, args.big_nodes,
                    compiled=args.compiled)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
