"""A custom autoencoder (--vae): a folder or a diffusers-layout .safetensors file."""
import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine import load_model, sample
from tests.tiny_models import save_sd_model


@pytest.fixture(scope="module")
def sd_and_vae(tmp_path_factory):
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("vae")
    sd = save_sd_model(root / "sd")
    vae = AutoencoderKL.from_pretrained(sd / "vae")
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    vae.save_pretrained(root / "other-vae")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, root / "other-vae.safetensors")
    return sd, root / "other-vae", root / "other-vae.safetensors", vae


@pytest.mark.parametrize("which", ["folder", "file"])
def test_a_custom_vae_decodes_the_same_latents(sd_and_vae, which):
    sd, folder, file, vae = sd_and_vae
    spec = folder if which == "folder" else file
    plain = load_model(str(sd), device="cpu")
    custom = load_model(str(sd), device="cpu", vae=str(spec))
    assert custom.fingerprint != plain.fingerprint and custom.info["vae"] == str(spec)
    a = sample(plain, [1], steps=3)[0]
    b = sample(custom, [1], steps=3)[0]
    assert torch.equal(a.x_0, b.x_0)  # the chain runs in latent space
    with torch.no_grad():
        want = vae.decode(b.x_0[None] / vae.config.scaling_factor).sample
    assert torch.allclose(custom.to_pixels(b.x_0[None]), want, atol=1e-5)
    assert not torch.allclose(plain.to_pixels(a.x_0[None]), want, atol=1e-3)


def test_vae_errors(sd_and_vae, tiny_model_dir, tmp_path):
    sd, folder, _, _ = sd_and_vae
    with pytest.raises(ModelLoadError, match="no autoencoder"):
        load_model(str(sd), device="cpu", vae=str(tmp_path / "nothing"))
    with pytest.raises(ModelLoadError, match="pixel-space"):
        load_model(str(tiny_model_dir), device="cpu", vae=str(folder))
    pickled = tmp_path / "vae.ckpt"
    pickled.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(str(sd), device="cpu", vae=str(pickled))
