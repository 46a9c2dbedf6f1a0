"""Text-to-image models: Stable Diffusion 1.x / 2.x and SDXL folders.

A diffusers folder with ``model_index.json``, ``unet/`` (``UNet2DConditionModel``),
``vae/`` (``AutoencoderKL``), ``text_encoder/`` + ``tokenizer/`` (and, for SDXL,
``text_encoder_2/`` + ``tokenizer_2/``) and ``scheduler/``.

:class:`PromptedUNet` stands in for the conditional UNet so that the rest of the engine
calls it as it calls an unconditional one, ``unet(x, t).sample``. It holds the encoded
prompt and the guidance scale; with classifier-free guidance (scale > 1, as diffusers'
pipelines decide) it runs the unconditional and the conditional branch as one batch,
``[uncond x B, cond x B]``, in the pipelines' order, and returns
``uncond + scale (cond - uncond)``. While that batch runs, ``branches`` is 2, so the
h-space hooks (:mod:`.hspace`) add an edit to both branches alike and record the
conditional branch's h. Every other attribute (``config``, ``mid_block``, ...) is the
wrapped UNet's, so hooks and the Jacobian's module stubs act on it directly.

Prompts are encoded by the pipeline's own ``encode_prompt``; SDXL's size and crop
conditioning is ``(H, W, 0, 0, H, W)`` at the model's image size, as its pipeline
builds it by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..core.errors import ModelLoadError
from .guidance import UNetOutput

# the prompt settings a trajectory, a recipe and a direction file record
CONDITIONING_KEYS = ("prompt", "negative_prompt", "guidance")


@dataclass(frozen=True)
class Prompt:
    prompt: str = ""
    negative_prompt: str = ""
    guidance: float = 7.5

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "guidance": float(self.guidance)}


def _batch(t: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    return None if t is None else t.expand(n, *t.shape[1:])


class PromptedUNet(torch.nn.Module):
    """A ``UNet2DConditionModel`` with its prompt and guidance bound (see the module doc)."""

    def __init__(self, unet: torch.nn.Module, encoder: "PromptEncoder", prompt: Prompt):
        super().__init__()
        self.main = unet
        self.encoder = encoder
        self.branches = 1
        self.prompt = None
        self._emb = None
        self.set_prompt(prompt)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("main"), name)

    @property
    def guided(self) -> bool:
        return float(self.prompt.guidance) > 1.0

    def set_prompt(self, prompt: Prompt) -> None:
        if self.prompt is None or (prompt.prompt, prompt.negative_prompt) != (
                self.prompt.prompt, self.prompt.negative_prompt):
            self._emb = self.encoder.encode(prompt.prompt, prompt.negative_prompt)
        self.prompt = prompt

    def forward(self, sample, timestep, *args, return_dict: bool = True, **kwargs):
        n = sample.shape[0]
        pos, neg, added_pos, added_neg = self._emb
        t = torch.as_tensor(timestep)
        if self.guided:
            x = torch.cat([sample, sample])
            emb = torch.cat([_batch(neg, n), _batch(pos, n)])
            added = ({k: torch.cat([_batch(added_neg[k], n), _batch(added_pos[k], n)]) for k in added_pos}
                     if added_pos else None)
            if t.dim() == 1 and t.numel() == n > 1:
                t = torch.cat([t, t])
            self.branches = 2
            try:
                out = self.main(x, t, encoder_hidden_states=emb, added_cond_kwargs=added).sample
            finally:
                self.branches = 1
            uncond, cond = out.chunk(2)
            out = uncond + self.prompt.guidance * (cond - uncond)
        else:
            added = {k: _batch(v, n) for k, v in added_pos.items()} if added_pos else None
            out = self.main(sample, t, encoder_hidden_states=_batch(pos, n), added_cond_kwargs=added).sample
        return UNetOutput(out) if return_dict else (out,)


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
        """(prompt embeds, negative embeds, added kwargs, negative added kwargs), batch 1."""
        neg = negative_prompt or None
        if self.xl:
            pos, nemb, pooled, npooled = self.pipe.encode_prompt(
                prompt=prompt, device=self.device, num_images_per_prompt=1,
                do_classifier_free_guidance=True, negative_prompt=neg)
            h, w = self.image_size
            ids = torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=pos.dtype)
            return pos, nemb, {"text_embeds": pooled, "time_ids": ids}, {"text_embeds": npooled, "time_ids": ids}
        pos, nemb = self.pipe.encode_prompt(prompt, self.device, 1, True, neg)
        return pos, nemb, None, None


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
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"cannot load the text-to-image model in {root}: {first[:200]}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe, xl


def default_guidance(xl: bool) -> float:
    """The diffusers pipelines' default guidance scale: 7.5 for SD 1.x/2.x, 5 for SDXL.
    (A few-step distilled model such as SD-Turbo is sampled with ``guidance`` 0 or 1.)"""
    return 5.0 if xl else 7.5
