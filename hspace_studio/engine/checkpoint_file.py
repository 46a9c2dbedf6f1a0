"""Single-file checkpoints: the ``.safetensors`` (or pickled ``.ckpt``) files the community shares.

:func:`inspect_checkpoint` reads a file's tensor names and shapes (a safetensors file's
header only) and says which family it holds, from names that do not depend on the model's
size: the original Stable Diffusion layout (``model.diffusion_model.input_blocks...``) with
a CLIP text encoder (SD 1.x), an OpenCLIP one (SD 2.x) or SDXL's two; an SD3 / SD3.5 MMDiT
(``joint_blocks``); a Flux.1 transformer (``double_blocks``/``single_blocks``; dev when it
has a guidance embedding, else schnell); a Z-Image transformer. A transformer file holds the
transformer alone.

:func:`load_checkpoint_pipeline` builds the family's diffusers pipeline from the file with
diffusers' ``from_single_file``. Its configs (and tokenizers) come from ``config``: a diffusers
folder of the same family that the user names (for a transformer-only file it also gives
the text encoders and the autoencoder); without one, from the hub as diffusers does, or a
one-line message says what to pass.

A pickled file is read with ``torch.load(weights_only=True)``: tensors only, no code runs; a
file that needs more than that is refused, saying why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from ..core.checkpoint_names import has_checkpoint_suffix
from ..core.errors import ModelLoadError, reason
from .checkpoint_read import read_shapes

LDM_UNET = "model.diffusion_model."


@dataclass(frozen=True)
class CheckpointKind:
    """What a checkpoint file holds."""

    family: str  # what the app and the CLI show: "SD 1.x", "SDXL", "Flux.1-dev" ...
    pipeline: str  # the diffusers pipeline class that loads the family
    transformer: Optional[str] = None  # the transformer class of a transformer-only file
    hub_configs: str = ""  # the hub repository diffusers takes the family's configs from

    @property
    def transformer_only(self) -> bool:
        return self.transformer is not None


SD1 = CheckpointKind("SD 1.x", "StableDiffusionPipeline", hub_configs="stable-diffusion-v1-5/stable-diffusion-v1-5")
SD2 = CheckpointKind("SD 2.x", "StableDiffusionPipeline", hub_configs="stabilityai/stable-diffusion-2-1")
SDXL = CheckpointKind("SDXL", "StableDiffusionXLPipeline",
                      hub_configs="stabilityai/stable-diffusion-xl-base-1.0")
SD3 = CheckpointKind("SD3", "StableDiffusion3Pipeline", "SD3Transformer2DModel",
                     "stabilityai/stable-diffusion-3.5-medium")
SD3_FULL = CheckpointKind("SD3", "StableDiffusion3Pipeline", hub_configs=SD3.hub_configs)  # with its encoders
FLUX_DEV = CheckpointKind("Flux.1-dev", "FluxPipeline", "FluxTransformer2DModel", "black-forest-labs/FLUX.1-dev")
FLUX_SCHNELL = CheckpointKind("Flux.1-schnell", "FluxPipeline", "FluxTransformer2DModel",
                              "black-forest-labs/FLUX.1-schnell")
ZIMAGE = CheckpointKind("Z-Image", "ZImagePipeline", "ZImageTransformer2DModel", "Tongyi-MAI/Z-Image-Turbo")


def is_checkpoint_file(path) -> bool:
    """Whether ``path`` is a file with a checkpoint's suffix (what ``--model`` takes as a single file)."""
    return has_checkpoint_suffix(path) and Path(path).is_file()


def detect(shapes: Dict[str, Tuple[int, ...]]) -> CheckpointKind:
    """The family of a checkpoint from its tensor names (and the UNet's input channels).
    Raises ModelLoadError for a file of another kind, saying what it looks like."""
    names = set(shapes)

    def has(suffix: str) -> bool:
        return suffix in names or LDM_UNET + suffix in names

    if has("double_blocks.0.img_attn.qkv.weight") and has("single_blocks.0.linear1.weight"):
        return FLUX_DEV if has("guidance_in.in_layer.weight") else FLUX_SCHNELL
    if has("joint_blocks.0.x_block.attn.qkv.weight"):
        return SD3_FULL if any(n.startswith("text_encoders.") for n in names) else SD3
    if has("layers.0.adaLN_modulation.0.weight") and has("cap_embedder.0.weight"):
        return ZIMAGE
    conv_in = shapes.get(LDM_UNET + "input_blocks.0.0.weight")
    if conv_in is not None:
        if len(conv_in) == 4 and conv_in[1] != 4:
            raise ModelLoadError(f"a Stable Diffusion UNet that takes {conv_in[1]} channels (an inpainting or "
                                 "image-conditioned model): only text-to-image models that take 4 latent channels load")
        if any(n.startswith("conditioner.embedders.1.") for n in names):
            return SDXL
        if any(n.startswith("conditioner.embedders.0.model.") for n in names):
            raise ModelLoadError("an SDXL refiner (image-to-image, one OpenCLIP encoder): only text-to-image "
                                 "models load")
        if any(n.startswith("cond_stage_model.model.") for n in names):
            return SD2
        if any(n.startswith("cond_stage_model.transformer.") for n in names):
            return SD1
        raise ModelLoadError("a Stable Diffusion UNet without its text encoder and autoencoder: load the full "
                             "checkpoint, or the model's diffusers folder")
    if any(n.startswith(("encoder.down.", "decoder.up.")) for n in names):
        raise ModelLoadError("an autoencoder alone: pass it as the model's VAE (--vae), with a model")
    if any("lora" in n.lower() for n in list(names)[:50]):
        raise ModelLoadError("a LoRA file: add it to a model (--lora FILE:WEIGHT) instead of loading it as one")
    raise ModelLoadError("not a checkpoint of a family hspace-studio loads from one file (SD 1.x, SD 2.x, "
                         "SDXL, SD3, Flux.1, Z-Image)")


def inspect_checkpoint(path) -> CheckpointKind:
    """The family of the checkpoint file at ``path`` (ModelLoadError naming the file otherwise)."""
    path = Path(path).expanduser()
    try:
        return detect(read_shapes(path))
    except ModelLoadError as e:
        msg = str(e)
        raise ModelLoadError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from e


def _check_config(config: Path, kind: CheckpointKind) -> None:
    import json

    if not config.is_dir():
        raise ModelLoadError(f"no configuration folder '{config}' (a diffusers folder of the {kind.family} family)")
    try:
        index = json.loads((config / "model_index.json").read_text())
    except (OSError, ValueError, RecursionError):
        raise ModelLoadError(f"{config} has no readable model_index.json: name a diffusers folder of the "
                             f"{kind.family} family (as save_pretrained writes it)") from None
    got = index.get("_class_name") if isinstance(index, dict) else None
    if got != kind.pipeline:
        raise ModelLoadError(f"{config} is a {got or 'different'} folder; this checkpoint is {kind.family} "
                             f"({kind.pipeline})")


def _why(e: BaseException) -> str:
    """What went wrong, in a few words: a tensor of another size than the config's is named
    with both sizes (diffusers' own message for it runs on for lines)."""
    import re

    m = re.search(r"(\S+) expected shape torch\.Size\(\[([^\]]*)\]\), but got torch\.Size\(\[([^\]]*)\]\)", str(e))
    if m:
        return (f"its tensors do not fit the configs (e.g. {m.group(1)} is [{m.group(3)}] in the file, "
                f"[{m.group(2)}] in the config)")
    return reason(e, 160)


def load_checkpoint_pipeline(path, kind: CheckpointKind, config=None):
    """The family's diffusers pipeline built from the checkpoint file, in float32 (no safety
    checker, no watermark). ``config``: a diffusers folder of the family (configs and
    tokenizers; for a transformer-only file also its text encoders and autoencoder); without
    one, the hub's configs, or offline (or when the hub cannot be reached) the ones shipped
    for the family (:mod:`.shipped_configs`)."""
    from .hub import offline
    from .shipped_configs import shipped_config

    path = Path(path).expanduser()
    if config is not None:
        cfg = Path(config).expanduser()
        _check_config(cfg, kind)
        return _load_pipeline(path, kind, cfg, "folder")
    if kind.transformer_only:
        raise ModelLoadError(f"{path} holds a {kind.family} transformer alone: name a {kind.family} diffusers "
                             f"folder for its text encoders and autoencoder (--model-config FOLDER; in the app, the Configs row)")
    if offline():
        shipped = shipped_config(kind.family)
        if shipped is None:
            raise ModelLoadError(f"{path} is a {kind.family} checkpoint and its configs come from the hub "
                                 f"({kind.hub_configs}), which is offline: name a {kind.family} diffusers folder "
                                 f"(--model-config FOLDER; in the app, the Configs row)")
        return _load_pipeline(path, kind, shipped, "shipped")
    try:
        return _load_pipeline(path, kind, None, "hub")
    except ModelLoadError as hub_error:
        shipped = shipped_config(kind.family)
        if shipped is None:
            raise
        try:  # the hub failed: the configs shipped for the family
            return _load_pipeline(path, kind, shipped, "shipped")
        except ModelLoadError:
            raise hub_error from None


def _load_pipeline(path: Path, kind: CheckpointKind, cfg: Optional[Path], origin: str):
    """The pipeline with the configs in ``cfg`` (None: the hub's); ``origin`` ("folder", "hub" or
    "shipped") says where they came from, for the message when they do not fit."""
    import diffusers
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    extra = {}
    if kind.pipeline == "StableDiffusionPipeline":
        extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    elif kind.pipeline == "StableDiffusionXLPipeline":
        extra = dict(add_watermarker=False)
    where = {"config": str(cfg), "local_files_only": True} if cfg is not None else {}
    try:
        if kind.transformer == "FluxTransformer2DModel":  # diffusers' converter knows Flux.1's width only
            from .checkpoint_flux import load_flux_transformer

            net = load_flux_transformer(path, cfg)
        elif kind.transformer_only:
            net = getattr(diffusers, kind.transformer).from_single_file(
                str(path), subfolder="transformer", torch_dtype=torch.float32, **where)
        if kind.transformer_only:
            pipe = getattr(diffusers, kind.pipeline).from_pretrained(cfg, transformer=net)
        else:
            pipe = getattr(diffusers, kind.pipeline).from_single_file(str(path), torch_dtype=torch.float32,
                                                                      **where, **extra)
    except ModelLoadError:
        raise
    except Exception as e:  # diffusers, transformers and the hub raise many types
        where_from = (f"the configs shipped for {kind.family} (its reference model's sizes)" if origin == "shipped"
                      else "the hub's configs")
        hint = "" if origin == "folder" else (
            f" (with {where_from}); name a {kind.family} diffusers folder for its configs "
            f"(--model-config FOLDER; in the app, the Configs row)")
        raise ModelLoadError(f"cannot load {path} as {kind.family}: {_why(e)}{hint}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe
