"""Training batches of toy faces, streamed by seed, optionally rendered by worker processes.

Batch k of a run that starts at data position ``pos`` holds the images of seeds
``base + pos + k * batch`` onwards, whatever the number of workers: a resumed run (which
saves ``pos``) and a run with more workers see the same images. Workers matter on a GPU,
where one process renders far fewer images a second than the GPU trains on; on a small
CPU the training step dominates and rendering in the main process is as fast.
"""
from __future__ import annotations

import multiprocessing as mp
from collections import deque

import numpy as np

from ..toyfaces.generator import render, to_model_range

SEED_BASE = 10_000_000  # training seeds start here, away from the held-out seeds


def _render_uint8(first: int, count: int, size: int) -> np.ndarray:
    return np.stack([render(s, size)[0] for s in range(first, first + count)])


def batches(pos: int, batch: int, size: int = 64, workers: int = 0, base: int = SEED_BASE):
    """Yield ``(next_pos, x0)`` for consecutive batches from data position ``pos``.

    ``x0`` is float32 (batch, 3, size, size) in [-1, 1]; ``next_pos`` is the position to
    save so that a resumed run continues after this batch. With ``workers`` > 0 that many
    processes render ahead (at most two batches each); closing the generator stops them.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if workers <= 0:
        while True:
            x = to_model_range(_render_uint8(base + pos, batch, size))
            pos += batch
            yield pos, x
    # spawn, not fork: the parent holds torch's thread pools, which a forked child can inherit
    # in a locked state; the workers need only numpy and PIL. An executor, not a Pool: closing
    # the generator cancels what is queued and leaves without joining a pool's handler threads
    # (a Pool's terminate was seen to hang there).
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    try:
        ahead: deque = deque()
        nxt = pos
        while True:
            while len(ahead) < 2 * workers:
                ahead.append(ex.submit(_render_uint8, base + nxt, batch, size))
                nxt += batch
            rgb = ahead.popleft().result()
            pos += batch
            yield pos, to_model_range(rgb)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
