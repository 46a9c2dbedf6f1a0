"""LoRA files: made with peft on a tiny model, loaded by path, against diffusers' own
load_lora_weights on the same pipeline."""
import numpy as np
import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine import load_model, sample
from tests.tiny_models import save_sd_model

pytest.importorskip("peft")


def _save_lora(folder, pipe_dir, seed, targets=("to_q", "to_k", "to_v", "to_out.0")):
    """A random (non-zero) LoRA of the UNet's attention, saved in diffusers' format."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(pipe_dir)
    torch.manual_seed(seed)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(targets), init_lora_weights=False))
    with torch.no_grad():
        for n, p in pipe.unet.named_parameters():
            if "lora_B" in n:
                p.mul_(20.0)  # large enough to change the tiny model's image clearly
    sd = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=sd, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def sd_and_loras(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    sd = save_sd_model(root / "sd")
    a = _save_lora(root / "a", sd, 1)
    b = _save_lora(root / "b", sd, 2)
    return sd, a, b


def test_two_loras_with_weights_equal_diffusers(sd_and_loras):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sd, a, b = sd_and_loras
    model = load_model(str(sd), device="cpu", loras=[f"{a}:0.7", f"{b}:0.4"])
    model.set_prompt("a red face", "", 7.5)
    traj = sample(model, [3], steps=4, eta=0.0)[0]
    pipe = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(str(a.parent), weight_name=a.name, adapter_name="a")
    pipe.load_lora_weights(str(b.parent), weight_name=b.name, adapter_name="b")
    pipe.set_adapters(["a", "b"], adapter_weights=[0.7, 0.4])
    pipe.set_progress_bar_config(disable=True)
    lat = pipe(prompt="a red face", num_inference_steps=4, guidance_scale=7.5, eta=0.0,
               generator=torch.Generator().manual_seed(3), output_type="latent").images[0]
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max()
    plain = load_model(str(sd), device="cpu")
    plain.set_prompt("a red face", "", 7.5)
    base = sample(plain, [3], steps=4, eta=0.0)[0]
    assert (base.x_0 - traj.x_0).abs().max() > 1e-2  # the LoRAs change the image
    # the fingerprint covers the LoRAs and their weights; the records keep path and weight
    assert model.fingerprint != plain.fingerprint
    other = load_model(str(sd), device="cpu", loras=[f"{a}:0.5", f"{b}:0.4"])
    assert other.fingerprint not in (model.fingerprint, plain.fingerprint)
    assert [(r["path"], r["weight"]) for r in model.info["loras"]] == [(str(a), 0.7), (str(b), 0.4)]


def test_lora_errors_are_one_line(sd_and_loras, tiny_model_dir, tmp_path):
    sd, a, _ = sd_and_loras
    with pytest.raises(ModelLoadError, match="no LoRA file"):
        load_model(str(sd), device="cpu", loras=[str(tmp_path / "missing.safetensors")])
    with pytest.raises(ModelLoadError, match="unconditional"):
        load_model(str(tiny_model_dir), device="cpu", loras=[str(a)])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load the LoRA"):
        load_model(str(sd), device="cpu", loras=[str(bad)])


def test_a_lora_images_recipe_replays(sd_and_loras, tmp_path):
    from PIL import Image

    from hspace_studio.cli import main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    sd, a, _ = sd_and_loras
    out = tmp_path / "l.png"
    assert main(["sample", "--model", str(sd), "--lora", f"{a}:0.8", "--prompt", "a cat", "--seed", "2",
                 "--steps", "3", "--out", str(out)]) == 0
    rec = read_recipe(out)
    assert rec["loras"] == [{"path": str(a), "weight": 0.8}]
    again = tmp_path / "again.png"
    assert main(recipe_to_cli_args(rec, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out)))


def test_a_flux_lora_equals_diffusers(tmp_path):
    """A LoRA of a Flux transformer's attention (the flow-matching family people ask LoRA for)."""
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from tests.tiny_flow_models import save_flux_model

    folder = save_flux_model(tmp_path / "flux")
    pipe = FluxPipeline.from_pretrained(folder)
    torch.manual_seed(0)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"],
                                            init_lora_weights=False))
    with torch.no_grad():
        for n, p in pipe.transformer.named_parameters():
            if "lora_B" in n:
                p.mul_(20.0)
    FluxPipeline.save_lora_weights(tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    file = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    model = load_model(str(folder), device="cpu", loras=[f"{file}:0.6"])
    model.set_prompt("a cat", "", 3.5)
    traj = sample(model, [3], steps=3, eta=0.0)[0]
    ref = FluxPipeline.from_pretrained(folder)
    ref.load_lora_weights(str(file.parent), adapter_name="x")
    ref.set_adapters(["x"], adapter_weights=[0.6])
    ref.set_progress_bar_config(disable=True)
    h, w = model.image_size
    lat = ref(prompt="a cat", num_inference_steps=3, height=h, width=w, guidance_scale=3.5,
              generator=torch.Generator().manual_seed(3), output_type="latent").images
    lat = ref._unpack_latents(lat, h, w, ref.vae_scale_factor)[0]
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max()
    plain = load_model(str(folder), device="cpu")
    plain.set_prompt("a cat", "", 3.5)
    assert (sample(plain, [3], steps=3, eta=0.0)[0].x_0 - traj.x_0).abs().max() > 1e-2
