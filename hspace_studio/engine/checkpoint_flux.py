"""A Flux.1 transformer from the original single-file layout, at any width.

The original layout (``double_blocks.N.img_attn.qkv``, ``single_blocks.N.linear1`` ...) fuses
q, k, v (and, in the single-stream blocks, the MLP's input) into one matrix; diffusers keeps
them apart. :func:`flux_state_dict` renames and splits a file's tensors into
``FluxTransformer2DModel``'s names, with the split sizes read from the model's config (the
width of Flux.1 and of any smaller model built like it); :func:`load_flux_transformer` builds the
transformer from its config and these weights, every weight accounted for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch

from ..core.errors import ModelLoadError


def flux_state_dict(state: Dict[str, torch.Tensor], inner_dim: int, mlp_dim: int) -> Dict[str, torch.Tensor]:
    """The diffusers names of an original-layout Flux transformer's tensors (``model.diffusion_model.``
    prefix or none). Raises KeyError for a missing tensor."""
    sd = {(k[len("model.diffusion_model."):] if k.startswith("model.diffusion_model.") else k): v
          for k, v in state.items()}
    out: Dict[str, torch.Tensor] = {}

    def take(src: str, dst: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = sd.pop(f"{src}.{kind}")

    take("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
    take("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
    take("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    take("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    if "guidance_in.in_layer.weight" in sd:
        take("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
        take("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
    take("txt_in", "context_embedder")
    take("img_in", "x_embedder")
    n_double = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("double_blocks.")), default=-1)
    n_single = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("single_blocks.")), default=-1)
    for i in range(n_double):
        s, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        take(s + "img_mod.lin", d + "norm1.linear")
        take(s + "txt_mod.lin", d + "norm1_context.linear")
        for kind in ("weight", "bias"):
            for name, part in zip(("to_q", "to_k", "to_v"), sd.pop(s + f"img_attn.qkv.{kind}").chunk(3, dim=0)):
                out[d + f"attn.{name}.{kind}"] = part
            for name, part in zip(("add_q_proj", "add_k_proj", "add_v_proj"),
                                  sd.pop(s + f"txt_attn.qkv.{kind}").chunk(3, dim=0)):
                out[d + f"attn.{name}.{kind}"] = part
        out[d + "attn.norm_q.weight"] = sd.pop(s + "img_attn.norm.query_norm.scale")
        out[d + "attn.norm_k.weight"] = sd.pop(s + "img_attn.norm.key_norm.scale")
        out[d + "attn.norm_added_q.weight"] = sd.pop(s + "txt_attn.norm.query_norm.scale")
        out[d + "attn.norm_added_k.weight"] = sd.pop(s + "txt_attn.norm.key_norm.scale")
        take(s + "img_mlp.0", d + "ff.net.0.proj")
        take(s + "img_mlp.2", d + "ff.net.2")
        take(s + "txt_mlp.0", d + "ff_context.net.0.proj")
        take(s + "txt_mlp.2", d + "ff_context.net.2")
        take(s + "img_attn.proj", d + "attn.to_out.0")
        take(s + "txt_attn.proj", d + "attn.to_add_out")
    for i in range(n_single):
        s, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        take(s + "modulation.lin", d + "norm.linear")
        for kind in ("weight", "bias"):
            q, k, v, mlp = sd.pop(s + f"linear1.{kind}").split((inner_dim, inner_dim, inner_dim, mlp_dim), dim=0)
            out.update({d + f"attn.to_q.{kind}": q, d + f"attn.to_k.{kind}": k, d + f"attn.to_v.{kind}": v,
                        d + f"proj_mlp.{kind}": mlp})
        out[d + "attn.norm_q.weight"] = sd.pop(s + "norm.query_norm.scale")
        out[d + "attn.norm_k.weight"] = sd.pop(s + "norm.key_norm.scale")
        take(s + "linear2", d + "proj_out")
    take("final_layer.linear", "proj_out")
    for kind in ("weight", "bias"):  # the original keeps (shift, scale), diffusers (scale, shift)
        shift, scale = sd.pop(f"final_layer.adaLN_modulation.1.{kind}").chunk(2, dim=0)
        out[f"norm_out.linear.{kind}"] = torch.cat([scale, shift])
    if sd:
        raise ModelLoadError(f"{len(sd)} tensors of the file are not part of a Flux.1 transformer "
                             f"(e.g. {sorted(sd)[0]})")
    return out


def load_flux_transformer(path, config_dir):
    """``FluxTransformer2DModel`` from ``config_dir/transformer``'s config and the original-layout
    file at ``path``, in float32."""
    from diffusers import FluxTransformer2DModel

    from .checkpoint_read import load_weights

    cfg = FluxTransformer2DModel.load_config(str(config_dir), subfolder="transformer")
    net = FluxTransformer2DModel.from_config(cfg)
    inner = net.config.num_attention_heads * net.config.attention_head_dim
    mlp = net.single_transformer_blocks[0].proj_mlp.out_features if len(net.single_transformer_blocks) else 0
    path = Path(path)
    state = load_weights(path)
    try:
        weights = flux_state_dict(state, inner, mlp)
    except KeyError as e:
        raise ModelLoadError(f"{path}: not a whole Flux.1 transformer (no {e.args[0]})") from None
    except RuntimeError as e:  # a split that does not fit: another width than the config's
        raise ModelLoadError(f"{path}: its tensors do not fit the transformer config in {config_dir} "
                             f"({str(e).splitlines()[0][:120]})") from None
    try:
        result = net.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    except RuntimeError as e:  # a tensor of another shape than the config's
        raise ModelLoadError(f"{path}: its tensors do not fit the transformer config in {config_dir} "
                             f"({str(e).splitlines()[-1].strip()[:120]})") from None
    if result.missing_keys or result.unexpected_keys:
        what = result.missing_keys[:1] or result.unexpected_keys[:1]
        raise ModelLoadError(f"{path} does not fit the transformer config in {config_dir} ({what[0]})")
    return net.float().eval()
