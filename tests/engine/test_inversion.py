"""Edit-friendly DDPM inversion and DDIM inversion; image loading of any mode."""
import numpy as np
import pytest
import torch
from PIL import Image

from hspace_studio.core.errors import ImageError
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.images import load_image
from hspace_studio.engine.inversion import invert
from hspace_studio.engine.sampler import decode


def _image(seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((3, size, size), generator=g) * 2 - 1


@pytest.mark.parametrize("which", ["tiny_model_dir", "tiny_model_b_dir"])
@pytest.mark.parametrize("eta", [1.0, 0.6])
def test_edit_friendly_inversion_is_exact(request, which, eta):
    model = load_model(str(request.getfixturevalue(which)), device="cpu")
    img = _image()
    inv = invert(model, img, steps=10, eta=eta)
    assert inv.max_error < 1e-4
    traj = inv.trajectory.copy()
    traj.xs = None
    decode(model, traj)  # an independent replay from x_T and zs
    assert (traj.x_0 - img).abs().max() < 1e-4


def test_inverted_trajectory_round_trips_through_file(tiny_model, tmp_path):
    inv = invert(tiny_model, _image(1), steps=6, eta=1.0, origin={"image": "x.png"})
    inv.trajectory.save(tmp_path / "t.safetensors")
    from hspace_studio.engine import Trajectory

    t = Trajectory.load(tmp_path / "t.safetensors")
    decode(tiny_model, t)
    assert (t.x_0 - _image(1)).abs().max() < 1e-4
    assert t.origin["inversion"] == "ddpm"


def test_ddim_inversion_reports_its_error(tiny_model_b_dir):
    model = load_model(str(tiny_model_b_dir), device="cpu")
    # invert an image the model itself made at eta 0: DDIM inversion should get close
    t = sample(model, [3], steps=20, eta=0.0)[0]
    img = t.x_0
    inv = invert(model, img, steps=20, eta=0.0)
    assert inv.trajectory.origin["inversion"] == "ddim"
    assert np.isfinite(inv.max_error) and np.isfinite(inv.psnr)
    print(f"DDIM inversion of a model sample: max error {inv.max_error:.3g}, PSNR {inv.psnr:.1f} dB")
    assert inv.trajectory.zs.abs().sum() == 0


def test_latent_inversion_reconstructs_latent(latent_model_dir):
    m = load_model(str(latent_model_dir), device="cpu")
    inv = invert(m, _image(2), steps=5, eta=1.0)
    assert inv.max_error < 1e-4


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "CMYK", "P", "LA", "RGB"])
def test_images_of_any_mode_and_size_load(tmp_path, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray((rng.random((40, 30)) * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((rng.random((40, 30, 3)) * 255).astype(np.uint8), "RGB").convert(mode)
    path = tmp_path / f"img_{mode.replace(';', '')}.{'tiff' if mode == 'CMYK' else 'png'}"
    img.save(path)
    x, note = load_image(path, (16, 16))
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert "resized" in note
    if mode not in ("RGB",):
        assert note.split(";")[0]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    a = np.full((16, 16), 32768, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g.png")
    x, _ = load_image(tmp_path / "g.png", (16, 16))
    assert abs(x.mean().item()) < 0.02  # mid-grey, not white


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "none.png", (16, 16))
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "junk.png", (16, 16))
    Image.new("RGB", (20, 20)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        load_image(tmp_path / "trunc.png", (16, 16))
