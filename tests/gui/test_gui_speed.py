"""View > bfloat16 arithmetic / Compile the network: the engine's speed settings from the menu."""
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.test_gui_app import import_and_activate, wait_idle  # noqa: E402


def test_bf16_from_the_menu_changes_the_image_and_is_remembered(qtbot, win, dir_file):
    s = import_and_activate(qtbot, win, dir_file, rows=(0,))
    win.slider_rows()[0].slider.setValue(600)
    wait_idle(qtbot, win)
    plain = win.canvas.edited_array().copy()
    win.act["bf16"].setChecked(True)
    wait_idle(qtbot, win)
    assert win.worker.state.models.acceleration == {"compile": False, "bf16": True, "low_memory": False}
    assert win.statusBar().currentMessage() == "Engine: bfloat16"
    assert not np.array_equal(win.canvas.edited_array(), plain)
    win._save_settings()
    assert win.settings.value("engine/bf16") in (True, "true")
    win.act["bf16"].setChecked(False)
    wait_idle(qtbot, win)
    assert win.worker.state.models.acceleration["bf16"] is False
    assert np.array_equal(win.canvas.edited_array(), plain)
    assert s is not None
