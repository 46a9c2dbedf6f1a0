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


def _detail(x: torch.Tensor) -> torch.Tensor:
    """Mean squared Laplacian per image: how much fine detail (edges, not blur) it holds."""
    k = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return torch.nn.functional.conv2d(x, k, groups=3).pow(2).mean(dim=(1, 2, 3))


def test_ten_step_variant_loads_by_name_at_its_recorded_timesteps():
    from hspace_studio.engine.model import DEFAULT_10STEP_DIR

    m = load_model("default-10step", device="cpu")
    assert m.info["timesteps"] == "power:0.7"
    assert m.fingerprint == load_model(str(DEFAULT_10STEP_DIR), device="cpu").fingerprint
    assert m.fingerprint != load_model("default", device="cpu").fingerprint
    # asked for explicitly, the scheduler's own spacing wins over the recorded one
    assert "timesteps" not in load_model("default-10step", timesteps="scheduler").info
    assert load_model("default-10step", timesteps="power:0.8").info["timesteps"] == "power:0.8"
    t = sample(m, [0], steps=10, batch_size=1)
    assert t[0].timesteps.tolist()[:3] == [999, 928, 855]


def test_ten_step_variant_draws_the_generators_detail_at_ten_steps():
    """At 10 steps the main model (unguided) draws blurred faces; the distilled variant draws
    about as much fine detail as the generator's own images, and no more (no leftover noise)
    (measured: generator 0.098, variant 0.105, main model 0.043 on these 16 seeds)."""
    from hspace_studio.toyfaces import quality as Q

    seeds = list(range(16))
    gen = _detail(Q.generator_images(range(500_000, 500_016))).mean()
    main = _detail(Q.model_images(load_model("default"), seeds, 10, eta=0.0)).mean()
    fast = _detail(Q.model_images(load_model("default-10step"), seeds, 10, eta=0.0)).mean()
    assert 0.75 * gen < fast < 1.4 * gen, (float(fast), float(gen))
    assert fast > 1.5 * main, (float(fast), float(main))
