"""Training images streamed from the toyfaces generator: images a second in this process
against worker processes rendering ahead (``training.ddpm --workers``).

    python -m bench.bench_stream [--batch 64] [--batches 20] [--workers 0,2,4] [--size 64]

All settings are measured in the same run, so the ratios against ``--workers 0`` are
meaningful on a noisy machine. More workers than free cores gain nothing.
"""
from __future__ import annotations

import argparse
import os
import time


def rate(batch: int, batches: int, size: int, workers: int) -> float:
    from hspace_studio.training.stream import batches as stream

    gen = stream(0, batch, size, workers)
    next(gen)  # workers started and the first batches queued
    t = time.perf_counter()
    for _ in range(batches):
        next(gen)
    dt = time.perf_counter() - t
    gen.close()
    return batch * batches / dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", default=None,
                    help="comma-separated worker counts (default: 0, 2 and the CPU cores less one)")
    args = ap.parse_args(argv)
    counts = ([int(w) for w in args.workers.split(",")] if args.workers
              else sorted({0, 2, max(1, (os.cpu_count() or 1) - 1)}))
    if 0 not in counts:
        counts = [0, *counts]
    print(f"toyfaces {args.size}x{args.size}, batch {args.batch}, {args.batches} batches, "
          f"{os.cpu_count()} CPU cores")
    base = None
    for w in counts:
        r = rate(args.batch, args.batches, args.size, w)
        base = base or r
        print(f"  workers {w:<3d}: {r:8.0f} images/s   ratio {r / base:.2f}x")


if __name__ == "__main__":
    main()
