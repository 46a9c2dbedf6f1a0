"""The low-memory mode: the autoencoder works in tiles, one image at a time."""
import torch

from hspace_studio.engine.model import load_model
from hspace_studio.engine.sampler import sample

from ..tiny_models import save_sd_model


def test_tiles_leave_images_of_the_autoencoders_size_alone_and_blend_bigger_ones(tmp_path):
    folder = save_sd_model(tmp_path / "sd")
    normal, low = load_model(str(folder)), load_model(str(folder), low_memory=True)
    assert low.info.get("low_memory") and "low_memory" not in normal.info
    assert low.fingerprint == normal.fingerprint  # the same weights
    normal.set_prompt("a cat", "", 3.0)
    low.set_prompt("a cat", "", 3.0)
    a, b = sample(normal, [1], steps=3)[0], sample(low, [1], steps=3)[0]
    assert torch.equal(a.x_0, b.x_0)
    # the model's own size (16 px, the autoencoder's sample size): the same pixels
    assert torch.equal(normal.to_pixels(a.x_0[None]), low.to_pixels(a.x_0[None]))
    # 3x its size: decoded in overlapping tiles, the seams blended; close, not equal
    z = torch.randn(2, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    full, tiled = normal.to_pixels(z), low.to_pixels(z)
    assert full.shape == tiled.shape == (2, 3, 48, 48)
    diff = (full - tiled).abs()
    assert 0 < float(diff.max()) < 0.5 * float(full.abs().max())


def test_the_recipe_records_the_low_memory_mode_and_replays(tmp_path):
    import numpy as np
    from PIL import Image

    from hspace_studio.cli import main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    folder = save_sd_model(tmp_path / "sd")
    out = tmp_path / "a.png"
    assert main(["sample", "--model", str(folder), "--low-memory", "--prompt", "a cat", "--seed", "1",
                 "--steps", "2", "--out", str(out)]) == 0
    rec = read_recipe(out)
    assert rec["low_memory"] is True and "--low-memory" in recipe_to_cli_args(rec)
    again = tmp_path / "b.png"
    assert main(recipe_to_cli_args(rec, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out)))
