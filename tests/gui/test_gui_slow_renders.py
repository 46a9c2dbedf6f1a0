"""A render that takes a while (issue 42's real-size goal), on the tiny model slowed down to a
known time per network call: its steps are shown and it can be cancelled; the slider's
strip shows how far it is prepared."""
import time

import numpy as np
import pytest

from tests.gui.conftest import dir_file, reference, win  # noqa: F401
from tests.gui.test_gui_app import TIMEOUT, image_of, import_and_activate, wait_idle


@pytest.fixture
def slow(win):  # noqa: F811
    """Every network call of the worker's model takes ``seconds`` longer."""
    hooks = []

    def make(seconds):
        net = win.worker.state.model.net
        hooks.append(net.register_forward_pre_hook(lambda _m, _a: time.sleep(seconds)))

    yield make
    for h in hooks:
        h.remove()


def test_a_slow_render_shows_its_steps_and_esc_cancels_it(qtbot, win, dir_file, slow):  # noqa: F811
    s = import_and_activate(qtbot, win, dir_file, rows=())
    before = image_of(win)
    exact_ids = []
    win.previewShown.connect(exact_ids.append)
    slow(0.15)
    # not the selected direction (the library's strip of that one is made already)
    assert win.selected_strip_key == (s.set_id, 0)
    win.library.set_active((s.set_id, 2), True)  # its strip starts in the background
    win.slider_rows()[0].slider.setValue(800)  # before the strip is ready: each step is shown
    moved = win.preview_id
    qtbot.waitUntil(lambda: "preview: step" in win.canvas.info_text, timeout=TIMEOUT)
    assert win.rendering is not None
    assert "rendering the edit: step" in win.preview_label.text() and "Esc" in win.preview_label.text()
    assert not win.cancel_button.isHidden() and win.cancel_button.isEnabled()
    assert win.act["cancel"].isEnabled()
    assert win.canvas._edited_interim
    win.act["cancel"].trigger()
    qtbot.waitUntil(lambda: win.worker.renders_superseded > 0, timeout=TIMEOUT)
    qtbot.wait(200)
    assert moved not in exact_ids  # abandoned, not finished
    assert np.array_equal(image_of(win), before)  # the last exact image again, labelled
    assert "render cancelled" in win.canvas.info_text
    assert win.cancel_button.isHidden() and not win.act["cancel"].isEnabled()
    wait_idle(qtbot, win)  # the strip goes on in the background; the canvas stays
    assert np.array_equal(image_of(win), before) and "render cancelled" in win.canvas.info_text
    # the next move renders again
    win.slider_rows()[0].slider.setValue(-500)
    wait_idle(qtbot, win)
    assert not win.canvas._edited_interim and not np.array_equal(image_of(win), before)


def test_the_slider_row_shows_how_far_its_preview_is_prepared(qtbot, win, dir_file, slow):  # noqa: F811
    s = import_and_activate(qtbot, win, dir_file, rows=())
    slow(0.05)
    notes = []
    win.library.set_active((s.set_id, 1), True)  # its strip (the slider's instant preview) starts
    row = win.sliders.row((s.set_id, 1))

    def note_seen():
        if not row.preview_note.isHidden():
            notes.append(row.preview_note.text())
        return bool(notes)

    qtbot.waitUntil(note_seen, timeout=TIMEOUT)
    assert notes[0].startswith("preview ") and notes[0].endswith("%")
    qtbot.waitUntil(lambda: win.has_strip((s.set_id, 1)), timeout=TIMEOUT)
    assert row.preview_note.isHidden()


def test_a_render_can_be_cancelled_before_its_first_step_ends(qtbot, win, dir_file, slow):  # noqa: F811
    """On a model whose network call takes longer than half a second, Cancel is offered
    before the first step is reported, and stops the render at the end of that step."""
    import_and_activate(qtbot, win, dir_file)
    before = image_of(win)
    slow(1.5)
    win.slider_rows()[0].slider.setValue(-700)
    moved = win.preview_id
    qtbot.waitUntil(lambda: win.rendering is not None, timeout=TIMEOUT)
    assert win.rendering[0] == 0 and "rendering the edit: first step" in win.preview_label.text()
    assert not win.cancel_button.isHidden() and win.act["cancel"].isEnabled()
    exact_ids = []
    win.previewShown.connect(exact_ids.append)
    win.cancel_job()
    qtbot.waitUntil(lambda: win.worker.renders_superseded > 0, timeout=TIMEOUT)
    assert moved not in exact_ids and np.array_equal(image_of(win), before)


def test_the_ticked_sliders_strip_comes_before_the_librarys(qtbot, win, dir_file, slow):  # noqa: F811
    """The strip that makes a slider's instant preview is made before the library's thumbnails
    of the selected direction; ticking a direction at scale 0 renders nothing."""
    s = import_and_activate(qtbot, win, dir_file, rows=())
    slow(0.05)
    win.library.select(s.set_id, 1)  # the library asks for direction 1's thumbnails
    assert win.strip_making == (s.set_id, 1)
    asked = win.preview_id
    win.library.set_active((s.set_id, 2), True)
    assert win.strip_making == (s.set_id, 2)  # the slider's own strip first
    assert win.preview_id == asked  # at scale 0 the image does not change: no render
    qtbot.waitUntil(lambda: win.has_strip((s.set_id, 2)) and win.has_strip((s.set_id, 1)), timeout=TIMEOUT)
    wait_idle(qtbot, win)
