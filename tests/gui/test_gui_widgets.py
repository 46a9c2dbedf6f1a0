"""Widgets and the worker's coalescing, without a diffusion model."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

pytest.importorskip("pytestqt")

from hspace_studio.core.errors import Cancelled  # noqa: E402
from hspace_studio.gui.canvas import Canvas, array_from_qimage, qimage_from_array  # noqa: E402
from hspace_studio.app.requests import EditItem, PreviewRequest, StripRequest  # noqa: E402
from hspace_studio.gui.worker import EngineThread  # noqa: E402


def checker(n=8):
    a = np.zeros((n, n, 3), np.uint8)
    a[::2, ::2] = 255
    a[1::2, 1::2] = 255
    return a


def test_qimage_round_trip():
    a = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    assert np.array_equal(array_from_qimage(qimage_from_array(a)), a)


def test_canvas_is_crisp_at_integer_zoom(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(300, 300)
    c.show()
    c.set_original(checker())
    c.set_edited(checker())
    assert c.fit_mode and c.zoom == int(c.zoom) and c.zoom >= 30
    c.set_zoom(10)
    img = array_from_qimage(c.grab().toImage())
    r = c.panel_rects()[0][1]
    x0, y0 = int(r.left()), int(r.top())
    block = img[y0 + 1:y0 + 9, x0 + 1:x0 + 9]  # inside the first 10x10 image pixel
    assert (block == 255).all()
    block = img[y0 + 11:y0 + 19, x0 + 1:x0 + 9]  # the next one down is black, no blur
    assert (block == 0).all()


def test_canvas_mapping_zoom_and_split(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    c.show()
    c.set_original(checker(16))
    c.set_zoom(8)
    p = c.image_to_widget(QPointF(4.5, 3.5))
    q = c.widget_to_image(p)
    assert (q.x(), q.y()) == pytest.approx((4.5, 3.5))
    c.zoom_in(anchor=p)  # the point under the cursor stays put
    q = c.widget_to_image(p)
    assert c.zoom == 10 and (q.x(), q.y()) == pytest.approx((4.5, 3.5))
    c.set_view("split")
    rects = c.panel_rects()
    assert [k for k, _ in rects] == ["original", "edited"]
    right = c.image_to_widget(QPointF(2.5, 2.5), panel=1)
    q = c.widget_to_image(right)
    assert (q.x(), q.y()) == pytest.approx((2.5, 2.5))
    c.fit()
    assert c.fit_mode and c.panel_rects()[1][1].right() <= c.width()


def test_canvas_overlay_and_strokes(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(200, 200)
    c.show()
    c.set_original(np.zeros((8, 8, 3), np.uint8))
    c.set_edited(np.zeros((8, 8, 3), np.uint8))
    m = np.zeros((8, 8), bool)
    m[:4] = True
    c.set_mask(m)
    c.set_mask_opacity(1.0)
    img = array_from_qimage(c.grab().toImage())
    r = c.panel_rects()[0][1]
    top = img[int(r.top()) + 5, int(r.left()) + 5]
    bottom = img[int(r.bottom()) - 5, int(r.left()) + 5]
    assert top[0] > 200 and (bottom == 0).all()
    c.set_mask_opacity(0.0)
    img = array_from_qimage(c.grab().toImage())
    assert (img[int(r.top()) + 5, int(r.left()) + 5] == 0).all()
    got = []
    c.strokeBegin.connect(lambda p, erase: got.append(("b", round(p.x(), 1), round(p.y(), 1), erase)))
    c.strokeEnd.connect(lambda: got.append(("e",)))
    pos = c.image_to_widget(QPointF(2.5, 6.5)).toPoint()
    qtbot.mousePress(c, Qt.MouseButton.RightButton, pos=pos)
    qtbot.mouseRelease(c, Qt.MouseButton.RightButton, pos=pos)
    assert got[0][0] == "b" and got[0][3] is True and got[-1] == ("e",)
    assert got[0][1:3] == pytest.approx((2.5, 6.5), abs=0.1)


class FakeState:
    """Stands in for the engine: each render takes ``steps`` short steps."""

    def __init__(self, steps=10, dt=0.004):
        self.model = object()
        self.traj = type("T", (), {"steps": steps})()
        self.steps, self.dt = steps, dt
        self.rendered = []
        self.version = 0
        self.models = self.renderer = self.library = self  # EngineState's parts, all in one here

    def render(self, edits, cancel=None, preview=None):
        for i in range(self.steps):
            time.sleep(self.dt)
            if preview is not None:
                preview(i, self.steps, None)
            if cancel is not None:
                cancel.check()
        self.rendered.append(edits[0].scale)
        return np.full((2, 2, 3), int(edits[0].scale) % 256, np.uint8)

    def preview_pixels(self, x):
        return None

    def render_strip(self, item, scales, others, cancel=None, progress=None):
        for i in range(self.steps):
            time.sleep(self.dt)
            cancel.check()
            if progress is not None:
                progress(i + 1, self.steps)
        return [np.zeros((2, 2, 3), np.uint8) for _ in scales]

    def check_sets(self):
        return {}


def test_worker_renders_only_the_latest_request(qtbot):
    eng = EngineThread(FakeState())
    try:
        w = eng.worker
        results = []
        w.previewReady.connect(lambda r: results.append(r) if r.final else None)
        for i in range(1, 51):
            w.request_preview(PreviewRequest(i, (EditItem("s", 0, float(i)),)))
            time.sleep(0.001)
        qtbot.waitUntil(lambda: not w.busy and bool(results) and results[-1].id == 50, timeout=10000)
        qtbot.wait(50)
        assert results[-1].id == 50
        assert w.renders_completed <= 3
        assert w.state.rendered[-1] == 50.0
        assert w.renders_started - w.renders_completed == w.renders_superseded
    finally:
        eng.shutdown()


def test_strip_yields_to_previews_and_is_retried(qtbot):
    eng = EngineThread(FakeState(steps=20))
    try:
        w = eng.worker
        strips, previews = [], []
        w.stripReady.connect(strips.append)
        w.previewReady.connect(lambda r: previews.append(r) if r.final else None)
        w.request_strip(StripRequest(1, EditItem("s", 0, 1.0), (-1.0, 0.0, 1.0)))
        time.sleep(0.02)
        w.request_preview(PreviewRequest(1, (EditItem("s", 0, 3.0),)))
        qtbot.waitUntil(lambda: len(strips) == 1 and len(previews) == 1, timeout=10000)
        assert len(strips[0].images) == 3
    finally:
        eng.shutdown()


def test_job_cancel_and_coalescing(qtbot):
    from hspace_studio.gui.jobs import Sample, Sleep

    eng = EngineThread(FakeState())
    try:
        w = eng.worker
        done = []
        w.jobFinished.connect(done.append)
        h = w.submit(Sleep(steps=500, seconds_per_step=0.005))
        a = w.submit(Sample(seed=1))
        b = w.submit(Sample(seed=2))  # replaces the queued seed-1 job
        time.sleep(0.05)
        h.cancel()
        qtbot.waitUntil(lambda: any(r.id == h.id for r in done), timeout=5000)
        res = [r for r in done if r.id == h.id][0]
        assert res.cancelled and res.steps_after_cancel <= 1
        qtbot.waitUntil(lambda: any(r.id == a.id for r in done), timeout=5000)
        ra = [r for r in done if r.id == a.id][0]
        assert ra.cancelled and ra.error == "replaced by a newer request"
        qtbot.waitUntil(lambda: any(r.id == b.id for r in done), timeout=5000)
        assert not [r for r in done if r.id == b.id][0].ok  # FakeState has no sampler
    finally:
        eng.shutdown()


def test_cancelled_is_an_hspace_error():
    from hspace_studio.core.errors import HSpaceError

    assert issubclass(Cancelled, HSpaceError)
