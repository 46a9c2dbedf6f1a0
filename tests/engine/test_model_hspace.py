"""Model loading, fingerprints and h-space hooks."""
import subprocess
import sys

import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine import load_model, sample
POINTS = ("before", "middle", "after")


@pytest.mark.parametrize("which,expected", [
    ("tiny_model_dir", {"before": (32, 8, 8), "middle": (32, 8, 8), "after": (32, 8, 8)}),
    ("tiny_model_b_dir", {"before": (24, 4, 4), "middle": (24, 4, 4), "after": (24, 4, 4)}),
    ("latent_model_dir", {"before": (32, 4, 4), "middle": (32, 4, 4), "after": (32, 4, 4)}),
])
def test_h_shapes_at_all_points(request, which, expected):
    model = load_model(str(request.getfixturevalue(which)), device="cpu")
    for point in POINTS:
        assert model.denoiser.h_shape(point, model.sample_shape) == expected[point]
        t = sample(model, [0], steps=3, h_space=point)[0]
        assert tuple(t.hs.shape) == (3, *expected[point])


def test_points_are_distinct_tensors(tiny_model):
    recs = {}
    x = torch.randn(1, *tiny_model.sample_shape)
    for p in POINTS:
        rec = []
        with torch.no_grad(), tiny_model.denoiser.hook(p, record=rec):
            tiny_model.denoiser(x, torch.tensor([500]))
        assert len(rec) == 1
        recs[p] = rec[0]
    assert not torch.allclose(recs["before"], recs["after"])
    assert not torch.allclose(recs["middle"], recs["after"])


def test_delta_at_before_changes_output_and_hook_is_removed(tiny_model):
    x = torch.randn(1, *tiny_model.sample_shape)
    t = torch.tensor([300])
    with torch.no_grad():
        base = tiny_model.denoiser(x, t)
        with tiny_model.denoiser.hook("before", edit=lambda h: h + 1.0):
            moved = tiny_model.denoiser(x, t)
        again = tiny_model.denoiser(x, t)
    assert not torch.allclose(base, moved)
    assert torch.equal(base, again)


def test_latent_model_makes_images_at_vae_resolution(latent_model_dir):
    m = load_model(str(latent_model_dir), device="cpu")
    assert m.is_latent and m.sample_shape == (4, 8, 8) and m.image_size == (16, 16)
    t = sample(m, [1], steps=3)[0]
    img = m.to_pixels(t.x_0[None])
    assert img.shape == (1, 3, 16, 16)


def test_fingerprint_is_stable_and_weight_sensitive(tiny_model_dir, tmp_path):
    a = load_model(str(tiny_model_dir), device="cpu")
    b = load_model(str(tiny_model_dir), device="cpu")
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    from diffusers import DDPMScheduler, UNet2DModel

    u = UNet2DModel.from_pretrained(tiny_model_dir / "unet")
    with torch.no_grad():
        u.conv_out.bias.add_(1e-3)
    u.save_pretrained(tmp_path / "unet")
    DDPMScheduler.from_pretrained(tiny_model_dir / "scheduler").save_pretrained(tmp_path / "scheduler")
    assert load_model(str(tmp_path), device="cpu").fingerprint != a.fingerprint


def test_flat_folder_layout_loads(tmp_path):
    from tests.tiny_models import tiny_unet
    from diffusers import DDPMScheduler

    tiny_unet("a").save_pretrained(tmp_path)
    DDPMScheduler().save_pretrained(tmp_path)
    m = load_model(str(tmp_path), device="cpu")
    assert m.sample_shape == (3, 16, 16)


def test_clip_sample_is_switched_off_and_set_alpha_to_one_follows_the_config(tiny_model):
    assert tiny_model.scheduler.config.clip_sample is False
    # the tiny model's DDPM config names no set_alpha_to_one: DDIM's default (true) applies
    assert tiny_model.scheduler.config.set_alpha_to_one is True
    default = load_model("default", device="cpu")  # its config records false
    assert default.scheduler.config.set_alpha_to_one is False


def test_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="not a diffusers model folder"):
        load_model(str(tmp_path))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="neither a model folder nor a checkpoint"):
        load_model(str(tmp_path / "f.txt"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError):
        load_model(str(bad))


def test_unreachable_hub_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="local folder"):
        load_model("someone/some-model")


def test_device_errors():
    from hspace_studio.engine.model import pick_device

    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(ModelLoadError):
        pick_device("banana")


def test_engine_import_loads_no_qt():
    code = ("import sys, hspace_studio.engine, hspace_studio.engine.inversion, "
            "hspace_studio.engine.directions, hspace_studio.core.progress;"
            "print([m for m in sys.modules if m.startswith(('PySide6', 'shiboken6', 'pyqtgraph'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_loaded_model_survives_its_weights_file_rewritten_in_place(tiny_model_dir, tmp_path):
    """The weights are the process's own: truncating the safetensors file of a loaded model
    (as a copy over it would) must not crash it (memory-mapped weights die with SIGBUS)."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    code = ("import sys; from hspace_studio.engine import load_model\n"
            "m = load_model(sys.argv[1], device='cpu')\n"
            "import pathlib\n"
            "for f in pathlib.Path(sys.argv[1]).rglob('*.safetensors'):\n"
            "    open(f, 'r+b').truncate(0)\n"
            "print(sum(float(p.abs().sum()) for p in m.net.parameters()) > 0)\n")
    r = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "True", (r.returncode, r.stderr[-2000:])
