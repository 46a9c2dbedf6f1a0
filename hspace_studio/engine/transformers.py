"""Transformer denoisers: where h is, what lies upstream of it, how each family is called.

h in a transformer is the image tokens of a chosen block's output, point ``block:N``
(counting every block of the network in the order it runs them: for Flux the double-stream
blocks, then the single-stream ones); for a two-stream block, the image stream. The
denoiser shows it to edits and records on the token grid, (D, gh, gw). The default point
is the middle block.

Each family's :class:`TransformerArchitecture` names its block lists, the modules that feed
the blocks (cached by the Jacobian with the blocks before h) and how its pipeline calls the
network. The network always sees x_t as the engine keeps it, (B, C, H, W) latents; a family
that packs latents into tokens (Flux) packs and unpacks inside its call, as its pipeline does.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

import torch

from .architectures import Architecture, HookTarget


class TransformerArchitecture(Architecture):
    """A transformer with block lists ``blocks`` (attribute names, in running order) whose
    outputs hold the image tokens at ``index`` of a tuple (None: the output is the tokens);
    ``feeders``: the modules before the blocks whose outputs carry a batch dimension."""

    name = "transformer"
    blocks: Sequence[str] = ("transformer_blocks",)
    index: Optional[int] = None
    feeders: Sequence[str] = ()

    def block_list(self, net) -> List[torch.nn.Module]:
        out: List[torch.nn.Module] = []
        for name in self.blocks:
            out += list(getattr(net, name, None) or [])
        return out

    def points(self, net) -> List[str]:
        return [f"block:{i}" for i in range(len(self.block_list(net)))]

    def default_point(self, net) -> str:
        return f"block:{len(self.block_list(net)) // 2}"

    def _block(self, net, point: str) -> int:
        m = re.fullmatch(r"block:(\d+)", str(point))
        n = len(self.block_list(net))
        if m is None or int(m.group(1)) >= n:
            raise ValueError(f"unknown h-space point '{point}' for this {self.name} (use block:N, "
                             f"N from 0 to {n - 1}; block:{n // 2} is the middle)")
        return int(m.group(1))

    def target(self, net, point: str) -> HookTarget:
        return HookTarget(self.block_list(net)[self._block(net, point)], index=self.index, tokens=True)

    def upstream(self, net, point: str) -> List[torch.nn.Module]:
        feeders = [getattr(net, name) for name in self.feeders if getattr(net, name, None) is not None]
        return feeders + self.block_list(net)[:self._block(net, point) + 1]

    def patch(self, net) -> int:
        return int(getattr(net.config, "patch_size", 1) or 1)

    def grid(self, net, x: torch.Tensor) -> Optional[Tuple[int, int]]:
        p = self.patch(net)
        return (x.shape[-2] // p, x.shape[-1] // p)


class SD3Architecture(TransformerArchitecture):
    """Stable Diffusion 3 / 3.5 (``SD3Transformer2DModel``): joint blocks returning
    ``(text, image)``; called as ``StableDiffusion3Pipeline`` calls it."""

    name = "SD3 transformer"
    blocks = ("transformer_blocks",)
    index = 1
    feeders = ("pos_embed", "time_text_embed", "context_embedder")

    def call(self, net, x, t, cond: dict) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        return net(hidden_states=x, timestep=t.expand(x.shape[0]) if t.dim() < 2 else t,
                   return_dict=False, **cond)[0]


class FluxArchitecture(TransformerArchitecture):
    """Flux.1 (``FluxTransformer2DModel``): double-stream then single-stream blocks, both
    returning ``(text, image)``; latents packed 2x2 into tokens, timestep / 1000, rotary
    position ids, the guidance embedding; called as ``FluxPipeline`` calls it."""

    name = "Flux transformer"
    blocks = ("transformer_blocks", "single_transformer_blocks")
    index = 1
    # the rotary embedding (pos_embed) has no batch dimension: it runs again, cheaply
    feeders = ("x_embedder", "time_text_embed", "context_embedder")

    def grid(self, net, x):
        return (x.shape[-2] // 2, x.shape[-1] // 2)

    def timestep_of(self, args, kwargs):
        t = super().timestep_of(args, kwargs)
        return None if t is None else 1000.0 * t  # the pipeline passes t / 1000

    def call(self, net, x, t, cond: dict) -> torch.Tensor:
        from diffusers import FluxPipeline

        B, C, H, W = x.shape
        packed = FluxPipeline._pack_latents(x, B, C, H, W)
        ids = FluxPipeline._prepare_latent_image_ids(B, H // 2, W // 2, x.device, x.dtype)
        t = torch.as_tensor(t, device=x.device)
        cond = dict(cond)
        guidance = cond.pop("guidance", None)
        if guidance is not None:
            guidance = guidance.to(x.device).expand(B)
        out = net(hidden_states=packed, timestep=t.expand(B).to(x.dtype) / 1000, guidance=guidance,
                  img_ids=ids, return_dict=False, **cond)[0]
        # the inverse of the 2x2 packing
        out = out.view(B, H // 2, W // 2, C, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(B, C, H, W)


class _LearnedSigma:
    """For networks that predict the noise and its variance (out channels = 2 x in): the
    engine samples with the noise estimate, the first half, as the pipelines do."""

    @staticmethod
    def noise_part(out: torch.Tensor, channels: int) -> torch.Tensor:
        return out[:, :channels] if out.shape[1] > channels else out


class PixArtArchitecture(TransformerArchitecture):
    """PixArt-Sigma (``PixArtTransformer2DModel``): blocks returning the image tokens, the text
    entering by cross-attention; called as ``PixArtSigmaPipeline`` calls it."""

    name = "PixArt transformer"
    blocks = ("transformer_blocks",)
    index = None
    feeders = ("pos_embed", "adaln_single", "caption_projection")

    def call(self, net, x, t, cond: dict) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        out = net(x, timestep=t.expand(x.shape[0]) if t.dim() == 0 else t,
                  added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False, **cond)[0]
        return _LearnedSigma.noise_part(out, x.shape[1])


class DiTArchitecture(TransformerArchitecture):
    """DiT (``DiTTransformer2DModel``): class-conditional, blocks returning the image tokens;
    called as ``DiTPipeline`` calls it (a class label; the null class for guidance)."""

    name = "DiT transformer"
    blocks = ("transformer_blocks",)
    index = None
    feeders = ("pos_embed",)

    def call(self, net, x, t, cond: dict) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        out = net(x, timestep=t.expand(x.shape[0]) if t.dim() == 0 else t, **cond).sample
        return _LearnedSigma.noise_part(out, x.shape[1])


class ZImageArchitecture(TransformerArchitecture):
    """Z-Image (``ZImageTransformer2DModel``): single-stream layers over one sequence, image tokens
    first (then the padding to a multiple of 32 and the text); called as ``ZImagePipeline`` calls
    it: a list of (C, 1, h, w) latents, the reversed time (1000 - t) / 1000, a list of text
    embeddings, and the output negated into the velocity the scheduler steps with. Its refiner
    layers and embedders take concatenated, not batched, inputs, so the Jacobian caches only
    the main layers before h."""

    name = "Z-Image transformer"
    blocks = ("layers",)
    index = None
    feeders = ()

    def target(self, net, point: str) -> HookTarget:
        return HookTarget(self.block_list(net)[self._block(net, point)], tokens=True, leading=True)

    def grid(self, net, x):
        return (x.shape[-2] // 2, x.shape[-1] // 2)

    def timestep_of(self, args, kwargs):
        t = super().timestep_of(args, kwargs)
        return None if t is None else 1000.0 * (1.0 - t)  # the pipeline passes (1000 - t) / 1000

    def call(self, net, x, t, cond: dict) -> torch.Tensor:
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        tt = (1000 - (t.expand(B) if t.dim() == 0 else t)) / 1000
        xs = list(x.unsqueeze(2).unbind(0))
        out = net(xs, tt, cond["cap_feats"], return_dict=False)[0]
        return -torch.stack([o.float() for o in out]).squeeze(2)


def architecture_for(net) -> Architecture:
    """The architecture of a diffusers network, by its class (a UNet or a transformer family)."""
    from .architectures import UNetArchitecture

    name = type(net).__name__
    table = {"UNet2DModel": UNetArchitecture, "UNet2DConditionModel": UNetArchitecture,
             "SD3Transformer2DModel": SD3Architecture, "FluxTransformer2DModel": FluxArchitecture,
             "PixArtTransformer2DModel": PixArtArchitecture, "DiTTransformer2DModel": DiTArchitecture,
             "ZImageTransformer2DModel": ZImageArchitecture}
    if name not in table:
        raise ValueError(f"no h-space for a {name} (supported: {', '.join(sorted(table))})")
    return table[name]()

