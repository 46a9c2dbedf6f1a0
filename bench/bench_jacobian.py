"""Block Jacobian directions vs the sequential power method, at equal accuracy.

    python -m bench.bench_jacobian [--model M] [--steps 10] [-k 3] [--tol 1e-4]
                                   [--oversample 2] [--device cpu] [--threads 1]

Both find the top-k right singular vectors of J_t = d eps_t / d h_t at every step of the
same trajectory, to the same tolerance on the eigen-residual ||J'J v - s^2 v|| / s_1^2:

- **block** (``engine.discover.jacobian``): p = k + oversample vectors at once, batched
  JVPs (vmap over jvp, one primal) and VJPs (one vjp per step, reused), only through
  the network downstream of h, Rayleigh-Ritz every iteration, warm start across steps;
- **sequential** (the straightforward method): one vector at a time, deflation by
  projection against the vectors found before, and per iteration a forward-mode pass
  (``torch.func.jvp``) and a reverse-mode pass (``torch.func.vjp``) through the full UNet,
  from a random start at every step.

Both run in the same process on the same trajectory; the ratio of their times is
printed, with their agreement (singular values, |cos| of the vectors) and final
residuals measured afterwards in one common way. Uses the default model when it exists.
"""
from __future__ import annotations

import argparse
import time

import torch


def sequential_directions(model, traj, k, tol, max_iter, seed=0, warm=False):
    """The sequential power method with deflation, through the full UNet.

    Returns (vectors (T, k, D), singular values (T, k), iterations per step, converged).
    """
    from hspace_studio.engine.denoiser import forward_ad_safe

    unet = model.net
    gen = torch.Generator().manual_seed(seed)
    vecs, sigs, iters, conv = [], [], [], []
    prev = None
    with forward_ad_safe(unet):  # math attention + contiguous GroupNorm input (forward AD)
        for i in range(traj.steps):
            x = traj.xs[i][None].to(model.device)
            t = traj.timesteps[i].to(model.device)
            h0 = traj.hs[i][None].to(model.device)

            def f(h):
                with model.denoiser.hook(traj.h_space, edit=lambda _h: h):
                    out = model.denoiser(x, t)
                return model.predict_eps(out.float(), x, t).reshape(-1)

            found, vals, n_it, ok = [], [], 0, True
            lam1 = 1.0
            for j in range(k):
                if warm and prev is not None:
                    v = prev[j].clone()
                else:
                    v = torch.randn(h0.numel(), generator=gen, dtype=torch.float64)
                for it in range(max_iter):
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
            conv.append(ok)
    return torch.stack(vecs), torch.stack(sigs), iters, conv


def full_residuals(model, traj, vecs):
    """||J'J v - |Jv|^2 v|| / s_1^2 for each step's vectors (T, k, D), one common check."""
    from hspace_studio.engine.discover.jacobian import DownstreamEps, JacobianOperator

    out = []
    for i in range(traj.steps):
        with DownstreamEps(model, traj.xs[i][None], traj.timesteps[i].to(model.device), traj.h_space) as fn:
            op = JacobianOperator(fn, fn.h0)
            V = vecs[i].double()
            W = op.jmv(V).double().cpu()
            Z = op.jtmv(W).double().cpu()
            lam = W.pow(2).sum(1)
            r = (Z - lam[:, None] * V).norm(dim=1) / lam.max().clamp(min=1e-300)
            out.append(r)
    return torch.stack(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: resources/default-model, else a tiny model")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--oversample", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-warm", action="store_true",
                    help="also warm-start the sequential method from the previous step")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from bench.common import bench_model
    from hspace_studio.engine import sample
    from hspace_studio.engine.discover.jacobian import jacobian_directions

    model = bench_model(args.model, args.device)
    print(f"model: {model.describe()}; torch threads {torch.get_num_threads()}")
    traj = sample(model, [args.seed], steps=args.steps, eta=1.0)[0]
    print(f"trajectory: seed {args.seed}, {args.steps} steps, h {tuple(traj.hs.shape[1:])}; "
          f"k = {args.k}, tol = {args.tol:g}")

    t0 = time.perf_counter()
    blk = jacobian_directions(model, traj, k=args.k, tol=args.tol, max_iter=args.max_iter,
                              oversample=args.oversample)
    t_block = time.perf_counter() - t0
    bv = blk.directions.delta_h.permute(1, 0, 2, 3, 4).reshape(traj.steps, args.k, -1).double()

    t0 = time.perf_counter()
    sv, ss, s_iters, s_conv = sequential_directions(model, traj, args.k, args.tol, args.max_iter,
                                                    args.seed, warm=args.baseline_warm)
    t_seq = time.perf_counter() - t0

    rb = full_residuals(model, traj, bv)
    rs = full_residuals(model, traj, sv)
    cos = (bv * sv).sum(-1).abs()
    rel = ((blk.singular_values.double() - ss.double()).abs() / ss.double().clamp(min=1e-300))
    print(f"block      : {t_block:8.2f} s  iterations {sum(blk.iterations):4d} (x {args.k + args.oversample} "
          f"vectors)  converged {all(blk.converged)}  max residual {float(rb.max()):.1e}")
    print(f"sequential : {t_seq:8.2f} s  iterations {sum(s_iters):4d} (x 1 vector)   "
          f"converged {all(s_conv)}  max residual {float(rs.max()):.1e}"
          + ("  (warm start)" if args.baseline_warm else ""))
    print(f"agreement  : singular values max rel diff {float(rel.max()):.1e}, "
          f"min |cos| {float(cos.min()):.5f} (median {float(cos.median()):.5f})")
    print(f"per step   : block iterations {blk.iterations}; sequential {s_iters}")
    print(f"speed-up   : {t_seq / t_block:.2f}x (block vs sequential, k = {args.k}, all {args.steps} steps)")


if __name__ == "__main__":
    main()
