"""Small diffusers models that tests build and save, loaded by path like a user's checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch


def tiny_unet(config: str = "a", sample_size: int = 16, in_channels: int = 3):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    if config == "a":  # two levels, attention at the lower one
        return UNet2DModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                           block_out_channels=(16, 32), layers_per_block=1,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                           norm_num_groups=8, attention_head_dim=8)
    if config == "b":  # three levels, widening mid-block channels, two layers per block
        return UNet2DModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                           block_out_channels=(8, 16, 24), layers_per_block=2,
                           down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                           norm_num_groups=8, attention_head_dim=8)
    raise ValueError(config)


def save_pixel_model(folder: Path, config: str = "a", prediction_type: str = "epsilon",
                     clip_sample: bool = True, spacing: str = "leading",
                     beta_schedule: str = "linear", sample_size: int = 16) -> Path:
    from diffusers import DDPMScheduler

    folder = Path(folder)
    tiny_unet(config, sample_size=sample_size).save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=1000, clip_sample=clip_sample, prediction_type=prediction_type,
                  timestep_spacing=spacing, beta_schedule=beta_schedule).save_pretrained(folder / "scheduler")
    return folder


def save_latent_model(folder: Path) -> Path:
    from diffusers import DDIMScheduler, VQModel

    folder = Path(folder)
    torch.manual_seed(0)
    vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                 layers_per_block=1, latent_channels=4, num_vq_embeddings=32, norm_num_groups=8,
                 vq_embed_dim=4, sample_size=16)
    vq.save_pretrained(folder / "vqvae")
    tiny_unet("a", sample_size=8, in_channels=4).save_pretrained(folder / "unet")
    DDIMScheduler(num_train_timesteps=1000, clip_sample=False).save_pretrained(folder / "scheduler")
    return folder


# ------------------------------------------------------------------ text-to-image (SD, SDXL)

def write_tokenizer(max_length: int = 16):
    """A CLIP tokenizer written by the test: letters, digits and a little punctuation,
    each alone or word-final, and the start and end tokens (ids 84 and 85)."""
    import json
    import string

    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + ".,!?'-"
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tok"))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)
    return tok


def _tiny_clip(with_projection: bool, hidden: int = 32, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(bos_token_id=84, eos_token_id=85, pad_token_id=85, vocab_size=86,
                         hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=16, projection_dim=hidden)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def _tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                         norm_num_groups=4, sample_size=16)


def _sd_scheduler(prediction_type: str = "epsilon", spacing: str = "leading"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type=prediction_type, timestep_spacing=spacing)


def save_sd_model(folder: Path, prediction_type: str = "epsilon", spacing: str = "leading") -> Path:
    """A tiny Stable Diffusion 1.x/2.x-style folder: 8x8 latents, 16x16 images."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    folder = Path(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4)
    pipe = StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=_tiny_clip(False),
                                   tokenizer=write_tokenizer(), unet=unet,
                                   scheduler=_sd_scheduler(prediction_type, spacing), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def save_sdxl_model(folder: Path, hidden_2: int = 32) -> Path:
    """A tiny SDXL-style folder: two text encoders (the second ``hidden_2`` wide), pooled
    embeddings, size/crop conditioning."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    folder = Path(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=6 * 8 + hidden_2,
                                cross_attention_dim=32 + hidden_2,
                                norm_num_groups=4)
    tok = write_tokenizer()
    pipe = StableDiffusionXLPipeline(vae=_tiny_vae(), text_encoder=_tiny_clip(False, seed=1),
                                     text_encoder_2=_tiny_clip(True, hidden=hidden_2, seed=2), tokenizer=tok, tokenizer_2=tok,
                                     unet=unet, scheduler=_sd_scheduler(), force_zeros_for_empty_prompt=True,
                                     add_watermarker=False)
    pipe.save_pretrained(folder)
    return folder


def save_direction_files(model_dir, folder: Path, steps: int, seed: int) -> Path:
    """Two random h-space directions (``h.safetensors``) and two noise-space ones
    (``n.safetensors``) for the model in ``model_dir`` at ``steps`` steps, in ``folder``."""
    from hspace_studio.engine import DirectionSet, load_model, sample
    from hspace_studio.engine.noise_edits import noise_direction_set

    m = load_model(str(model_dir), device="cpu")
    t = sample(m, [0], steps=steps)[0]
    g = torch.Generator().manual_seed(seed)
    folder = Path(folder)
    DirectionSet(delta_h=torch.randn((2, *t.hs.shape), generator=g), timesteps=t.timesteps,
                 fingerprint=m.weights_fingerprint, h_space="after", method="pca").save(folder / "h.safetensors")
    noise_direction_set(torch.randn((2, *t.x_T.shape), generator=g) * 0.3,
                        torch.randn((2, *t.zs.shape), generator=g) * 0.3, t.timesteps,
                        m.weights_fingerprint).save(folder / "n.safetensors")
    return folder
