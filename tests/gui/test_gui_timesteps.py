"""The source panel's timestep spacing: the image follows the engine's power-spaced chain,
exports replay through the CLI and sessions keep the spacing."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from hspace_studio.core.errors import FileFormatError  # noqa: E402
from hspace_studio.core.session import check_session  # noqa: E402
from hspace_studio.engine.model import load_model  # noqa: E402
from hspace_studio.engine.sampler import sample  # noqa: E402
from hspace_studio.engine.timesteps import power_timesteps  # noqa: E402
from tests.gui.test_gui_app import (SEED, TIMEOUT, export_and_replay, image_of, make_window, run_job,  # noqa: E402
                                to_u8, wait_idle)


def _reloaded(qtbot, w, spacing):
    qtbot.waitUntil(lambda: w.model_info is not None and w.model_info.timesteps == spacing
                    and w.traj_info is not None, timeout=TIMEOUT)
    wait_idle(qtbot, w)


def test_spacing_choice_samples_exports_and_keeps_it_in_sessions(qtbot, tmp_path, tiny_model_b_dir):
    src = str(tiny_model_b_dir)
    plain = to_u8(sample(load_model(src, device="cpu"), [SEED], steps=10, eta=1.0)[0].x_0)
    spaced = to_u8(sample(load_model(src, device="cpu", timesteps="power:0.8"), [SEED], steps=10,
                          eta=1.0)[0].x_0)
    assert not np.array_equal(plain, spaced)
    w = make_window(qtbot, src, tmp_path)
    try:
        sp = w.source_panel
        assert sp.timesteps() is None and w.model_info.timesteps is None
        assert np.array_equal(image_of(w), plain)
        sp.spacing.setCurrentIndex(sp.spacing.findData("power:0.8"))
        _reloaded(qtbot, w, "power:0.8")
        assert "timesteps power:0.8" in w.model_info.description
        assert list(w.traj_info.timesteps) == power_timesteps(1000, 10, 0.8).tolist()
        assert np.array_equal(image_of(w), spaced)

        assert export_and_replay(qtbot, w, tmp_path, "spaced.png")["timesteps"] == "power:0.8"

        path = tmp_path / "spaced.json"
        res = run_job(qtbot, w, w.save_session(str(path)))
        assert res.ok, res.error
    finally:
        w.shutdown()

    w2 = make_window(qtbot, src, tmp_path, name="w2")
    try:
        assert w2.source_panel.timesteps() is None
        res = run_job(qtbot, w2, w2.open_session(str(path)))
        assert res.ok, res.error
        _reloaded(qtbot, w2, "power:0.8")
        assert w2.source_panel.timesteps() == "power:0.8"
        assert np.array_equal(image_of(w2), spaced)
        # back to the scheduler's own spacing: the plain image again
        w2.source_panel.spacing.setCurrentIndex(w2.source_panel.spacing.findData(None))
        _reloaded(qtbot, w2, None)
        assert np.array_equal(image_of(w2), plain)
    finally:
        w2.shutdown()


def test_sessions_with_a_bad_spacing_are_refused():
    check_session({"model": {"source": "default", "timesteps": "power:0.8"}}, {})
    for bad in ("power:nan", "power", 3):
        with pytest.raises(FileFormatError):
            check_session({"model": {"source": "default", "timesteps": bad}}, {})


def test_a_model_that_records_its_spacing_opens_at_it(qtbot, tmp_path, tiny_model_b_dir):
    """A distilled model's folder names the spacing it was trained for (training.json): the
    window samples at it, shows it, and keeps it when asked for it by name."""
    import json
    import shutil

    src = tmp_path / "distilled"
    shutil.copytree(tiny_model_b_dir, src)
    (src / "training.json").write_text(json.dumps({"sampling_timesteps": "power:0.8"}))
    spaced = to_u8(sample(load_model(str(tiny_model_b_dir), device="cpu", timesteps="power:0.8"),
                          [SEED], steps=10, eta=1.0)[0].x_0)
    w = make_window(qtbot, src, tmp_path)
    try:
        sp = w.source_panel
        assert [sp.model.itemText(i) for i in range(2)] == ["default", "default-10step"]
        assert w.model_info.timesteps == "power:0.8" and sp.timesteps() == "power:0.8"
        assert np.array_equal(image_of(w), spaced)
        # another spacing, chosen, wins over the recorded one; 'model's own' brings it back
        sp.set_timesteps("power:1.2")  # as a session would add it
        sp.spacing.setCurrentIndex(sp.spacing.findData("power:0.8"))
        sp.spacing.setCurrentIndex(sp.spacing.findData("power:1.2"))
        _reloaded(qtbot, w, "power:1.2")
        assert list(w.traj_info.timesteps) == power_timesteps(1000, 10, 1.2).tolist()
        sp.spacing.setCurrentIndex(sp.spacing.findData(None))
        _reloaded(qtbot, w, "power:0.8")
        assert sp.timesteps() == "power:0.8"
        assert np.array_equal(image_of(w), spaced)
    finally:
        w.shutdown()
