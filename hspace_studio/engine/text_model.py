"""Text-to-image models: Stable Diffusion 1.x / 2.x and SDXL folders.

A diffusers folder with ``model_index.json``, ``unet/`` (``UNet2DConditionModel``),
``vae/`` (``AutoencoderKL``), ``text_encoder/`` + ``tokenizer/`` (and, for SDXL,
``text_encoder_2/`` + ``tokenizer_2/``) and ``scheduler/``.

:class:`PromptEncoder` gives the UNet's :class:`.denoiser.Denoiser` its conditioning: the
encoded prompt and negative prompt, and classifier-free guidance above scale 1 (as diffusers'
pipelines decide), which the denoiser runs as one batch ``[uncond x B, cond x B]`` in the
pipelines' order, returning ``uncond + scale (cond - uncond)``.

Prompts are encoded by the pipeline's own ``encode_prompt``; SDXL's size and crop
conditioning is ``(H, W, 0, 0, H, W)`` at the model's image size, as its pipeline
builds it by default.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import ModelLoadError, reason
from .denoiser import Conditioning, Prompt

# the prompt settings a trajectory, a recipe and a direction file record
CONDITIONING_KEYS = ("prompt", "negative_prompt", "guidance")


class PromptEncoder:
    """Encodes prompts with a diffusers text-to-image pipeline's ``encode_prompt``."""

    def __init__(self, pipe, xl: bool, image_size):
        self.pipe = pipe
        self.xl = xl
        self.image_size = tuple(image_size)
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype

    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str):
        """The UNet's keyword arguments of the prompt and of the negative prompt, batch 1."""
        neg = negative_prompt or None
        if self.xl:
            pos, nemb, pooled, npooled = self.pipe.encode_prompt(
                prompt=prompt, device=self.device, num_images_per_prompt=1,
                do_classifier_free_guidance=True, negative_prompt=neg)
            h, w = self.image_size
            ids = torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=pos.dtype)
            return ({"encoder_hidden_states": pos, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids}},
                    {"encoder_hidden_states": nemb, "added_cond_kwargs": {"text_embeds": npooled, "time_ids": ids}})
        pos, nemb = self.pipe.encode_prompt(prompt, self.device, 1, True, neg)
        return {"encoder_hidden_states": pos}, {"encoder_hidden_states": nemb}

    @property
    def guidance_embedded(self) -> bool:
        """Whether the UNet takes the guidance scale as an input (an LCM-distilled UNet's
        ``time_cond_proj_dim``) instead of running classifier-free guidance."""
        return getattr(self.pipe.unet.config, "time_cond_proj_dim", None) is not None

    def conditioning(self, guidance: float) -> Conditioning:
        """The denoiser's conditioning: this encoder, classifier-free guidance above scale 1; for
        a UNet with a guidance embedding, no second branch and ``timestep_cond`` the embedding of
        ``guidance - 1``, as diffusers' pipelines give it."""
        if not self.guidance_embedded:
            return Conditioning(self.encode, Prompt(guidance=guidance))
        dim = int(self.pipe.unet.config.time_cond_proj_dim)

        def extra(g: float) -> dict:
            w = torch.tensor([float(g) - 1.0])
            emb = self.pipe.get_guidance_scale_embedding(w, embedding_dim=dim)
            return {"timestep_cond": emb.to(device=self.device, dtype=self.dtype)}
        return Conditioning(self.encode, Prompt(guidance=guidance), uses_cfg=lambda g: False, extra=extra)


def is_text_to_image(root: Path) -> bool:
    """Whether ``root`` holds a text-conditioned (Stable Diffusion style) model: its
    ``unet/config.json`` names a ``UNet2DConditionModel``. An unreadable config is left to
    the unconditional loader, which reports it."""
    import json

    try:
        cfg = json.loads((root / "unet" / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(cfg, dict) and cfg.get("_class_name") == "UNet2DConditionModel"


def load_text_pipeline(root: Path):
    """The diffusers pipeline of an SD 1.x/2.x or SDXL folder (no safety checker, no
    watermark), and whether it is SDXL. Raises ModelLoadError with what is missing."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    missing = [d for d in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (root / d).is_dir()]
    if missing:
        raise ModelLoadError(f"{root}: a text-to-image model folder needs {', '.join(missing)}/ "
                             "(a diffusers Stable Diffusion folder, as save_pretrained writes it)")
    xl = (root / "text_encoder_2").is_dir()
    if xl and not (root / "tokenizer_2").is_dir():
        raise ModelLoadError(f"{root}: text_encoder_2/ without tokenizer_2/")
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:  # in float32 whatever the files hold, so the fingerprint does not depend on --half
        if xl:
            pipe = StableDiffusionXLPipeline.from_pretrained(root, add_watermarker=False)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(root, safety_checker=None, feature_extractor=None,
                                                           requires_safety_checker=False)
    except Exception as e:  # diffusers and transformers raise many types for broken folders
        first = reason(e)
        raise ModelLoadError(f"cannot load the text-to-image model in {root}: {first[:200]}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe, xl


def default_guidance(xl: bool) -> float:
    """The diffusers pipelines' default guidance scale: 7.5 for SD 1.x/2.x, 5 for SDXL.
    (A few-step distilled model such as SD-Turbo is sampled with ``guidance`` 0 or 1.)"""
    return 5.0 if xl else 7.5
