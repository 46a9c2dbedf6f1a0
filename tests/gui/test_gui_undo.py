"""Undo and redo of slider moves and library edits (Edit menu, Ctrl+Z / Ctrl+Shift+Z), beside
the mask's own undo."""
import numpy as np

from tests.gui.conftest import dir_file, reference, win  # noqa: F401
from tests.gui.test_gui_app import image_of, import_and_activate, wait_idle


def test_a_slider_drag_is_one_undo_step_and_redo_brings_it_back(qtbot, win, dir_file):  # noqa: F811
    import_and_activate(qtbot, win, dir_file)
    plain = image_of(win)
    row = win.slider_rows()[0]
    for v in (100, 200, 300, 400):  # one drag
        row.slider.setValue(v)
    wait_idle(qtbot, win)
    dragged = image_of(win)
    assert not np.array_equal(dragged, plain)
    assert win.act["undo"].isEnabled() and "slider" in win.act["undo"].text()
    win.act["undo"].trigger()
    wait_idle(qtbot, win)
    assert win.slider_rows()[0].scale() == 0.0
    assert np.array_equal(image_of(win), plain)
    win.act["redo"].trigger()
    wait_idle(qtbot, win)
    assert abs(win.slider_rows()[0].scale() - row_scale(win, 400)) < 1e-9
    assert np.array_equal(image_of(win), dragged)


def row_scale(win, value):
    row = win.slider_rows()[0]
    return value / 1000 * row.range()


def test_undoing_a_delete_brings_the_set_back_usable(qtbot, win, dir_file):  # noqa: F811
    s = import_and_activate(qtbot, win, dir_file)
    win.slider_rows()[0].slider.setValue(600)
    wait_idle(qtbot, win)
    edited = image_of(win)
    win.library.remove([(s.set_id, None)])
    wait_idle(qtbot, win)
    assert not win.library.sets and not win.slider_rows()
    assert "delete" in win.act["undo"].text()
    win.act["undo"].trigger()
    wait_idle(qtbot, win)
    assert [x.set_id for x in win.library.sets] == [s.set_id]
    assert win.slider_rows() and win.slider_rows()[0].slider.value() == 600
    assert np.array_equal(image_of(win), edited)  # the worker kept its tensors
    win.slider_rows()[0].slider.setValue(-300)  # and it still renders
    wait_idle(qtbot, win)
    assert "failed" not in win.statusBar().currentMessage()
    assert not np.array_equal(image_of(win), edited)


def test_undo_of_a_rename_and_a_tick_and_the_mask_keeps_its_own(qtbot, win, dir_file):  # noqa: F811
    from PySide6.QtCore import QPointF

    s = import_and_activate(qtbot, win, dir_file, rows=())
    win.library.rename(s.set_id, None, "mine")
    assert win.library.sets[0].name == "mine"
    win.library.set_active((s.set_id, 1), True)
    assert len(win.slider_rows()) == 1
    win.act["undo"].trigger()  # the tick
    assert not win.slider_rows()
    win.act["undo"].trigger()  # the rename
    assert win.library.sets[0].name != "mine"
    win.act["redo"].trigger()
    assert win.library.sets[0].name == "mine"
    # a mask stroke after them: Ctrl+Z undoes the stroke
    win.mask.begin_stroke(QPointF(10, 10), erase=False)
    win.mask.move_stroke(QPointF(20, 20))
    win.mask.end_stroke()
    assert win.mask.array.any()
    win.act["undo"].trigger()
    assert not win.mask.array.any() and win.library.sets[0].name == "mine"
    wait_idle(qtbot, win)
