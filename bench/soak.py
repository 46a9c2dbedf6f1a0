"""GUI soak: a scripted session of random user actions against a live ``MainWindow``.

``run_soak(window, actions, rng, files=...)`` drives the window the way a person does -
slider moves and bursts of them, brush strokes with real mouse events, undo / redo,
mask actions, PCA and Jacobian discovery jobs that are left to finish or cancelled,
imports of good and bad direction files, seed changes, view changes, direction
selection (strips), slider windows, session saves and set removal - and checks that
no exception escapes, that every error message it sees was caused by a bad file it
opened on purpose, and that memory does not grow without bound: every few actions it
records the process RSS (``/proc/self/status``: VmRSS after ``gc.collect()`` and glibc's
``malloc_trim``, so fragmentation does not count; VmHWM, the peak so far) and the blocks
held by Python's allocator, and it counts live Python objects (``gc.get_objects()``) at
the start and end, with the app idle. It returns a :class:`SoakStats`.

The short version runs in ``tests/gui/test_gui_soak.py``; the long one from the command line::

    python -m bench.soak --actions 400 --model tiny      # a tiny UNet built on the fly
    python -m bench.soak --actions 400 --model default   # the embedded default model
    python -m bench.soak --actions 400 --model /path/to/diffusers-folder

Use one thread (``OMP_NUM_THREADS=1``) and an offscreen Qt (set automatically here).

Measured (2 cores, 1 thread, a training run in the background), 400 actions each:

- tiny model: 48 s after a 6 s warm-up; RSS 776 -> 786 MiB, peak 794 MiB (VmHWM 786 at
  the start, 794 at the end); 4,300 allocator blocks gained (10 per action); no error
  but the bad files', no exception, the final edit rendered in 0.16 s.
- default model (64x64): 112 s after a 24 s warm-up; RSS 807 -> 803 MiB, peak 924 MiB
  (VmHWM 886 at the start, 924 at the end); 3,900 blocks gained; final edit 0.55 s.
- What the soak found and got fixed: the worker kept the tensors of every direction set
  ever imported or discovered (now freed when the library drops a set); the mask undo
  history was unbounded (now 200 steps); ``gc.get_objects()`` from the UI thread while
  the worker builds a tuple raises ``SystemError`` in the worker (hence the block counts);
  and PySide6-Essentials 6.12.0 over-releases ``True`` (once per signal emit) and
  ``None`` (in slot calls): their refcounts fell by ~18 and ~150 per soak action, and
  Python aborts when one reaches 0 ("bool_dealloc" / "none_dealloc": the 400-action
  default-model run died at exit) - pyproject.toml now excludes that version.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

BAD_PREFIX = "bad-"


# ------------------------------------------------------------------------------ memory

def memory_mb() -> Dict[str, float]:
    """Resident set size now (``rss``) and its peak so far (``hwm``), in MiB."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":")
                    out["rss" if key == "VmRSS" else "hwm"] = int(val.split()[0]) / 1024.0
    except OSError:
        pass
    if "hwm" not in out:  # not Linux: the peak from getrusage (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["hwm"] = peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)
        out.setdefault("rss", out["hwm"])
    return out


def trim_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``),
    so that RSS shows live memory rather than allocator fragmentation."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def python_blocks() -> int:
    """Memory blocks held by Python's allocator (about one per live small object).

    Unlike ``len(gc.get_objects())`` this holds no references: ``gc.get_objects()`` run
    while the worker thread is inside ``tuple(generator)`` makes CPython raise
    ``SystemError: bad argument to internal function`` in that thread (the tuple under
    construction gets a second reference), so object counts are only taken when idle."""
    gc.collect()
    return sys.getallocatedblocks()


def python_objects() -> int:
    """Live objects tracked by the garbage collector; call only while the worker is idle."""
    gc.collect()
    return len(gc.get_objects())


@dataclass
class Sample:
    action: int
    seconds: float
    rss_mb: float  # after gc.collect() and malloc_trim()
    hwm_mb: float  # the process's peak RSS so far
    blocks: int  # sys.getallocatedblocks()
    modules: int  # len(sys.modules): a first use that imports a library is not a leak
    none_refs: int = 0  # sys.getrefcount(None) and (True): fall steadily if a C extension
    true_refs: int = 0  # over-releases them, until Python frees None / True and aborts


@dataclass
class SoakStats:
    actions: int = 0
    counts: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    samples: List[Sample] = field(default_factory=list)
    expected_errors: int = 0  # messages about the bad files opened on purpose
    unexpected_errors: List[str] = field(default_factory=list)
    exceptions: List[str] = field(default_factory=list)
    jobs_cancelled: int = 0
    jobs_ok: int = 0
    jobs_failed: int = 0
    final_render_s: Optional[float] = None
    final_render_ok: bool = False
    library_sets: int = 0
    worker_sets: int = 0
    undo_steps: int = 0
    traced_mb: Optional[Tuple[float, float]] = None  # tracemalloc (current, peak) at the end
    warmup_s: float = 0.0
    objects_start: int = 0  # len(gc.get_objects()) with the app idle, before and after
    objects_end: int = 0

    @property
    def start(self) -> Sample:
        return self.samples[0]

    @property
    def end(self) -> Sample:
        return self.samples[-1]

    @property
    def rss_peak_mb(self) -> float:
        return max(s.hwm_mb for s in self.samples)

    def refcount_loss(self) -> Dict[str, int]:
        """How far sys.getrefcount(None) and (True) fell from the first sample to the end."""
        return {"None": self.start.none_refs - self.end.none_refs,
                "True": self.start.true_refs - self.end.true_refs}

    def growth_after(self, fraction: float) -> Tuple[float, int]:
        """(RSS MiB, Python allocator blocks) gained from the sample at ``fraction`` of the
        run (after warm-up: first model runs, caches, first discovery) to the end."""
        i = min(len(self.samples) - 1, max(0, int(round(fraction * (len(self.samples) - 1)))))
        s = self.samples[i]
        return self.end.rss_mb - s.rss_mb, self.end.blocks - s.blocks

    def summary(self) -> str:
        s0, s1 = self.start, self.end
        g_mb, g_obj = self.growth_after(0.25)
        lines = [
            f"actions: {self.actions} in {self.wall_s:.1f} s ({self.actions / max(self.wall_s, 1e-9):.1f}/s; "
            f"after a warm-up of {self.warmup_s:.1f} s)",
            "  " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())),
            f"jobs: {self.jobs_ok} ok, {self.jobs_cancelled} cancelled, {self.jobs_failed} failed "
            f"(expected errors from bad files: {self.expected_errors}; unexpected: "
            f"{len(self.unexpected_errors)}; exceptions: {len(self.exceptions)})",
            f"RSS MiB: start {s0.rss_mb:.1f}, end {s1.rss_mb:.1f}, peak {self.rss_peak_mb:.1f} "
            f"(peak at start {s0.hwm_mb:.1f}, at end {s1.hwm_mb:.1f})",
            f"Python objects: start {self.objects_start}, end {self.objects_end}; allocator blocks: "
            f"start {s0.blocks}, end {s1.blocks}; after the first quarter: {g_mb:+.1f} MiB RSS, "
            f"{g_obj:+d} blocks",
            f"at the end: {self.library_sets} sets in the library or its undo history, {self.worker_sets} in the worker, "
            f"{self.undo_steps} undo steps; final edit rendered: {self.final_render_ok} "
            f"({self.final_render_s:.2f} s)" if self.final_render_s is not None else
            f"final edit rendered: {self.final_render_ok}",
        ]
        lines.append(f"refcounts: None {s0.none_refs} -> {s1.none_refs}, True {s0.true_refs} -> "
                     f"{s1.true_refs} (a steady fall is a C extension over-releasing them: "
                     f"a crash once they reach 0)")
        if self.traced_mb:
            lines.append(f"tracemalloc MiB at the end: current {self.traced_mb[0]:.1f}, peak {self.traced_mb[1]:.1f}")
        for e in self.unexpected_errors[:5]:
            lines.append(f"  unexpected message: {e}")
        for e in self.exceptions[:5]:
            lines.append(f"  exception: {e}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        s0, s1 = self.start, self.end
        return {"actions": self.actions, "wall_s": round(self.wall_s, 2), "counts": dict(self.counts),
                "rss_start_mb": round(s0.rss_mb, 1), "rss_end_mb": round(s1.rss_mb, 1),
                "rss_peak_mb": round(self.rss_peak_mb, 1), "hwm_start_mb": round(s0.hwm_mb, 1),
                "hwm_end_mb": round(s1.hwm_mb, 1), "objects_start": self.objects_start,
                "objects_end": self.objects_end, "blocks_start": s0.blocks, "blocks_end": s1.blocks,
                "growth_after_first_quarter": self.growth_after(0.25),
                "samples": [(s.action, round(s.seconds, 2), round(s.rss_mb, 1), round(s.hwm_mb, 1), s.blocks,
                             s.modules) for s in self.samples],
                "warmup_s": round(self.warmup_s, 2),
                "jobs": {"ok": self.jobs_ok, "cancelled": self.jobs_cancelled, "failed": self.jobs_failed},
                "unexpected_errors": self.unexpected_errors, "exceptions": self.exceptions,
                "final_render_ok": self.final_render_ok, "final_render_s": self.final_render_s,
                "refcounts": {"none": [s0.none_refs, s1.none_refs], "true": [s0.true_refs, s1.true_refs]}}


class SoakError(AssertionError):
    """The application stopped responding during the soak."""


# ------------------------------------------------------------------------------ event loop

def process(ms: float = 0.0) -> None:
    """Run the Qt event loop for about ``ms`` milliseconds (at least once)."""
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + ms / 1000.0
    while True:
        QApplication.processEvents()
        if time.monotonic() >= end:
            return
        time.sleep(0.002)


def wait_until(pred: Callable[[], bool], timeout_s: float = 120.0, what: str = "the window") -> None:
    end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > end:
            raise SoakError(f"{what} did not become ready within {timeout_s:.0f} s")
        process(5)


def wait_idle(w, timeout_s: float = 120.0) -> None:
    wait_until(lambda: w.idle, timeout_s, "the window (jobs and previews)")


def run_job_sync(w, handle, timeout_s: float = 120.0):
    got = {}

    def seen(res):
        if res.id == handle.id:
            got["res"] = res

    w.jobDone.connect(seen)
    try:
        wait_until(lambda: "res" in got, timeout_s, f"job {type(handle.job).__name__}")
    finally:
        w.jobDone.disconnect(seen)
    return got["res"]


# ------------------------------------------------------------------------------ files

def prepare_files(w, folder) -> Dict[str, object]:
    """A good direction file for the window's model (a small PCA made and exported through
    the window itself) and a set of bad ones (empty, truncated, random bytes, NaN, wrong
    shape, another model, an image, a folder, a missing path)."""
    from safetensors.numpy import load_file, save_file

    from hspace_studio.gui import jobs as J

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    res = run_job_sync(w, w.run_discovery(J.DiscoverPCA(samples=4, k=3, steps=w.source_panel.steps.value(),
                                                         eta=1.0, seed=1, solver="auto")))
    if not res.ok:
        raise SoakError(f"could not make a direction file: {res.error}")
    good = folder / "good.safetensors"
    res = run_job_sync(w, w.export_directions(res.value[0].set_id, str(good)))
    if not res.ok:
        raise SoakError(f"could not export a direction file: {res.error}")
    w.library.remove([(s.set_id, None) for s in list(w.library.sets)])
    wait_idle(w)
    blob = good.read_bytes()
    from safetensors import safe_open

    with safe_open(str(good), framework="numpy") as f:
        meta = f.metadata()
    t = load_file(str(good))
    bad: List[Path] = []

    def put(name, data: Optional[bytes] = None, tensors=None, metadata=None):
        p = folder / f"{BAD_PREFIX}{name}"
        if tensors is not None:
            save_file(tensors, str(p), metadata=metadata or meta)
        elif data is not None:
            p.write_bytes(data)
        bad.append(p)

    rng = np.random.default_rng(0)
    put("empty.safetensors", b"")
    put("truncated.safetensors", blob[: len(blob) // 2])
    put("random.safetensors", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    nan = dict(t)
    nan["delta_h"] = t["delta_h"].copy()
    nan["delta_h"].flat[::7] = np.nan
    put("nan.safetensors", tensors=nan)
    put("shape.safetensors", tensors={"delta_h": t["delta_h"][:, :, :, :1], "timesteps": t["timesteps"]})
    put("model.safetensors", tensors=t, metadata=dict(meta, fingerprint="0123456789abcdef"))
    put("image.safetensors", b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / f"{BAD_PREFIX}folder.safetensors").mkdir(exist_ok=True)
    bad.append(folder / f"{BAD_PREFIX}folder.safetensors")
    bad.append(folder / f"{BAD_PREFIX}missing.safetensors")
    return {"good": good, "bad": bad, "session": folder / "soak-session.json"}


# ------------------------------------------------------------------------------ the soak

class Soak:
    """One scripted session. ``weights`` chooses how often each action comes."""

    WEIGHTS = {
        "slider": 14, "burst": 6, "stroke": 8, "undo": 5, "redo": 3, "mask": 2,
        "pca": 3, "jacobian": 3, "import_good": 4, "import_bad": 4, "remove_set": 2,
        "seed": 4, "view": 4, "zoom": 2, "select": 3, "window": 2, "session": 2, "wait": 3,
    }

    def __init__(self, w, rng: random.Random, files: dict, max_sets: int = 4,
                 log: Optional[Callable[[str], None]] = None, weights: Optional[dict] = None) -> None:
        self.w = w
        self.rng = rng
        self.files = files
        self.max_sets = max_sets
        self.log = log
        self.weights = dict(weights or self.WEIGHTS)
        self.stats = SoakStats()
        self._bad_names = [Path(p).name for p in files["bad"]]

    # -- helpers ---------------------------------------------------------------------
    def _rows(self):
        return [r for r in self.w.slider_rows() if r.slider.isEnabled()]

    def _timesteps(self) -> List[int]:
        t = self.w.traj_info
        return list(t.timesteps) if t is not None else []

    def _throttle(self) -> None:
        """Like a person who waits when the app is visibly busy: never more than a few
        jobs queued."""
        if len(self.w._handles) > 2:
            wait_until(lambda: len(self.w._handles) <= 1, 180, "the job queue")

    def _submit_maybe_cancel(self, handle) -> None:
        if handle is None:
            return
        if self.rng.random() < 0.5:
            process(self.rng.uniform(0, 150))
            handle.cancel()
            self.stats.counts["cancel"] += 1

    # -- actions ---------------------------------------------------------------------
    def slider(self) -> None:
        rows = self._rows()
        if not rows:
            return self.activate()
        row = self.rng.choice(rows)
        row.slider.setValue(self.rng.randint(row.slider.minimum(), row.slider.maximum()))
        process(self.rng.uniform(0, 30))

    def burst(self) -> None:
        rows = self._rows()
        if not rows:
            return self.activate()
        row = self.rng.choice(rows)
        v = row.slider.value()
        for _ in range(self.rng.randint(5, 30)):
            v = max(row.slider.minimum(), min(row.slider.maximum(), v + self.rng.randint(-120, 120)))
            row.slider.setValue(v)
            process(self.rng.uniform(0, 8))

    def activate(self) -> None:
        lib = self.w.library
        if not lib.sets:
            return self.import_good()
        s = self.rng.choice(lib.sets)
        if s.directions:
            d = self.rng.choice(s.directions)
            lib.set_active((s.set_id, d.index), not d.active or self.rng.random() < 0.7)

    def stroke(self) -> None:
        from PySide6.QtCore import QPointF, Qt
        from PySide6.QtTest import QTest

        c = self.w.canvas
        size = c.image_size()
        if size is None:
            return
        W, H = size
        if self.rng.random() < 0.3:
            self.w.brush.size_box.setValue(self.rng.uniform(0.5, max(1.0, W / 6)))
        pts = []
        x, y = self.rng.uniform(0, W), self.rng.uniform(0, H)
        for _ in range(self.rng.randint(2, 12)):
            x = min(W - 0.01, max(0.0, x + self.rng.uniform(-W / 5, W / 5)))
            y = min(H - 0.01, max(0.0, y + self.rng.uniform(-H / 5, H / 5)))
            p = c.image_to_widget(QPointF(x, y))
            if p is not None:
                pts.append(p.toPoint())
        if len(pts) < 2:
            return
        button = Qt.MouseButton.LeftButton if self.rng.random() < 0.75 else Qt.MouseButton.RightButton
        QTest.mousePress(c, button, Qt.KeyboardModifier.NoModifier, pts[0])
        for p in pts[1:]:
            QTest.mouseMove(c, p)
        QTest.mouseRelease(c, button, Qt.KeyboardModifier.NoModifier, pts[-1])

    def undo(self) -> None:
        self.w.act["undo"].trigger()

    def redo(self) -> None:
        self.w.act["redo"].trigger()

    def mask(self) -> None:
        op = self.rng.choice(["clear", "invert"])
        getattr(self.w.mask, op)()

    def pca(self) -> None:
        from hspace_studio.gui import jobs as J

        self._throttle()
        steps = self.w.source_panel.steps.value()
        job = J.DiscoverPCA(samples=self.rng.randint(3, 6), k=self.rng.randint(1, 3), steps=steps, eta=1.0,
                            seed=self.rng.randint(0, 1000), mode=self.rng.choice(["per-step", "global"]),
                            solver=self.rng.choice(["auto", "incremental"]))
        self._submit_maybe_cancel(self.w.run_discovery(job))

    def jacobian(self) -> None:
        from hspace_studio.gui import jobs as J

        self._throttle()
        T = len(self._timesteps())
        if T == 0:
            return
        mask = None
        if self.rng.random() < 0.4 and self.w.mask.array.any():
            mask = self.w.mask.array.copy()
        job = J.DiscoverJacobian(k=self.rng.randint(1, 2), steps=tuple(sorted(self.rng.sample(range(T), 1))),
                                 mask=mask, iterations=self.rng.randint(2, 6))
        self._submit_maybe_cancel(self.w.run_discovery(job))

    def import_good(self) -> None:
        self._throttle()
        self.w.import_directions([self.files["good"]])

    def import_bad(self) -> None:
        self._throttle()
        path = self.rng.choice(self.files["bad"])
        res = run_job_sync(self.w, self.w.import_directions([path]))
        if res.ok:
            self.stats.unexpected_errors.append(f"bad file {Path(path).name} was accepted")

    def remove_set(self) -> None:
        lib = self.w.library
        if lib.sets:
            s = self.rng.choice(lib.sets)
            if s.directions and self.rng.random() < 0.3:
                lib.remove([(s.set_id, self.rng.choice(s.directions).index)])
            else:
                lib.remove([(s.set_id, None)])

    def seed(self) -> None:
        self._throttle()
        self.w.source_panel.seed.setValue(self.rng.randint(0, 100_000))

    def view(self) -> None:
        r = self.rng.random()
        if r < 0.6:
            self.w.set_view(self.rng.choice(["edited", "original", "split"]))
        elif r < 0.8:
            self.w.brush.show_mask.setChecked(not self.w.brush.show_mask.isChecked())
        else:
            self.w.brush.opacity.setValue(self.rng.randint(0, 100))

    def zoom(self) -> None:
        c = self.w.canvas
        self.rng.choice([c.zoom_in, c.zoom_out, c.fit, c.actual_size])()

    def select(self) -> None:
        lib = self.w.library
        if lib.sets:
            s = self.rng.choice(lib.sets)
            lib.select(s.set_id, self.rng.choice(s.directions).index if s.directions else None)

    def window(self) -> None:
        rows = self._rows()
        ts = self._timesteps()
        if not rows or len(ts) < 2:
            return
        row = self.rng.choice(rows)
        if self.rng.random() < 0.3:
            row.set_window(None)
        else:
            a, b = sorted(self.rng.sample(range(len(ts)), 2))
            row.set_window((ts[a], ts[b]))

    def session(self) -> None:
        self._throttle()
        self.w.save_session(str(self.files["session"]))

    def wait(self) -> None:
        wait_idle(self.w, 180)

    def warm_up(self) -> None:
        """Every code path once, to the end, before measuring: the first PCA of each
        solver and mode, a masked Jacobian, an import, a strip, a session save, a
        stroke ... import libraries and fill caches once; that is not growth."""
        from hspace_studio.gui import jobs as J

        w = self.w
        steps = w.source_panel.steps.value()
        for mode in ("per-step", "global"):
            for solver in ("auto", "incremental"):  # (covariance: minutes for D = 5120)
                run_job_sync(w, w.run_discovery(J.DiscoverPCA(samples=3, k=1, steps=steps, eta=1.0, seed=0,
                                                              mode=mode, solver=solver)))
        for action in ("import_good", "activate", "slider", "burst", "stroke", "undo", "redo", "mask",
                       "select", "window", "view", "zoom", "session", "seed", "wait"):
            getattr(self, action)()
            wait_idle(w, 180)
        if not w.mask.array.any():
            w.mask.invert()
        for mask in (None, w.mask.array.copy()):
            run_job_sync(w, w.run_discovery(J.DiscoverJacobian(k=1, steps=(0,), mask=mask, iterations=2)))
        run_job_sync(w, w.import_directions([self.files["bad"][0]]))
        self.burst()
        self.remove_set()
        self._cap_library()
        wait_idle(w, 180)

    # -- bookkeeping -------------------------------------------------------------------
    def _job_done(self, res) -> None:
        if res.cancelled:
            self.stats.jobs_cancelled += 1
        elif res.ok:
            self.stats.jobs_ok += 1
        else:
            self.stats.jobs_failed += 1

    def _cap_library(self) -> None:
        lib = self.w.library
        while len(lib.sets) > self.max_sets:
            lib.remove([(lib.sets[0].set_id, None)])

    def _sample(self, i: int, t0: float) -> None:
        hwm = memory_mb().get("hwm", 0.0)  # the peak before trimming
        blocks = python_blocks()
        trim_heap()
        m = memory_mb()
        self.stats.samples.append(Sample(i, time.perf_counter() - t0, m.get("rss", 0.0), hwm, blocks,
                                         len(sys.modules), sys.getrefcount(None), sys.getrefcount(True)))

    def run(self, actions: int, sample_every: int = 10, trace: bool = False,
            warm_up: bool = True) -> SoakStats:
        import tracemalloc

        w = self.w
        names = sorted(self.weights)
        weights = [self.weights[n] for n in names]
        errors_seen = len(w.messages.history)
        previous_hook = sys.excepthook

        def hook(etype, value, tb):
            self.stats.exceptions.append(f"{etype.__name__}: {str(value).splitlines()[0] if str(value) else ''}")
            previous_hook(etype, value, tb)

        sys.excepthook = hook
        w.jobDone.connect(self._job_done)
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            wait_idle(w)
            t0 = time.perf_counter()
            if warm_up:
                self.warm_up()
            self.stats.warmup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            process(50)
            self.stats.objects_start = python_objects()
            self._sample(0, t0)
            for i in range(1, actions + 1):
                name = self.rng.choices(names, weights)[0]
                self.stats.counts[name] += 1
                if self.log:
                    self.log(f"{i:4d} {name}")
                getattr(self, name)()
                self._cap_library()
                process(1)
                self.stats.actions = i
                if i % sample_every == 0 or i == actions:
                    if i == actions:
                        wait_idle(w, 180)
                    self._sample(i, t0)
            self._final_edit()
            wait_idle(w)
            process(50)
            self.stats.objects_end = python_objects()
            self._sample(actions, t0)
        finally:
            self.stats.wall_s = time.perf_counter() - t0
            sys.excepthook = previous_hook
            w.jobDone.disconnect(self._job_done)
            if trace:
                cur, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                self.stats.traced_mb = (cur / 2 ** 20, peak / 2 ** 20)
        for _, level, text in w.messages.history[errors_seen:]:
            if level != "error":
                continue
            if any(n in text for n in self._bad_names):
                self.stats.expected_errors += 1
            else:
                self.stats.unexpected_errors.append(text)
        # the sets the library shows, and those an undo step can bring back (the worker keeps both)
        self.stats.library_sets = len({s.set_id for s in w.library.sets} | w.history.set_ids())
        self.stats.worker_sets = len(w.worker.state.sets) if hasattr(w.worker, "state") else -1
        self.stats.undo_steps = w.mask.undo_stack.count()
        return self.stats

    def _final_edit(self) -> None:
        """The app is responsive at the end: one more edit renders a new image."""
        w = self.w
        wait_idle(w, 180)
        if not self._rows():
            self.import_good()
            wait_idle(w, 180)
            lib = w.library
            lib.set_active((lib.sets[-1].set_id, lib.sets[-1].directions[0].index), True)
            wait_idle(w, 180)
        row = self._rows()[0]
        before = w.canvas.edited_array().copy()
        shown = w.previews_shown
        t = time.perf_counter()
        row.slider.setValue(row.slider.maximum() if row.slider.value() < 0 else row.slider.minimum())
        wait_idle(w, 180)
        self.stats.final_render_s = time.perf_counter() - t
        self.stats.final_render_ok = (w.previews_shown > shown and w.shown_preview_id == w.preview_id
                                      and not np.array_equal(w.canvas.edited_array(), before))


def run_soak(window, actions: int, rng: random.Random, files: Optional[dict] = None, *,
             workdir=None, max_sets: int = 4, sample_every: int = 10, trace: bool = False,
             log: Optional[Callable[[str], None]] = None, weights: Optional[dict] = None,
             warm_up: bool = True) -> SoakStats:
    """Run ``actions`` random actions on ``window`` (a shown ``MainWindow`` with a model
    and an image). ``files`` as :func:`prepare_files` makes them (made in ``workdir``
    when not given). Raises :class:`SoakError` if the app stops answering."""
    if files is None:
        if workdir is None:
            raise ValueError("give files or a workdir to make them in")
        files = prepare_files(window, workdir)
    soak = Soak(window, rng, files, max_sets=max_sets, log=log, weights=weights)
    return soak.run(actions, sample_every=sample_every, trace=trace, warm_up=warm_up)


# ------------------------------------------------------------------------------ command line

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--actions", type=int, default=400)
    ap.add_argument("--model", default="default",
                    help="'default' (the embedded model), 'tiny' (a tiny UNet built here) or a folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random action script")
    ap.add_argument("--steps", type=int, default=10, help="diffusion steps of the image")
    ap.add_argument("--sample-every", type=int, default=20)
    ap.add_argument("--trace", action="store_true", help="also run tracemalloc (slower)")
    ap.add_argument("--json", help="write the figures here as JSON")
    ap.add_argument("--verbose", action="store_true", help="print every action")
    args = ap.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile

    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    app = QApplication.instance() or QApplication(["soak"])
    from hspace_studio.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="hspace-soak-") as tmp:
        tmp = Path(tmp)
        model = args.model
        if model == "tiny":
            from tests.tiny_models import save_pixel_model

            model = str(save_pixel_model(tmp / "tiny-model", "a"))
        settings = QSettings(str(tmp / "soak.ini"), QSettings.Format.IniFormat)
        t0 = time.perf_counter()
        w = MainWindow(model, settings=settings, state_dir=tmp / "state", autosave_s=0, seed=3,
                       steps=args.steps)
        w.resize(1200, 800)
        w.show()
        try:
            wait_until(lambda: w.traj_info is not None or (w.messages.errors and w.model_info is None), 600,
                       "the model")
            if w.traj_info is None:
                print(f"error: {w.messages.last}", file=sys.stderr)
                return 1
            wait_idle(w, 600)
            print(f"model {args.model}: {w.model_info.description} (ready in {time.perf_counter() - t0:.1f} s)")
            files = prepare_files(w, tmp / "files")
            stats = run_soak(w, args.actions, random.Random(args.seed), files,
                             sample_every=args.sample_every, trace=args.trace,
                             log=print if args.verbose else None)
        finally:
            w.shutdown()
            app.processEvents()
    print(stats.summary())
    for s in stats.samples:
        print(f"  after {s.action:4d} actions, {s.seconds:7.1f} s: RSS {s.rss_mb:7.1f} MiB, "
              f"peak {s.hwm_mb:7.1f} MiB, {s.blocks} allocator blocks, {s.modules} modules, "
              f"refcount(None) {s.none_refs}, refcount(True) {s.true_refs}")
    if args.json:
        Path(args.json).write_text(json.dumps(stats.to_json(), indent=1))
    ok = not stats.exceptions and not stats.unexpected_errors and stats.final_render_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
