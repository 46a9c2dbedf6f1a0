"""Defects a new user found in the desktop app (one test each; headless, tiny models)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.test_gui_app import TIMEOUT, make_window, run_job, wait_idle  # noqa: E402,F401


@pytest.fixture
def win(qtbot, tiny_model_dir, tmp_path):
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    yield w
    w.shutdown()


def _good_image(path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_error_bar_is_cleared_by_a_later_success(qtbot, win, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("hello")
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    assert not win.messages.isHidden() and "not a readable image" in win.messages.label.text()
    # the good image clears the error: it is about a file the user has moved on from
    assert run_job(qtbot, win, win.open_image(str(_good_image(tmp_path / "good.png")))).ok
    assert win.messages.isHidden()
    # the same after a failure followed by another kind of success (a saved session)
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    assert not win.messages.isHidden()
    assert run_job(qtbot, win, win.save_session(str(tmp_path / "s.json"))).ok
    assert win.messages.isHidden()
    # an error stays up while nothing succeeds, and the user can dismiss it
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    win.request_preview()
    wait_idle(qtbot, win)
    assert not win.messages.isHidden()
    win.messages.close_btn.click()
    assert win.messages.isHidden()
