"""Transformer folders: Stable Diffusion 3 / 3.5, Flux.1 and Z-Image (flow matching), PixArt-Sigma and
DiT (noise-predicting, sampled with DDIM from their scheduler's config as UNet models are).

A diffusers folder as ``save_pretrained`` writes it (``model_index.json``, ``transformer/``,
``vae/``, ``scheduler/``, the text encoders and tokenizers). Each family here says which
pipeline loads it, how its prompt is encoded (the pipeline's own ``encode_prompt``), whether
guidance runs as classifier-free batches (SD3, above scale 1) or as an input of the network
(Flux.1-dev's guidance embedding; Flux.1-schnell has none), how the pipeline sets its
timesteps (SD3: the scheduler's static shift; Flux: sigmas ``linspace(1, 1/steps, steps)``
with the dynamic shift of the image's token count) and the image size it makes by default
(SD3: the transformer's sample size; Flux: the autoencoder's declared ``sample_size``, 1024
for Flux.1). ``load_model(..., image_size=(H, W))`` (``--size``) chooses another.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from ..core.errors import ModelLoadError, reason
from .denoiser import Conditioning, Denoiser, Prompt
from .flow import FlowSchedule, shifted_mu
from .transformers import (DiTArchitecture, FluxArchitecture, PixArtArchitecture, SD3Architecture,
                           ZImageArchitecture)


@dataclass(frozen=True)
class Family:
    name: str
    pipeline: str  # diffusers pipeline class
    arch: Callable
    default_guidance: Callable  # (pipe) -> float
    encode: Callable  # (pipe, device) -> encode(prompt, negative) -> (pos, neg)
    uses_cfg: Callable  # (guidance) -> bool
    extra: Optional[Callable]  # (pipe) -> (guidance) -> dict, or None
    set_timesteps: Callable  # (pipe, sample_shape) -> (scheduler, steps) -> None
    latent_shape: Callable  # (pipe, (H, W)) -> (C, h, w)
    default_size: Callable  # (pipe) -> (H, W)
    weight: Callable = float  # (guidance) -> w of uncond + w (cond - uncond)
    negative: bool = True  # takes a negative prompt
    flow: bool = True  # flow matching; False: sampled as DDPM-family models are (DDIM)
    fixed_size: bool = False  # makes one size only (DiT)


def _vae_scale(pipe) -> int:
    return 2 ** (len(pipe.vae.config.block_out_channels) - 1)


# ------------------------------------------------------------------ SD3

def _sd3_encode(pipe, device):
    @torch.no_grad()
    def encode(prompt: str, negative: str):
        pe, ne, pp, npp = pipe.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None, device=device,
                                             num_images_per_prompt=1, do_classifier_free_guidance=True,
                                             negative_prompt=negative or None)
        return ({"encoder_hidden_states": pe, "pooled_projections": pp},
                {"encoder_hidden_states": ne, "pooled_projections": npp})
    return encode


def _sd3_timesteps(pipe, shape):
    cfg = pipe.scheduler.config
    mu = None
    if cfg.get("use_dynamic_shifting", None):
        p = pipe.transformer.config.patch_size
        mu = shifted_mu((shape[1] // p) * (shape[2] // p), cfg, max_shift=1.16)

    def set_timesteps(sched, steps):
        if mu is None:
            sched.set_timesteps(steps, device="cpu")
        else:
            sched.set_timesteps(steps, device="cpu", mu=mu)
    return set_timesteps


def _sd3_latent_shape(pipe, size):
    f = _vae_scale(pipe)
    return (pipe.transformer.config.in_channels, int(size[0]) // f, int(size[1]) // f)


def _sd3_default_size(pipe):
    s = pipe.transformer.config.sample_size * _vae_scale(pipe)
    return (s, s)


SD3 = Family("SD3", "StableDiffusion3Pipeline", SD3Architecture, lambda pipe: 7.0, _sd3_encode,
             lambda g: float(g) > 1.0, None, _sd3_timesteps, _sd3_latent_shape, _sd3_default_size)


# ------------------------------------------------------------------ Flux.1

def _flux_encode(pipe, device):
    @torch.no_grad()
    def encode(prompt: str, negative: str):
        if negative:
            raise ValueError("Flux takes no negative prompt (its guidance is an input of the network)")
        pe, pooled, ids = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device,
                                             num_images_per_prompt=1)
        pos = {"encoder_hidden_states": pe, "pooled_projections": pooled, "txt_ids": ids}
        return pos, pos
    return encode


def _flux_extra(pipe):
    if not pipe.transformer.config.guidance_embeds:
        return None

    def extra(g: float) -> dict:
        return {"guidance": torch.full([1], float(g), dtype=torch.float32)}
    return extra


def _flux_timesteps(pipe, shape):
    cfg = pipe.scheduler.config
    mu = shifted_mu((shape[1] // 2) * (shape[2] // 2), cfg)

    def set_timesteps(sched, steps):
        sigmas = None if cfg.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / steps, steps)
        sched.set_timesteps(steps, device="cpu", sigmas=sigmas, mu=mu)
    return set_timesteps


def _latent_shape_2x2(pipe, size, channels: int):
    """Latents whose grid the transformer reads in 2x2 patches: each side a multiple of 2 after
    the autoencoder's scale (Flux, Z-Image)."""
    f = _vae_scale(pipe)
    return (channels, 2 * (int(size[0]) // (f * 2)), 2 * (int(size[1]) // (f * 2)))


def _flux_latent_shape(pipe, size):  # the transformer takes the 2x2 patches packed: 4 x the channels
    return _latent_shape_2x2(pipe, size, pipe.transformer.config.in_channels // 4)


def _vae_size(pipe):
    """The image size the autoencoder's config declares (Flux.1's: 1024), else 1024."""
    s = getattr(pipe.vae.config, "sample_size", None) or 1024
    return (int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[1]))


FLUX = Family("Flux.1", "FluxPipeline", FluxArchitecture,
              lambda pipe: 3.5 if pipe.transformer.config.guidance_embeds else 0.0, _flux_encode,
              lambda g: False, _flux_extra, _flux_timesteps, _flux_latent_shape, _vae_size, negative=False)

# ------------------------------------------------------------------ PixArt-Sigma

def _pixart_encode(pipe, device):
    @torch.no_grad()
    def encode(prompt: str, negative: str):
        pe, pm, ne, nm = pipe.encode_prompt(prompt, do_classifier_free_guidance=True, negative_prompt=negative,
                                            num_images_per_prompt=1, device=device, clean_caption=True)
        return ({"encoder_hidden_states": pe, "encoder_attention_mask": pm},
                {"encoder_hidden_states": ne, "encoder_attention_mask": nm})
    return encode


PIXART = Family("PixArt-Sigma", "PixArtSigmaPipeline", PixArtArchitecture, lambda pipe: 4.5, _pixart_encode,
                lambda g: float(g) > 1.0, None, None, _sd3_latent_shape, _sd3_default_size, flow=False)


# ------------------------------------------------------------------ DiT

def _dit_encode(pipe, device):
    labels = dict(getattr(pipe, "labels", None) or {})
    n = int(pipe.transformer.config.num_embeds_ada_norm)

    def class_id(text: str) -> int:
        text = text.strip()
        if not text:
            return 0
        if text.isdigit() and int(text) < n:
            return int(text)
        if text in labels:
            return int(labels[text])
        raise ValueError(f"'{text}' is not a class of this DiT model: give a class number from 0 to {n - 1}"
                         + (" or a class name (e.g. " + ", ".join(list(labels)[:3]) + ")" if labels else ""))

    def encode(prompt: str, negative: str):
        if negative:
            raise ValueError("a class-conditional DiT model takes no negative prompt (guidance is "
                             "against its null class)")
        return ({"class_labels": torch.tensor([class_id(prompt)], device=device)},
                {"class_labels": torch.tensor([n], device=device)})  # the null class
    return encode


def _dit_latent_shape(pipe, size):
    s = pipe.transformer.config.sample_size
    return (pipe.transformer.config.in_channels, s, s)


DIT = Family("DiT", "DiTPipeline", DiTArchitecture, lambda pipe: 4.0, _dit_encode, lambda g: float(g) > 1.0,
             None, None, _dit_latent_shape, _sd3_default_size, flow=False, fixed_size=True, negative=False)

# ------------------------------------------------------------------ Z-Image (Tongyi-MAI, 2025)

def _zimage_encode(pipe, device):
    @torch.no_grad()
    def encode(prompt: str, negative: str):
        pos, neg = pipe.encode_prompt(prompt=prompt, device=device, do_classifier_free_guidance=True,
                                      negative_prompt=negative)
        return {"cap_feats": list(pos)}, {"cap_feats": list(neg)}
    return encode


def _zimage_timesteps(pipe, shape):
    from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

    mu = shifted_mu((shape[1] // 2) * (shape[2] // 2), pipe.scheduler.config)

    def set_timesteps(sched, steps):
        sched.set_timesteps(steps, device="cpu", sigmas=get_default_z_image_sigmas(steps), mu=mu)
    return set_timesteps


def _zimage_latent_shape(pipe, size):
    return _latent_shape_2x2(pipe, size, pipe.transformer.config.in_channels)


# its pipeline guides as cond + scale (cond - neg), whenever the scale is above 0
ZIMAGE = Family("Z-Image", "ZImagePipeline", ZImageArchitecture, lambda pipe: 5.0, _zimage_encode,
                lambda g: float(g) > 0.0, None, _zimage_timesteps, _zimage_latent_shape, _vae_size,
                weight=lambda g: 1.0 + float(g))

FAMILIES = {f.pipeline: f for f in (SD3, FLUX, PIXART, DIT, ZIMAGE)}


def family_of(root: Path) -> Optional[Family]:
    """The transformer family of a folder (its ``model_index.json``'s pipeline), or None."""
    try:
        index = json.loads((root / "model_index.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return FAMILIES.get(index.get("_class_name")) if isinstance(index, dict) else None


def load_pipeline(root: Path, family: Family):
    """The family's diffusers pipeline from ``root``, in float32. A component that
    ``model_index.json`` lists as absent (SD3 without its T5 encoder) loads as None."""
    import diffusers
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    index = json.loads((root / "model_index.json").read_text())
    absent = {k: None for k, v in index.items() if not k.startswith("_") and isinstance(v, list)
              and v[0] is None}
    missing = [k for k, v in index.items() if not k.startswith("_") and k not in absent
               and isinstance(v, list) and not (root / k).is_dir()]
    if missing:
        raise ModelLoadError(f"{root}: a {family.name} folder needs {', '.join(m + '/' for m in missing)}")
    try:
        pipe = getattr(diffusers, family.pipeline).from_pretrained(root, **absent)
    except Exception as e:  # diffusers and transformers raise many types for broken folders
        first = reason(e)
        raise ModelLoadError(f"cannot load the {family.name} model in {root}: {first[:200]}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build(pipe, family: Family, image_size: Optional[Tuple[int, int]], device) -> Tuple[Denoiser, Optional[FlowSchedule], tuple]:
    """The denoiser, the flow schedule (None for a family sampled with DDIM) and the sample
    shape (C, h, w) of a loaded pipeline."""
    if image_size is not None and family.fixed_size:
        raise ModelLoadError(f"a {family.name} model makes images of one size; --size does not apply")
    size = tuple(image_size) if image_size is not None else family.default_size(pipe)
    shape = family.latent_shape(pipe, size)
    if min(shape[1:]) < 2:
        raise ModelLoadError(f"an image of {size[0]}x{size[1]} pixels is too small for this {family.name} model")
    extra = family.extra(pipe) if family.extra is not None else None
    cond = Conditioning(family.encode(pipe, device), Prompt(guidance=family.default_guidance(pipe)),
                        uses_cfg=family.uses_cfg, extra=extra, weight=family.weight)
    denoiser = Denoiser(pipe.transformer, family.arch(), cond)
    schedule = FlowSchedule(pipe.scheduler, family.set_timesteps(pipe, shape)) if family.flow else None
    return denoiser, schedule, shape
