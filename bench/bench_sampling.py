"""Batched vs one-at-a-time sampling, and the latency of one 10-step edit.

    python -m bench.bench_sampling [--model M] [--n 16] [--batch 8] [--device cpu]

Both are measured in the same run on the same model, so the ratio is meaningful on a
noisy machine.
"""
from __future__ import annotations

import argparse

import torch

from bench.common import bench_model, med, p95, timed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from hspace_studio.engine import EditSpec, edit, sample

    model = bench_model(args.model, args.device)
    print(f"model: {model.describe()}; torch threads {torch.get_num_threads()}")
    seeds = list(range(args.n))
    one = timed(lambda: [sample(model, [s], steps=args.steps) for s in seeds], args.repeat)
    batched = timed(lambda: sample(model, seeds, steps=args.steps, batch_size=args.batch), args.repeat)
    sps_one, sps_b = args.n / med(one), args.n / med(batched)
    print(f"sampling {args.n} images x {args.steps} steps")
    print(f"  one at a time : {sps_one:8.2f} samples/s")
    print(f"  batch {args.batch:<7d} : {sps_b:8.2f} samples/s   ratio {sps_b / sps_one:.2f}x")

    traj = sample(model, [0], steps=args.steps)[0]
    delta = torch.randn_like(traj.hs)
    full = timed(lambda: edit(model, traj, [EditSpec(delta, 1.0)]), args.repeat * 3)
    half_window = (int(traj.timesteps[args.steps // 2]), 0)
    late = timed(lambda: edit(model, traj, [EditSpec(delta, 1.0, half_window)]), args.repeat * 3)
    print(f"edit latency, {args.steps} steps: median {med(full) * 1000:.1f} ms, p95 {p95(full) * 1000:.1f} ms")
    print(f"edit with window in the second half (cached prefix reused): median "
          f"{med(late) * 1000:.1f} ms ({med(late) / med(full):.2f}x of a full edit)")


if __name__ == "__main__":
    main()
