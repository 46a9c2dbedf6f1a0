"""Tiny diffusers models written as the single-file checkpoints the community shares.

The inverse of the renaming that diffusers' ``from_single_file`` applies: a
``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` becomes one state dict in the
original Stable Diffusion layout (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.*`` or SDXL's ``conditioner.embedders.*``), a ``FluxTransformer2DModel``
the original Flux.1 layout (``double_blocks.*``, ``single_blocks.*``). Tests load these files
and compare with the folder they came from.
"""
from __future__ import annotations

from pathlib import Path

import torch

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))


def _rename(sd: dict, old: str, new: str, pairs=()) -> dict:
    """The entries of ``sd`` under ``old.``, taken out of it, under ``new.`` (with ``pairs``
    renaming the first name after the prefix)."""
    out = {}
    for k in [k for k in sd if k.startswith(old + ".")]:
        v = sd.pop(k)
        rest = k[len(old) + 1:]
        for a, b in pairs:
            if rest.startswith(a + "."):
                rest = b + rest[len(a):]
        out[new + "." + rest] = v
    return out


def unet_to_ldm(unet) -> dict:
    """A ``UNet2DConditionModel``'s weights under ``model.diffusion_model.``."""
    sd = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    cfg = unet.config
    lpb = cfg.layers_per_block
    assert isinstance(lpb, int), "one layers_per_block for every block"
    out = {}
    flat = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    for a, b in flat.items():
        out.update(_rename(sd, a, b))
    nblocks = len(cfg.block_out_channels)
    for i in range(nblocks):
        for j in range(lpb):
            n = i * (lpb + 1) + j + 1
            out.update(_rename(sd, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{n}.0", _RESNET))
            out.update(_rename(sd, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{n}.1"))
        out.update(_rename(sd, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{i * (lpb + 1) + lpb + 1}.0.op"))
    out.update(_rename(sd, "mid_block.resnets.0", "middle_block.0", _RESNET))
    out.update(_rename(sd, "mid_block.attentions.0", "middle_block.1"))
    out.update(_rename(sd, "mid_block.resnets.1", "middle_block.2", _RESNET))
    for i in range(nblocks):
        has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in unet.state_dict())
        for j in range(lpb + 1):
            n = i * (lpb + 1) + j
            out.update(_rename(sd, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{n}.0", _RESNET))
            out.update(_rename(sd, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{n}.1"))
        out.update(_rename(sd, f"up_blocks.{i}.upsamplers.0.conv",
                           f"output_blocks.{i * (lpb + 1) + lpb}.{2 if has_attn else 1}.conv"))
    assert not sd, sorted(sd)
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(vae) -> dict:
    """An ``AutoencoderKL``'s weights under ``first_stage_model.`` (attention as 1x1 convolutions)."""
    sd = {k: v.detach().clone() for k, v in vae.state_dict().items()}
    out = {}
    for a, b in (("encoder.conv_norm_out", "encoder.norm_out"), ("decoder.conv_norm_out", "decoder.norm_out"),
                 ("encoder.conv_in", "encoder.conv_in"), ("encoder.conv_out", "encoder.conv_out"),
                 ("decoder.conv_in", "decoder.conv_in"), ("decoder.conv_out", "decoder.conv_out"),
                 ("quant_conv", "quant_conv"), ("post_quant_conv", "post_quant_conv")):
        out.update(_rename(sd, a, b))
    res = (("conv_shortcut", "nin_shortcut"),)
    n = len(vae.config.block_out_channels)
    for i in range(n):
        for j in range(vae.config.layers_per_block + 1):
            out.update(_rename(sd, f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", res))
            out.update(_rename(sd, f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{n - 1 - i}.block.{j}", res))
        out.update(_rename(sd, f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv"))
        out.update(_rename(sd, f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{n - 1 - i}.upsample.conv"))
    attn = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))
    for part in ("encoder", "decoder"):
        out.update(_rename(sd, f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", res))
        out.update(_rename(sd, f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", res))
        for k, v in _rename(sd, f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", attn).items():
            out[k] = v[:, :, None, None] if v.ndim == 2 else v
    assert not sd, sorted(sd)
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_ldm(text_encoder, prefix: str) -> dict:
    """A transformers ``CLIPTextModel``'s weights in the layout the original checkpoints keep
    (``<prefix>text_model.*``)."""
    out = {}
    for k, v in text_encoder.state_dict().items():
        if k.endswith("position_ids"):
            continue
        k = k if k.startswith("text_model.") else "text_model." + k
        out[prefix + k] = v.detach().clone()
    return out


def open_clip_to_ldm(text_encoder, prefix: str) -> dict:
    """A ``CLIPTextModelWithProjection``'s weights in OpenCLIP's layout (``<prefix>transformer.
    resblocks.*``, fused q/k/v, ``text_projection`` transposed)."""
    sd = {k: v.detach().clone() for k, v in text_encoder.state_dict().items() if not k.endswith("position_ids")}
    sd = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v for k, v in sd.items()}
    out = {prefix + "token_embedding.weight": sd.pop("text_model.embeddings.token_embedding.weight"),
           prefix + "positional_embedding": sd.pop("text_model.embeddings.position_embedding.weight"),
           prefix + "ln_final.weight": sd.pop("text_model.final_layer_norm.weight"),
           prefix + "ln_final.bias": sd.pop("text_model.final_layer_norm.bias"),
           prefix + "text_projection": sd.pop("text_projection.weight").T.contiguous()}
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        src, dst = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([sd.pop(src + f"self_attn.{p}_proj.{kind}")
                                                           for p in ("q", "k", "v")])
            out[dst + f"attn.out_proj.{kind}"] = sd.pop(src + f"self_attn.out_proj.{kind}")
            out[dst + f"ln_1.{kind}"] = sd.pop(src + f"layer_norm1.{kind}")
            out[dst + f"ln_2.{kind}"] = sd.pop(src + f"layer_norm2.{kind}")
            out[dst + f"mlp.c_fc.{kind}"] = sd.pop(src + f"mlp.fc1.{kind}")
            out[dst + f"mlp.c_proj.{kind}"] = sd.pop(src + f"mlp.fc2.{kind}")
    assert not sd, sorted(sd)
    return out


def sd_pipeline_to_ldm(pipe) -> dict:
    """A Stable Diffusion 1.x (CLIP) or SDXL (CLIP + OpenCLIP) pipeline as one original-layout state dict."""
    out = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae)}
    if getattr(pipe, "text_encoder_2", None) is not None:
        out.update(clip_to_ldm(pipe.text_encoder, "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        out.update(clip_to_ldm(pipe.text_encoder, "cond_stage_model.transformer."))
    return out


def flux_to_original(transformer, prefix: str = "") -> dict:
    """A ``FluxTransformer2DModel``'s weights in the original Flux.1 layout."""
    sd = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    out = {}

    def move(a, b):
        for kind in ("weight", "bias"):
            if f"{a}.{kind}" in sd:
                out[f"{b}.{kind}"] = sd.pop(f"{a}.{kind}")

    for a, b in (("time_text_embed.timestep_embedder", "time_in"), ("time_text_embed.text_embedder", "vector_in"),
                 ("time_text_embed.guidance_embedder", "guidance_in")):
        move(f"{a}.linear_1", f"{b}.in_layer")
        move(f"{a}.linear_2", f"{b}.out_layer")
    move("context_embedder", "txt_in")
    move("x_embedder", "img_in")
    for i in range(len(transformer.transformer_blocks)):
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        move(s + "norm1.linear", d + "img_mod.lin")
        move(s + "norm1_context.linear", d + "txt_mod.lin")
        for kind in ("weight", "bias"):
            out[d + f"img_attn.qkv.{kind}"] = torch.cat([sd.pop(s + f"attn.to_{p}.{kind}") for p in "qkv"])
            out[d + f"txt_attn.qkv.{kind}"] = torch.cat([sd.pop(s + f"attn.add_{p}_proj.{kind}") for p in "qkv"])
        out[d + "img_attn.norm.query_norm.scale"] = sd.pop(s + "attn.norm_q.weight")
        out[d + "img_attn.norm.key_norm.scale"] = sd.pop(s + "attn.norm_k.weight")
        out[d + "txt_attn.norm.query_norm.scale"] = sd.pop(s + "attn.norm_added_q.weight")
        out[d + "txt_attn.norm.key_norm.scale"] = sd.pop(s + "attn.norm_added_k.weight")
        move(s + "ff.net.0.proj", d + "img_mlp.0")
        move(s + "ff.net.2", d + "img_mlp.2")
        move(s + "ff_context.net.0.proj", d + "txt_mlp.0")
        move(s + "ff_context.net.2", d + "txt_mlp.2")
        move(s + "attn.to_out.0", d + "img_attn.proj")
        move(s + "attn.to_add_out", d + "txt_attn.proj")
    for i in range(len(transformer.single_transformer_blocks)):
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        move(s + "norm.linear", d + "modulation.lin")
        for kind in ("weight", "bias"):
            out[d + f"linear1.{kind}"] = torch.cat([sd.pop(s + f"attn.to_{p}.{kind}") for p in "qkv"]
                                                   + [sd.pop(s + f"proj_mlp.{kind}")])
        out[d + "norm.query_norm.scale"] = sd.pop(s + "attn.norm_q.weight")
        out[d + "norm.key_norm.scale"] = sd.pop(s + "attn.norm_k.weight")
        move(s + "proj_out", d + "linear2")
    move("proj_out", "final_layer.linear")
    for kind in ("weight", "bias"):  # diffusers keeps (scale, shift), the original (shift, scale)
        scale, shift = sd.pop(f"norm_out.linear.{kind}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
    assert not sd, sorted(sd)
    return {prefix + k: v for k, v in out.items()}


def save_checkpoint(state: dict, path: Path) -> Path:
    """``state`` as a safetensors file (or a weights-only torch file for ``.ckpt``)."""
    path = Path(path)
    state = {k: v.contiguous() for k, v in state.items()}
    if path.suffix == ".ckpt":
        torch.save({"state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    return path


def configs_only(folder: Path, dest: Path) -> Path:
    """A copy of a diffusers folder without its weights: configs, tokenizers, model_index.json."""
    import shutil

    dest = Path(dest)
    for p in Path(folder).rglob("*"):
        if p.is_file() and p.suffix not in (".safetensors", ".bin"):
            q = dest / p.relative_to(folder)
            q.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, q)
    return dest
