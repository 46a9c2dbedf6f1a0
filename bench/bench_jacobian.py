"""Jacobian directions: the block Krylov method vs the sequential power method, at equal accuracy.

    python -m bench.bench_jacobian [--model default|celeba-size|PATH] [--steps 10] [--at 0]
                                   [-k 3] [--tol 1e-4] [--all-steps] [--threads 2]

Both find the top-k right singular vectors of J_t = d eps_t / d h_t of one trajectory
(seed 0, ``--steps`` DDIM steps, eta 1) at step ``--at`` (default 0, t = 900 of 10 steps),
with the same tolerance on the eigen-residual ||J'J v - s^2 v|| / s_1^2:

- **krylov** (``engine.discover.jacobian``, the product's path): block Krylov on blocks of
  k + 2 vectors, batched JVPs/VJPs only through the network downstream of h, stopped by
  the same residual rule as the sequential method (on every step with ``--all-steps`` too);
- **sequential** (the straightforward method): one vector at a time, deflation by
  projection against the vectors found before, and per iteration a forward-mode pass
  (``torch.func.jvp``) and a reverse-mode pass (``torch.func.vjp``) through the full UNet.

Both run in this process on the same step; the script prints their times, ratio, peak
memory (resident set, polled) and their accuracy measured afterwards in one common way:
the eigen-residual, and the largest principal angle of the top-k subspace (and each
vector's angle) to *converged* directions of the same operator. Those come from a long
run (the Krylov method to ``--tol`` / 100), saved once under ``--cache`` and reused.

``--all-steps`` then times the Krylov method on every step of the trajectory with warm
starts; the sequential method's all-step time is measured too when ``--sequential-all``
is given (hours on a CPU at real size), else estimated from the one step and labelled so.

``--model celeba-size`` is a random-weight UNet with google/ddpm-ema-celebahq-256's
config (h after the mid-block: 512 x 8 x 8), built once under ``--cache``.
"""
from __future__ import annotations

import argparse
import math
import os
import threading
import time
from pathlib import Path

import torch


class PeakRSS:
    """The largest resident set size of this process while the block runs (polled)."""

    def __init__(self, every: float = 0.05):
        self.every = every
        self.peak = 0
        self.start = 0

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.start = self.peak = self.now()
        self._stop = threading.Event()

        def poll():
            while not self._stop.wait(self.every):
                self.peak = max(self.peak, self.now())

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())
        return False

    def text(self) -> str:
        return f"peak RSS {self.peak / 2**30:.2f} GB (+{(self.peak - self.start) / 2**30:.2f} GB)"


SECONDS_PER_STEP: list = []  # the sequential method's time of each step it ran, in order


def sequential_directions(model, traj, k, tol, max_iter, steps, seed=0, warm=False, log=None,
                          deadline=None, weights=None):
    """The sequential power method with deflation, through the full UNet, at ``steps``.

    Returns (vectors (S, k, D), singular values (S, k), iterations per step, converged).
    With ``deadline`` (a ``time.perf_counter()`` value) it stops there: the vectors not
    reached are the random start (not converged). ``weights``: a mask's weights on eps (the
    masked Jacobian), as the product path applies them.
    """
    from hspace_studio.engine.denoiser import forward_ad_safe

    gen = torch.Generator().manual_seed(seed)
    vecs, sigs, iters, conv = [], [], [], []
    prev = None
    with forward_ad_safe(model.net):  # math attention + contiguous GroupNorm input (forward AD)
        for i in steps:
            t_step = time.perf_counter()
            x = traj.xs[i][None].to(model.device)
            t = traj.timesteps[i].to(model.device)
            h0 = traj.hs[i][None].to(model.device)

            def f(h):
                with model.denoiser.hook(traj.h_space, edit=lambda _h: h):
                    out = model.denoiser(x, t)
                eps = model.jacobian_output(out.float(), x, t)
                return (eps if weights is None else eps * weights).reshape(-1)

            found, vals, n_it, ok = [], [], 0, True
            lam1 = 1.0
            for j in range(k):
                if warm and prev is not None:
                    v = prev[j].clone()
                else:
                    v = torch.randn(h0.numel(), generator=gen, dtype=torch.float64)
                for _ in range(max_iter):
                    if deadline is not None and time.perf_counter() > deadline:
                        ok = False
                        break
                    for u in found:  # deflation by projection
                        v = v - (u @ v) * u
                    v = v / v.norm()
                    jv = torch.func.jvp(f, (h0,), (v.reshape(h0.shape).float().to(h0.device),))[1]
                    _, vjp_fn = torch.func.vjp(f, h0)
                    z = vjp_fn(jv)[0].reshape(-1).double().cpu()
                    lam = float(jv.double().pow(2).sum())
                    for u in found:
                        z = z - (u @ z) * u
                    res = float((z - lam * v).norm()) / max(lam if j == 0 else lam1, 1e-300)
                    n_it += 1
                    if log:
                        log(f"  sequential step {i} vector {j} iteration {n_it}: residual {res:.1e}")
                    if res <= tol:
                        break
                    v = z
                else:
                    ok = False
                if j == 0:
                    lam1 = max(lam, 1e-300)
                found.append(v)
                vals.append(lam ** 0.5)
            prev = found
            vecs.append(torch.stack(found))
            sigs.append(torch.tensor(vals))
            iters.append(n_it)
            SECONDS_PER_STEP.append(time.perf_counter() - t_step)
            conv.append(ok)
    return torch.stack(vecs), torch.stack(sigs), iters, conv


def common_residuals(model, traj, steps, vecs, weights=None):
    """||J'J v - |Jv|^2 v|| / s_1^2 for each step's vectors (S, k, D), one common check
    (s_1^2 is the largest |Jv|^2 among the vectors checked)."""
    from hspace_studio.engine.discover.jacobian import DownstreamEps, JacobianOperator

    out = []
    for n, i in enumerate(steps):
        with DownstreamEps(model, traj.xs[i][None], traj.timesteps[i].to(model.device), traj.h_space,
                           weights) as fn:
            op = JacobianOperator(fn, fn.h0)
            V = vecs[n].double()
            W = op.jmv(V).double().cpu()
            Z = op.jtmv(W).double().cpu()
            lam = W.pow(2).sum(1)
            out.append((Z - lam[:, None] * V).norm(dim=1) / lam.max().clamp(min=1e-300))
    return torch.stack(out)


def angles_deg(V, R):
    """(largest principal angle of span V to span R, per-vector angles) in degrees; V, R (k, D)."""
    qv, qr = torch.linalg.qr(V.double().T)[0], torch.linalg.qr(R.double().T)[0]
    resid = qv - qr @ (qr.T @ qv)  # sin of the largest principal angle = its spectral norm
    sub = math.degrees(math.asin(min(1.0, float(torch.linalg.matrix_norm(resid, ord=2)))))
    per = []
    for v, r in zip(V.double(), R.double()):
        v, r = v / v.norm(), r / r.norm()
        per.append(math.degrees(math.asin(min(1.0, float((v - (v @ r) * r).norm())))))
    return sub, per


def reference_directions(model, traj, step, k, tol, cache: Path, log, mask=None, tag=""):
    """Converged directions at one step (a long Krylov run), saved once and reused."""
    from hspace_studio.engine.discover.jacobian import jacobian_directions

    key = f"reference-{model.weights_fingerprint}{tag}-seed0-{traj.steps}steps-at{step}-k{k}-tol{tol:g}.pt"
    path = cache / key
    if path.is_file():
        log(f"reference: {path} (saved before)")
        return torch.load(path, weights_only=True)
    log(f"reference: a long run to tol {tol:g} (saved to {path})")
    t0 = time.perf_counter()
    res = jacobian_directions(model, traj, k=k, tol=tol, angle_tol=None, max_iter=400, steps_subset=[step],
                              mask=mask, progress=lambda d, n, m: log("  " + m))
    vec = res.directions.delta_h[:, 0].reshape(k, -1).double()
    ref = {"vectors": vec, "values": res.singular_values[0].double(), "residual": res.residuals[0],
           "products": res.products[0], "seconds": time.perf_counter() - t0, "accuracy": res.accuracy[0]}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(ref, path)
    return ref


def bf16_check(model, traj, at, args, mask, tag, new, t_new, nv, weights, cache, log):
    """The float32 Krylov run (done) against the same run with the products under bfloat16
    autocast: time per product and the directions' angles to the converged ones. bf16's
    rounding (about 3 significant digits) floors the residual near 1e-3, so both stop on the
    1 degree angle rule here."""
    from hspace_studio.engine.discover.jacobian import jacobian_directions

    runs = {}
    for name in ("float32", "bf16"):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if name == "bf16" else torch.autocast("cpu", enabled=False)
        t0 = time.perf_counter()
        with ctx:
            res = jacobian_directions(model, traj, k=args.k, tol=args.tol, angle_tol=1.0, max_iter=args.max_iter,
                                      steps_subset=[at], mask=mask, progress=lambda d, n, m: log("  " + m))
        runs[name] = (time.perf_counter() - t0, res)
    ref = (reference_directions(model, traj, at, args.k, args.tol / 100, cache, log, mask, tag)
           if not args.no_reference else {"vectors": nv})
    for name, (sec, res) in runs.items():
        v = res.directions.delta_h[:, 0].reshape(args.k, -1).double()
        sub, per = angles_deg(v, ref["vectors"])
        r = common_residuals(model, traj, [at], v[None], weights)[0]
        print(f"{name:8s}: {sec:7.1f} s  {res.products[0]:3d} products ({sec / max(res.products[0], 1):.2f} s each)  "
              f"residual (float32 check) {float(r.max()):.1e}  subspace angle {sub:.3g} deg  vectors "
              f"{', '.join(f'{a:.3g}' for a in per)} deg; says: {res.accuracy[0]}")
    (a, ra), (b, rb) = runs["float32"], runs["bf16"]
    print(f"bf16/float32 time per product: {(b / max(rb.products[0], 1)) / (a / max(ra.products[0], 1)):.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="default, celeba-size or a model folder")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--at", type=int, default=0, help="the step compared (default 0)")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--all-steps", action="store_true", help="also every step with warm starts")
    ap.add_argument("--sequential-all", action="store_true", help="with --all-steps: run the sequential "
                    "method on every step too (else its one-step time x steps, labelled an estimate)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "hspace-studio" / "bench"))
    ap.add_argument("--verbose", action="store_true", help="print every iteration")
    ap.add_argument("--sequential-limit", type=float, default=None, metavar="X",
                    help="stop the sequential method after X times the Krylov method's time (it is then "
                         "reported as not finished, and the speed-up as at least X)")
    ap.add_argument("--mask", default=None, metavar="PNG|centre",
                    help="the masked Jacobian: a mask image, or 'centre' (the middle quarter of the image)")
    ap.add_argument("--prompt", default=None, help="a text-to-image model's prompt (guidance: its default)")
    ap.add_argument("--bf16", action="store_true",
                    help="instead of the sequential method: the Krylov method with its products under bfloat16 "
                         "autocast, against float32 (time per product, angles to the converged directions)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the converged directions (no angles to them)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)

    def log(msg):
        if args.verbose or not msg.startswith("  "):
            print(msg, flush=True)

    from bench.common import bench_model
    from hspace_studio.engine import sample
    from hspace_studio.engine.discover.jacobian import jacobian_directions

    if args.model == "celeba-size":
        from bench.bench_slider import celeba_size_model

        model = bench_model(str(celeba_size_model(cache / "celeba-size")), args.device)
    else:
        model = bench_model(None if args.model == "default" else args.model, args.device)
    print(f"model: {model.describe()}; torch threads {torch.get_num_threads()}")
    if args.prompt is not None:
        model.set_prompt(args.prompt)
    mask, tag = None, ""
    if args.mask == "centre":
        import numpy as np

        h, w = model.image_size
        mask = np.zeros((h, w), dtype=bool)
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
        tag = "-centre"
    elif args.mask is not None:
        mask, tag = args.mask, "-" + Path(args.mask).stem
    from hspace_studio.engine.masks import prepare_mask

    weights, _ = prepare_mask(mask, model)
    traj = sample(model, [0], steps=args.steps, eta=1.0)[0]
    at = args.at
    print(f"trajectory: seed 0, {args.steps} steps, h {tuple(traj.hs.shape[1:])} at '{traj.h_space}'; "
          f"step {at} (t = {int(traj.timesteps[at])}); k = {args.k}, tol = {args.tol:g}"
          + (f"; mask {args.mask}" if mask is not None else "") + (f"; prompt {args.prompt!r}" if args.prompt else ""))

    with PeakRSS() as mem_new:
        t0, c0 = time.perf_counter(), time.process_time()
        new = jacobian_directions(model, traj, k=args.k, tol=args.tol, angle_tol=None, max_iter=args.max_iter,
                                  steps_subset=[at], mask=mask, progress=lambda d, n, m: log("  " + m))
        t_new, c_new = time.perf_counter() - t0, time.process_time() - c0
    nv = new.directions.delta_h[:, 0].reshape(args.k, -1).double()
    log(f"krylov done: {t_new:.1f} s, {new.products[0]} products; {new.accuracy[0]}")

    if args.bf16:
        return bf16_check(model, traj, at, args, mask, tag, new, t_new, nv, weights, cache, log)

    with PeakRSS() as mem_seq:
        t0, c0 = time.perf_counter(), time.process_time()
        deadline = t0 + args.sequential_limit * t_new if args.sequential_limit else None
        sv, ss, s_iters, s_conv = sequential_directions(model, traj, args.k, args.tol, args.max_iter, [at],
                                                        log=log, deadline=deadline, weights=weights)
        t_seq, c_seq = time.perf_counter() - t0, time.process_time() - c0
    finished = all(s_conv)
    log(f"sequential done: {t_seq:.1f} s, {s_iters[0]} iterations")

    rn = common_residuals(model, traj, [at], nv[None], weights)[0]
    rs = common_residuals(model, traj, [at], sv[0][None], weights)[0]
    if args.no_reference:
        ref = {"vectors": nv}
        print("converged  : not computed (--no-reference): angles are to the Krylov method's vectors")
    else:
        ref = reference_directions(model, traj, at, args.k, args.tol / 100, cache, log, mask, tag)
        vals = ", ".join(f"{float(v):.5g}" for v in ref["values"])
        print(f"converged  : singular values {vals}; residual {ref['residual']:.1e} "
              f"({ref['products']} products, {ref['seconds']:.0f} s when made)")
    sub_n, per_n = angles_deg(nv, ref["vectors"])
    sub_s, per_s = angles_deg(sv[0], ref["vectors"])
    print(f"krylov     : {t_new:8.1f} s  {new.products[0]:3d} products ({new.iterations[0]} batches, "
          f"{t_new / max(new.products[0], 1):.1f} s each)  max residual {float(rn.max()):.1e}  "
          f"subspace angle {sub_n:.3g} deg  vectors {', '.join(f'{a:.3g}' for a in per_n)} deg  {mem_new.text()}")
    print(f"             says: {new.accuracy[0]}")
    print(f"sequential : {t_seq:8.1f} s  {s_iters[0]:3d} iterations (1 vector each, full UNet, "
          f"{t_seq / max(s_iters[0], 1):.1f} s each)  max residual {float(rs.max()):.1e}  subspace angle "
          f"{sub_s:.3g} deg  vectors {', '.join(f'{a:.3g}' for a in per_s)} deg  {mem_seq.text()}"
          + ("" if finished else f"  NOT FINISHED (stopped at {args.sequential_limit:g}x the Krylov time)"))
    as_good = float(rn.max()) <= float(rs.max()) * 1.05 and sub_n <= sub_s * 1.05 + 1e-3
    print(f"accuracy   : krylov at least as accurate as sequential: {'yes' if as_good else 'NO'}")
    print(f"speed-up   : {'' if finished else 'at least '}{t_seq / t_new:.2f}x at step {at} "
          f"(krylov {t_new / t_seq:.3f} of the sequential time); CPU time {c_new:.0f} s vs {c_seq:.0f} s: "
          f"{c_seq / max(c_new, 1e-9):.2f}x (equal to the wall-time ratio when nothing else shared the cores)")

    if args.all_steps:
        steps = list(range(args.steps))
        marks = [time.perf_counter()]

        def step_done(d, n, m):  # the app's progress: one count a step (trajectory already sampled)
            log("  " + m)
            while len(marks) - 1 < d:
                marks.append(time.perf_counter())
        t0 = time.perf_counter()
        allr = jacobian_directions(model, traj, k=args.k, tol=args.tol, angle_tol=None, max_iter=args.max_iter,
                                   mask=mask, progress=step_done)
        t_all = time.perf_counter() - t0
        per = ", ".join(str(p) for p in allr.products)
        print(f"all steps  : krylov {t_all:.1f} s, products per step {per} (warm starts), "
              f"max residual {max(allr.residuals):.1e}")
        if args.sequential_all:
            t0 = time.perf_counter()
            _, _, it_all, _ = sequential_directions(model, traj, args.k, args.tol, args.max_iter, steps,
                                                    warm=True, log=log, weights=weights)
            t_sall = time.perf_counter() - t0
            print(f"all steps  : sequential (warm starts) {t_sall:.1f} s, iterations per step {it_all}; "
                  f"speed-up {t_sall / t_all:.2f}x")
            kry = [b - a for a, b in zip(marks, marks[1:])]
            seq = SECONDS_PER_STEP[-len(steps):]
            if len(kry) == len(seq):
                print("per step   : " + ", ".join(f"{q:.1f}/{k_:.1f} s = {q / k_:.1f}x" for k_, q in zip(kry, seq))
                      + f" (sequential/krylov); smallest {min(q / k_ for k_, q in zip(kry, seq)):.2f}x")
        else:
            est = t_seq * args.steps
            print(f"all steps  : sequential estimated {est:.0f} s (its step-{at} time x {args.steps}, "
                  f"not run); speed-up about {est / t_all:.1f}x")


if __name__ == "__main__":
    main()
