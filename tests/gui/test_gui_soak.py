"""A short GUI soak (issue 6): ~100 random actions on a tiny model without an exception,
without an unexpected error message, with a responsive app at the end and memory that
does not keep growing. The long version: ``python -m tests.soak --actions 400``."""
from __future__ import annotations

import os
import random

import pytest

pytest.importorskip("pytestqt")

from bench.soak import run_soak  # noqa: E402
from tests.gui.test_gui_app import make_window  # noqa: E402

ACTIONS = int(os.environ.get("HSPACE_SOAK_ACTIONS", "100"))

# Memory bounds, from the first sample (taken after the soak's warm-up, which runs every
# code path once: the first PCA of each solver and mode imports scikit-learn, the first
# Jacobian torch.func, and torch, Qt and glibc fill their caches and pools) to the end.
# RSS is read after gc.collect() and malloc_trim(), so heap fragmentation does not count.
# What the app legitimately keeps is small and bounded on a tiny model (a 16x16 image,
# at most 4 direction sets of a few KiB - the worker now frees removed sets -, at most
# 200 mask undo steps of 512 bytes, 200 messages). Measured: the 400-action run grew by
# 9 MiB RSS and 4,300 allocator blocks (10 per action: capped histories filling up);
# 100 actions grow by a few MiB and ~1-3k blocks. The bounds leave room for allocator
# noise but not for a leak: keeping one job result, trajectory record or direction set
# (each 150+ blocks) per action would pass 15,000 blocks in 100 actions.
MAX_RSS_GROWTH_MB = 24.0
MAX_BLOCK_GROWTH = 15_000
# Objects that hold None or True come and go (measured: refcount(None) rose by 7,000 in
# 200 actions with PySide6 6.11.3); a binding bug takes 150+ per action, steadily.
MAX_REFCOUNT_LOSS = 3_000


def test_gui_soak(qtbot, tiny_model_dir, tmp_path):
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    try:
        stats = run_soak(w, ACTIONS, random.Random(1234), workdir=tmp_path / "files", sample_every=10)
        print(stats.summary())
        assert stats.actions == ACTIONS
        assert not stats.exceptions, stats.exceptions
        assert not stats.unexpected_errors, stats.unexpected_errors
        assert stats.final_render_ok, "the final edit did not render"
        # every kind of action ran
        for kind in ("slider", "burst", "stroke", "undo", "pca", "jacobian", "import_bad", "seed"):
            assert stats.counts[kind] > 0, kind
        assert stats.expected_errors >= stats.counts["import_bad"]
        # the worker keeps no more direction sets than the library shows or its undo steps hold
        assert stats.worker_sets == stats.library_sets, (stats.worker_sets, stats.library_sets)
        rss, blocks = stats.growth_after(0.0)
        assert rss < MAX_RSS_GROWTH_MB, stats.summary()
        assert blocks < MAX_BLOCK_GROWTH, stats.summary()
        assert stats.samples[-1].modules == stats.samples[0].modules  # warm-up covered every path
        # None and True are not immortal before Python 3.12: a binding that releases a
        # reference it does not own (PySide6-Essentials 6.12.0 does, on every signal emit)
        # makes their refcounts fall until Python frees them and aborts the whole app
        loss = stats.refcount_loss()
        assert max(loss.values()) < MAX_REFCOUNT_LOSS, (
            f"refcounts of None/True fell by {loss} in {ACTIONS} actions: a C extension over-releases "
            f"them and the app will abort after a longer session (see test_gui_robustness.py::"
            f"test_qt_binding_keeps_refcounts)")
    finally:
        w.shutdown()
