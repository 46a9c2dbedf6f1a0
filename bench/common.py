"""Shared helpers for the benchmarks: pick a model, time things, print a table."""
from __future__ import annotations

import statistics
import time
from pathlib import Path


def bench_model(source: str | None = None, device: str | None = None):
    """The default model when it exists (else a tiny model saved to a temp folder)."""
    from hspace_studio.engine.model import DEFAULT_MODEL_DIR, load_model

    if source:
        return load_model(source, device=device)
    if DEFAULT_MODEL_DIR.is_dir():
        return load_model("default", device=device)
    import tempfile

    from tests.tiny_models import save_pixel_model

    folder = save_pixel_model(Path(tempfile.mkdtemp()) / "tiny", "a")
    return load_model(str(folder), device=device)


def timed(fn, repeat: int = 5, warmup: int = 1):
    """Run ``fn`` and return the list of wall-clock seconds of ``repeat`` runs."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(xs):
    return statistics.median(xs)


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
