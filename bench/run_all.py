"""Run the benchmarks one after another (``make bench``); each prints its own figures.

    python -m bench.run_all [NAME ...]      e.g. python -m bench.run_all sampling sd

Not part of the tests: the figures are ratios against baselines measured in the same run.
"""
from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("sampling", "preview", "slider", "app_slider", "jacobian", "stream", "distributed", "sd", "transformers")


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench_{name}", flush=True)
        run = importlib.import_module(f"bench.bench_{name}").main
        sys.argv = [f"bench_{name}"]  # each benchmark's own defaults
        run([]) if run.__code__.co_argcount else run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
