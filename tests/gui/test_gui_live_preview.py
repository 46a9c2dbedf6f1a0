"""Sliders that answer at once (issue 32), headless on the tiny model.

While a slider is dragged the canvas shows, at once, a cross-fade of the moved direction's
strip images (rendered with the other active edits) labelled as a preview; the exact image
replaces it when it arrives and equals a direct engine edit.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QStyle, QStyleOptionSlider

from hspace_studio.engine.directions import DirectionSet
from hspace_studio.engine.sampler import EditSpec, edit

pytest.importorskip("pytestqt")

from tests.gui.test_gui_app import import_and_activate, to_u8, wait_idle  # noqa: E402



def direct_edit(model, traj, ds_path, items):
    """The engine's own image of ``items`` [(index, scale), ...] (no window)."""
    ds = DirectionSet.load(ds_path).for_timesteps(traj.timesteps)
    return to_u8(edit(model, traj, [EditSpec(ds.steps_delta(i), s) for i, s in items if s != 0]))


class CanvasSpy:
    """Records every image the window puts on the canvas: ("preview", scale of the moved
    direction) for an interim image, ("exact", scale of its request) for a final one."""

    def __init__(self, w, monkeypatch, key):
        self.events = []
        orig = w.canvas.set_edited

        def spy(a, interim=False, text=""):
            if interim:
                d = w.library.direction(key)[1]
                self.events.append(("preview", float(d.scale), text, time.perf_counter()))
            else:
                req = w._preview_req
                scale = next((e.scale for e in req.edits if (e.set_id, e.index) == key), 0.0) if req else None
                self.events.append(("exact", scale, text, time.perf_counter()))
            orig(a, interim, text)

        monkeypatch.setattr(w.canvas, "set_edited", spy)


def handle_pos(slider):
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    r = slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle,
                                      slider)
    return r.center()


def test_drag_answers_at_once_and_ends_on_the_exact_edit(qtbot, win, dir_file, tiny_model, reference, monkeypatch):
    s = import_and_activate(qtbot, win, dir_file, rows=(0, 1))
    key, other = (s.set_id, 0), (s.set_id, 1)
    rows = win.slider_rows()
    rows[1].slider.setValue(-400)  # another active edit: the strip must include it
    win.library.select(*key)
    wait_idle(qtbot, win)  # the strip of the moved direction, with the other edit, is ready
    slider = rows[0].slider
    spy = CanvasSpy(win, monkeypatch, key)

    # a real mouse drag across the slider: a move every 30 ms for about 3 s
    start = handle_pos(slider)
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=start)
    assert slider.isSliderDown()
    width = slider.width()
    moves, changes, value = 100, 0, slider.value()
    for i in range(1, moves + 1):
        x = int(start.x() + (width * 0.45) * np.sin(i / moves * 2.5 * np.pi))
        qtbot.mouseMove(slider, QPoint(x, start.y()))
        changes += slider.value() != value
        value = slider.value()
        qtbot.wait(30)
    during = list(spy.events)
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, pos=QPoint(x, start.y()))
    wait_idle(qtbot, win)
    assert changes > 60, "the drag did not move the slider"

    # the canvas answered many times during the drag, with previews labelled as such
    previews = [e for e in during if e[0] == "preview"]
    assert len(during) >= 30, len(during)
    assert len(previews) >= 30, len(previews)
    assert all("preview" in e[2] for e in previews)
    # a preview came before each exact image, for the same slider state
    last_preview = None
    for kind, scale, _text, _t in spy.events:
        if kind == "preview":
            last_preview = scale
        else:
            assert last_preview is not None and scale == pytest.approx(last_preview), spy.events
    # and the last image is the exact one, equal to a direct engine edit
    assert spy.events[-1][0] == "exact"
    final = rows[0].scale()
    expected = direct_edit(tiny_model, reference, dir_file, [(0, final), (1, rows[1].scale())])
    assert np.array_equal(win.canvas.edited_array(), expected)
    assert win.canvas.info_text == ""
    # the status bar has both latencies
    text = win.preview_label.text()
    assert "preview" in text and "exact" in text and "ms" in text, text
    assert win.last_preview_latency is not None and win.last_exact_latency is not None
    assert win.last_preview_latency < win.last_exact_latency


def test_strip_includes_other_edits_and_goes_stale_with_them(qtbot, win, dir_file, tiny_model, reference,
                                                             monkeypatch):
    s = import_and_activate(qtbot, win, dir_file, rows=(0, 1))
    key = (s.set_id, 0)
    rows = win.slider_rows()
    rows[1].slider.setValue(600)
    win.library.select(*key)
    wait_idle(qtbot, win)
    strip = win.library.strip
    assert len(strip.images) == 5
    # the strip's last node is the edit at +R with the other active edit in it (batched
    # chains may round a pixel differently)
    R = rows[0].range()
    want = direct_edit(tiny_model, reference, dir_file, [(0, strip.scales[-1]), (1, rows[1].scale())])
    assert strip.scales[-1] == pytest.approx(R)
    diff = np.abs(strip.images[-1].astype(int) - want.astype(int))
    assert diff.max() <= 2, diff.max()

    # the other edit moves: the old strip no longer fits, so the moved slider shows no preview
    spy = CanvasSpy(win, monkeypatch, key)
    rows[1].slider.setValue(-300)
    rows[0].slider.setValue(250)
    wait_idle(qtbot, win)
    assert [e[0] for e in spy.events if e[1] == pytest.approx(rows[0].scale())] == ["exact"], spy.events
    # once the new strip is in, moves preview again, from the strip with the new other edit
    spy.events.clear()
    rows[0].slider.setValue(500)
    assert spy.events and spy.events[0][0] == "preview"
    wait_idle(qtbot, win)
    want = direct_edit(tiny_model, reference, dir_file, [(0, rows[0].scale()), (1, rows[1].scale())])
    assert np.array_equal(win.canvas.edited_array(), want)


def test_a_strip_made_under_other_edits_still_previews_from_the_last_exact_image(qtbot, win, dir_file, tiny_model,
                                                                                reference, monkeypatch):
    """After another slider moved (and its exact image came), the first move of a direction
    whose strip has the old other edit shows at once the exact image plus the strip's change,
    labelled approximate; the exact image still replaces it."""
    s = import_and_activate(qtbot, win, dir_file, rows=(0, 1))
    key, other = (s.set_id, 0), (s.set_id, 1)
    rows = win.slider_rows()
    win.library.select(*key)
    wait_idle(qtbot, win)  # key's strip, with the other edit at 0
    win.library.select(*other)
    rows[1].slider.setValue(500)
    wait_idle(qtbot, win)  # the exact image with the other edit; key's strip is now stale
    assert win._nodes[key].context != win._strip_context(key)[0]
    before = win.canvas.edited_array().copy()
    spy = CanvasSpy(win, monkeypatch, key)
    rows[0].slider.setValue(700)
    assert spy.events and spy.events[0][0] == "preview", spy.events
    assert spy.events[0][2] == "preview (approximate)"
    shown = win.canvas.edited_array().copy()
    wait_idle(qtbot, win)
    assert spy.events[-1][0] == "exact"
    want = direct_edit(tiny_model, reference, dir_file, [(0, rows[0].scale()), (1, rows[1].scale())])
    assert np.array_equal(win.canvas.edited_array(), want)
    # the preview moved toward the exact image: closer to it than the image before the move
    err = lambda a: np.abs(a.astype(int) - want.astype(int)).mean()  # noqa: E731
    assert err(shown) < err(before), (err(shown), err(before))
    assert win.moved_previews_shown == 1


def test_node_images_moved_adds_the_strips_change():
    from hspace_studio.gui.node_preview import NodeImages

    n = NodeImages.from_strip((0.0, 1.0), [np.full((1, 1, 3), 100, np.uint8), np.full((1, 1, 3), 160, np.uint8)])
    base = np.array([[[10, 250, 128]]], np.uint8)
    assert n.moved(base, 0.0, 0.5).tolist() == [[[40, 255, 158]]]  # +30, clipped at 255
    assert n.moved(base, 1.0, 0.0).tolist() == [[[0, 190, 68]]]  # -60, clipped at 0


def test_node_images_cross_fade():
    from hspace_studio.gui.node_preview import NodeImages

    imgs = [np.full((2, 2, 3), v, np.uint8) for v in (200, 0, 100)]
    n = NodeImages.from_strip((1.0, -1.0, 0.0), imgs)  # sorted by scale
    assert list(n.scales) == [-1.0, 0.0, 1.0]
    assert np.array_equal(n.pixels(-1.0), imgs[1]) and np.array_equal(n.pixels(1.0), imgs[0])
    assert n.pixels(0.5)[0, 0, 0] == 150 and n.pixels(-0.25)[0, 0, 0] == 75
    assert n.covers(0.99) and not n.covers(1.01) and not n.covers(-1.5)
    with pytest.raises(ValueError):
        NodeImages.from_strip((0.0, 0.0), imgs[:2])
