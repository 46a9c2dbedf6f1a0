"""Single-file checkpoints: tiny diffusers models written in the original layouts, loaded offline."""
from pathlib import Path

import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine.checkpoint_file import detect, inspect_checkpoint
from hspace_studio.engine.model import load_model
from hspace_studio.engine.sampler import sample

from ..checkpoint_layout import (configs_only, flux_to_original, save_checkpoint, sd_pipeline_to_ldm,
                                 vae_to_ldm)
from ..tiny_flow_models import save_flux_model
from ..tiny_models import save_sd_model, save_sdxl_model


def _pipe(folder, cls):
    import diffusers

    return getattr(diffusers, cls).from_pretrained(folder)


@pytest.fixture(scope="module")
def sd_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd1")
    folder = save_sd_model(root / "folder")
    state = sd_pipeline_to_ldm(_pipe(folder, "StableDiffusionPipeline"))
    return (folder, save_checkpoint(state, root / "model.safetensors"), configs_only(folder, root / "configs"),
            save_checkpoint(state, root / "model.ckpt"))


@pytest.fixture(scope="module")
def sdxl_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    folder = save_sdxl_model(root / "folder", hidden_2=48)  # CLIP and OpenCLIP told apart by width, as in SDXL
    state = sd_pipeline_to_ldm(_pipe(folder, "StableDiffusionXLPipeline"))
    return folder, save_checkpoint(state, root / "model.safetensors"), configs_only(folder, root / "configs")


def _image(model, seed=3, steps=4):
    model.set_prompt("a red face", "", 5.0)
    return sample(model, [seed], steps=steps, eta=1.0)[0]


def test_sd1_file_samples_as_its_folder(sd_files):
    folder, file, configs, _ = sd_files
    a = load_model(str(folder))
    b = load_model(str(file), model_config=str(configs))
    assert b.info["checkpoint"]["family"] == "SD 1.x"
    assert "SD 1.x checkpoint file" in b.describe()
    assert b.fingerprint == a.fingerprint  # the same weights: directions found on one apply to the other
    ta, tb = _image(a), _image(b)
    assert torch.equal(ta.x_0, tb.x_0)


def test_pickled_ckpt_loads_weights_only(sd_files, tmp_path):
    folder, _, configs, ckpt = sd_files
    assert load_model(str(ckpt), model_config=str(configs)).fingerprint == load_model(str(folder)).fingerprint

    class Payload:  # anything but tensors needs code to unpickle: refused, not run
        def __reduce__(self):
            return (print, ("code ran",))

    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": Payload()}, bad)
    with pytest.raises(ModelLoadError, match="weights-only"):
        load_model(str(bad), model_config=str(configs))


def test_sdxl_file_samples_as_its_folder(sdxl_files):
    folder, file, configs = sdxl_files
    a = load_model(str(folder))
    b = load_model(str(file), model_config=str(configs))
    assert b.info["checkpoint"]["family"] == "SDXL"
    assert b.fingerprint == a.fingerprint
    assert torch.equal(_image(a).x_0, _image(b).x_0)


def test_flux_transformer_file_with_the_family_folder(tmp_path):
    folder = save_flux_model(tmp_path / "flux", guidance_embeds=False)
    net = _pipe(folder, "FluxPipeline").transformer
    file = save_checkpoint(flux_to_original(net, prefix="model.diffusion_model."), tmp_path / "flux.safetensors")
    assert inspect_checkpoint(file).family == "Flux.1-schnell"
    a = load_model(str(folder))
    b = load_model(str(file), model_config=str(folder))
    assert b.fingerprint == a.fingerprint
    assert torch.equal(_image(a, steps=2).x_0, _image(b, steps=2).x_0)
    with pytest.raises(ModelLoadError, match="transformer alone"):
        load_model(str(file))


def test_flux_conversion_equals_diffusers_at_flux1_width():
    """The width-aware Flux renaming gives what diffusers' own converter gives for Flux.1's width
    (3072; tensors one column wide, which the renaming does not look at)."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from hspace_studio.engine.checkpoint_flux import flux_state_dict

    g = torch.Generator().manual_seed(0)
    inner, mlp = 3072, 12288
    rows = {"time_in.in_layer": 3, "time_in.out_layer": 3, "vector_in.in_layer": 3, "vector_in.out_layer": 3,
            "guidance_in.in_layer": 3, "guidance_in.out_layer": 3, "txt_in": 3, "img_in": 3,
            "double_blocks.0.img_mod.lin": 6, "double_blocks.0.txt_mod.lin": 6,
            "double_blocks.0.img_attn.qkv": 3 * inner, "double_blocks.0.txt_attn.qkv": 3 * inner,
            "double_blocks.0.img_mlp.0": 4, "double_blocks.0.img_mlp.2": 3, "double_blocks.0.txt_mlp.0": 4,
            "double_blocks.0.txt_mlp.2": 3, "double_blocks.0.img_attn.proj": 3, "double_blocks.0.txt_attn.proj": 3,
            "single_blocks.0.modulation.lin": 9, "single_blocks.0.linear1": 3 * inner + mlp,
            "single_blocks.0.linear2": 3, "final_layer.linear": 4, "final_layer.adaLN_modulation.1": 6}
    state = {}
    for name, n in rows.items():
        state[name + ".weight"] = torch.randn(n, 1, generator=g)
        state[name + ".bias"] = torch.randn(n, generator=g)
    for name in ("double_blocks.0.img_attn.norm.query_norm", "double_blocks.0.img_attn.norm.key_norm",
                 "double_blocks.0.txt_attn.norm.query_norm", "double_blocks.0.txt_attn.norm.key_norm",
                 "single_blocks.0.norm.query_norm", "single_blocks.0.norm.key_norm"):
        state[name + ".scale"] = torch.randn(5, generator=g)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(state))
    ours = flux_state_dict(dict(state), inner, mlp)
    assert set(ours) == set(theirs)
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]), k


def test_original_layout_vae_file(sd_files, tmp_path):
    """A community VAE in the original layout (no prefix), converted with the model's own VAE config."""
    folder, _, _, _ = sd_files
    pipe = _pipe(folder, "StableDiffusionPipeline")
    torch.manual_seed(5)
    for p in pipe.vae.parameters():
        p.data += 0.01 * torch.randn_like(p)
    state = {k[len("first_stage_model."):]: v for k, v in vae_to_ldm(pipe.vae).items()}
    file = save_checkpoint(state, tmp_path / "vae.safetensors")
    m = load_model(str(folder), vae=str(file))
    for (k, v), (k2, v2) in zip(sorted(m.vae.state_dict().items()), sorted(pipe.vae.state_dict().items())):
        assert k == k2 and torch.allclose(v, v2), k


def test_detection_on_each_layout(sd_files, sdxl_files, tmp_path):
    assert inspect_checkpoint(sd_files[1]).family == "SD 1.x"
    assert inspect_checkpoint(sdxl_files[1]).family == "SDXL"
    # an SD 2.x file: the SD layout with an OpenCLIP text encoder
    shapes = {k: tuple(v.shape) for k, v in sd_pipeline_to_ldm(_pipe(sd_files[0], "StableDiffusionPipeline")).items()
              if not k.startswith("cond_stage_model.")}
    sd2 = dict(shapes, **{"cond_stage_model.model.token_embedding.weight": (86, 32)})
    assert detect(sd2).family == "SD 2.x"
    inpaint = dict(shapes, **{"model.diffusion_model.input_blocks.0.0.weight": (8, 9, 3, 3)})
    with pytest.raises(ModelLoadError, match="9 channels"):
        detect(inpaint)
    with pytest.raises(ModelLoadError, match="without its text encoder"):
        detect({k: v for k, v in shapes.items() if k.startswith("model.diffusion_model.")})
    assert detect({"joint_blocks.0.x_block.attn.qkv.weight": (3, 1)}).family == "SD3"
    flux = {"double_blocks.0.img_attn.qkv.weight": (9, 3), "single_blocks.0.linear1.weight": (9, 3)}
    assert detect(flux).family == "Flux.1-schnell"
    assert detect(dict(flux, **{"guidance_in.in_layer.weight": (3, 3)})).family == "Flux.1-dev"
    with pytest.raises(ModelLoadError, match="autoencoder alone"):
        detect({"encoder.down.0.block.0.conv1.weight": (1,), "decoder.up.0.block.0.conv1.weight": (1,)})
    with pytest.raises(ModelLoadError, match="not a checkpoint of a family"):
        detect({"foo.weight": (1,)})


def test_missing_configs_say_what_to_pass(sd_files, tmp_path, monkeypatch):
    _, file, _, _ = sd_files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="no configuration folder"):
        load_model(str(file), model_config=str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="FluxPipeline folder"):
        flux_dir = tmp_path / "f"
        flux_dir.mkdir()
        (flux_dir / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
        load_model(str(file), model_config=str(flux_dir))
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(Path(file).read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        load_model(str(damaged))
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(ModelLoadError, match="neither a model folder nor a checkpoint"):
        load_model(str(text))


def test_cli_samples_a_checkpoint_file_and_the_recipe_replays(sd_files, tmp_path):
    import numpy as np
    from PIL import Image

    from hspace_studio.cli import main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    folder, file, configs, _ = sd_files
    out, ref = tmp_path / "f.png", tmp_path / "folder.png"
    common = ["--prompt", "a cat", "--seed", "2", "--steps", "3"]
    assert main(["sample", "--model", str(file), "--model-config", str(configs), *common, "--out", str(out)]) == 0
    assert main(["sample", "--model", str(folder), *common, "--out", str(ref)]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(ref)))
    rec = read_recipe(out)
    assert rec["model"] == str(file) and rec["model_config"] == str(configs.resolve())
    again = tmp_path / "again.png"
    assert main(recipe_to_cli_args(rec, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out)))


def test_the_shipped_clip_tokenizer_gives_clips_ids(tmp_path, monkeypatch):
    """The tokenizer written from the shipped merges encodes as CLIP's own tokenizer does
    (ids published with CLIP's tokenizer tests)."""
    from transformers import CLIPTokenizer

    from hspace_studio.engine.shipped_configs import shipped_config

    monkeypatch.setenv("HSPACE_CACHE", str(tmp_path))
    folder = shipped_config("SDXL")
    tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("Hello, world!").input_ids == [49406, 3306, 267, 1002, 256, 49407]
    assert tok("A PHOTO of  a Cat!").input_ids == [49406, 320, 1125, 539, 320, 2368, 256, 49407]
    tok2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
    assert tok2.pad_token == "!" and tok2.pad_token_id == 0 and tok.pad_token_id == 49407
    assert shipped_config("SD 1.x") is not None and shipped_config("Flux.1-dev") is None


def test_the_shipped_configs_build_the_reference_models_sizes(tmp_path, monkeypatch):
    """Each shipped config builds its network with the reference model's parameter count (as
    published for stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from hspace_studio.engine.shipped_configs import shipped_config

    monkeypatch.setenv("HSPACE_CACHE", str(tmp_path))

    def count(module):
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        sd1, xl = shipped_config("SD 1.x"), shipped_config("SDXL")
        assert count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(sd1 / "unet"))) == 859_520_964
        assert count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(xl / "unet"))) == 2_567_463_684
        for f in (sd1, xl):
            assert count(AutoencoderKL.from_config(AutoencoderKL.load_config(f / "vae"))) == 83_653_863
        clip_l = count(CLIPTextModel(CLIPTextConfig.from_pretrained(sd1 / "text_encoder")))
        big_g = count(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(xl / "text_encoder_2")))
        assert clip_l + big_g == 817_720_320  # SDXL's two text encoders together


def test_offline_without_a_folder_the_shipped_configs_are_used_and_say_so(sd_files, tmp_path, monkeypatch):
    """A tiny SD 1.x file offline: the shipped configs (the reference model's sizes) are tried and
    the message says so and what to pass."""
    _, file, _, _ = sd_files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HSPACE_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="configs shipped for SD 1.x.*--model-config"):
        load_model(str(file))
