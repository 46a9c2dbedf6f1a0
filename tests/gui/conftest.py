"""Fixtures of the GUI tests: a window on the tiny model, its reference image and a
direction file for it (helpers such as make_window live in test_gui_app.py)."""
import pytest
import torch

from hspace_studio.engine.directions import DirectionSet
from hspace_studio.engine.sampler import sample
from tests.gui.test_gui_app import SEED, make_window


@pytest.fixture
def win(qtbot, tiny_model_dir, tmp_path):
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def reference(tiny_model):
    """The image of SEED as the engine makes it, and a direction file for the tiny model."""
    traj = sample(tiny_model, [SEED], steps=10, eta=1.0)[0]
    return traj


@pytest.fixture
def dir_file(tmp_path, tiny_model, reference):
    g = torch.Generator().manual_seed(0)
    K = 3
    hs = reference.hs
    delta = torch.randn((K, *hs.shape), generator=g) * hs.std() * 0.5
    ds = DirectionSet(delta_h=delta, timesteps=reference.timesteps.clone(),
                      fingerprint=tiny_model.fingerprint, h_space="after", method="pca",
                      labels=[f"pc {i}" for i in range(K)],
                      values=[[0.3 / (i + 1)] * hs.shape[0] for i in range(K)])
    p = tmp_path / "dirs.safetensors"
    ds.save(p)
    return p
