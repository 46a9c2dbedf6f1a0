"""The source panel's 'guided' switch: the default model steered by its shipped guide, in the
app, with directions kept, exports that replay through the CLI and sessions that keep it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from hspace_studio.engine.directions import DirectionSet  # noqa: E402
from hspace_studio.engine.model import load_model  # noqa: E402
from hspace_studio.engine.sampler import sample  # noqa: E402
from tests.gui.test_gui_app import (SEED, TIMEOUT, direct_edit, export_and_replay, image_of,  # noqa: E402
                                import_and_activate, make_window, run_job, to_u8, wait_idle)


@pytest.fixture(scope="module")
def models():
    return load_model("default", device="cpu"), load_model("default", device="cpu", guide="default",
                                                            guide_weight=3.0)


@pytest.fixture
def default_dirs(tmp_path, models):
    """A direction file made for the default model without its guide."""
    m = models[0]
    ref = sample(m, [SEED], steps=10, eta=1.0)[0]
    g = torch.Generator().manual_seed(0)
    ds = DirectionSet(delta_h=torch.randn((1, *ref.hs.shape), generator=g) * ref.hs.std() * 0.3,
                      timesteps=ref.timesteps.clone(), fingerprint=m.weights_fingerprint, h_space="after",
                      method="pca", labels=["pc 0"], values=[[1.0] * ref.hs.shape[0]])
    p = tmp_path / "default-dirs.safetensors"
    ds.save(p)
    return p


def _reloaded(qtbot, w, guide):
    qtbot.waitUntil(lambda: w.model_info is not None and w.model_info.guide == guide and w.traj_info is not None,
                    timeout=TIMEOUT)
    wait_idle(qtbot, w)


def test_guided_switch_samples_edits_exports_and_keeps_it_in_sessions(qtbot, tmp_path, models, default_dirs):
    plain_model, guided_model = models
    w = make_window(qtbot, "default", tmp_path)
    try:
        sp = w.source_panel
        assert sp.guided.isEnabled() and not sp.guided.isChecked() and not sp.guide_weight.isEnabled()
        assert w.model_info.guide is None
        plain = image_of(w)
        assert np.array_equal(plain, to_u8(sample(plain_model, [SEED], steps=10, eta=1.0)[0].x_0))
        s = import_and_activate(qtbot, w, default_dirs)
        assert w.library.find_set(s.set_id).status == "ok"

        sp.guide_weight.blockSignals(True)
        sp.guide_weight.setValue(3.0)
        sp.guide_weight.blockSignals(False)
        sp.guided.setChecked(True)
        _reloaded(qtbot, w, "default")
        assert w.model_info.guide_weight == 3.0 and sp.guide_weight.isEnabled()
        assert "guided by default" in w.model_info.description
        traj = sample(guided_model, [SEED], steps=10, eta=1.0)[0]
        assert np.array_equal(image_of(w), to_u8(traj.x_0))
        assert not np.array_equal(image_of(w), plain)
        # the direction made without the guide still fits and edits the guided chain
        assert w.library.find_set(s.set_id).status == "ok"
        w.slider_rows()[0].box.setValue(2.0)
        wait_idle(qtbot, w)
        assert np.array_equal(image_of(w), direct_edit(guided_model, traj, default_dirs, 0, 2.0))

        recipe = export_and_replay(qtbot, w, tmp_path, "guided.png")
        assert recipe["guide"] == {"model": "default", "weight": 3.0, "interval": None}

        path = tmp_path / "guided.json"
        res = run_job(qtbot, w, w.save_session(str(path)))
        assert res.ok, res.error
        shown = image_of(w)
    finally:
        w.shutdown()

    w2 = make_window(qtbot, "default", tmp_path, name="w2")
    try:
        assert not w2.source_panel.guided.isChecked()
        res = run_job(qtbot, w2, w2.open_session(str(path)))
        assert res.ok, res.error
        _reloaded(qtbot, w2, "default")
        assert w2.source_panel.guided.isChecked() and w2.source_panel.guide_weight.value() == 3.0
        assert np.array_equal(image_of(w2), shown)
        # switched off again: the unguided image, the direction still fitting
        w2.source_panel.guided.setChecked(False)
        _reloaded(qtbot, w2, None)
        w2.slider_rows()[0].box.setValue(0.0)
        wait_idle(qtbot, w2)
        assert np.array_equal(image_of(w2), plain)
    finally:
        w2.shutdown()


def test_guided_switch_is_off_for_models_without_a_shipped_guide(qtbot, tmp_path, tiny_model_dir):
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    try:
        assert not w.source_panel.guided.isEnabled() and w.model_info.guide is None
        assert w.source_panel.guidance(w.model_info.source) == (None, None)
    finally:
        w.shutdown()
