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
