"""The embedded default model: it loads by name and by folder, and samples at 10 steps."""
import pytest
import torch

from hspace_studio.engine import load_model, sample
from hspace_studio.engine.model import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL_DIR.is_dir(), reason="default model not trained yet")


def test_default_model_loads_by_name_and_folder():
    a = load_model("default", device="cpu")
    b = load_model(str(DEFAULT_MODEL_DIR), device="cpu")
    assert a.fingerprint == b.fingerprint
    assert a.sample_shape == (3, 64, 64) and a.prediction_type == "v_prediction"
    assert a.scheduler.config.clip_sample is False


def test_default_model_samples_cleanly_without_clipping():
    m = load_model("default", device="cpu")
    t = sample(m, [0, 1], steps=10, batch_size=2)
    x = torch.stack([tr.x_0 for tr in t])
    assert torch.isfinite(x).all()
    assert x.abs().max() < 3.0  # bounded x_0 with clip_sample off
    assert t[0].hs.shape == (10, 128, 8, 8)
