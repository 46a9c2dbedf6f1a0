"""Where h can be taken in a network, what lies upstream of it, and how the network is called.

An :class:`Architecture` describes one kind of diffusers denoiser for :class:`.denoiser.Denoiser`:

- its h-space *points* and, for each, the :class:`HookTarget` (the module whose input or
  output is h, which element of a tuple output, whether h is a sequence of image tokens);
- the modules *upstream* of a point (their outputs do not depend on h: the Jacobian caches
  them once per step and runs only the network downstream of h);
- how to *call* the network on x_t (B, C, H, W) at a timestep with the conditioning's
  keyword arguments, and the token grid of that call.

:class:`UNetArchitecture` serves ``UNet2DModel`` and ``UNet2DConditionModel`` (points
``before``, ``middle``, ``after`` around the mid-block). Transformers are in
:mod:`.transformers`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from ..core.errors import ModelLoadError


@dataclass(frozen=True)
class HookTarget:
    """h at one point: the input (``pre``) or output of ``module``; of a tuple output, element
    ``index``. ``tokens``: h is a (B, N, D) sequence of image tokens, shown to edits and records
    as (B, D, gh, gw) on the token grid of the call; ``leading``: the image tokens are the first
    gh * gw of a longer sequence (the rest, text and padding, is left as it is)."""

    module: torch.nn.Module
    pre: bool = False
    index: Optional[int] = None
    tokens: bool = False
    leading: bool = False


class Architecture:
    """The interface (see the module doc); subclasses fill it in for one kind of network."""

    name = "network"

    def points(self, net) -> List[str]:
        raise NotImplementedError

    def default_point(self, net) -> str:
        raise NotImplementedError

    def target(self, net, point: str) -> HookTarget:
        raise NotImplementedError

    def upstream(self, net, point: str) -> List[torch.nn.Module]:
        raise NotImplementedError

    def call(self, net, x: torch.Tensor, t, cond: dict) -> torch.Tensor:
        raise NotImplementedError

    def grid(self, net, x: torch.Tensor) -> Optional[Tuple[int, int]]:
        """The token grid (gh, gw) of a call on ``x``; None for a convolutional network."""
        return None

    def timestep_of(self, args, kwargs) -> Optional[float]:
        """The diffusion timestep (0..1000) of a call of the network as its pipeline makes it
        (from the forward's arguments); None if it cannot be told."""
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if t is None:
            return None
        t = torch.as_tensor(t).flatten()
        return float(t[0]) if t.numel() else None

    def check_point(self, net, point: str) -> str:
        pts = self.points(net)
        if point not in pts:
            raise ValueError(f"unknown h-space point '{point}' for this {self.name} (use one of "
                             f"{_short_list(pts)})")
        return point


def _short_list(points: List[str]) -> str:
    if len(points) <= 6:
        return ", ".join(points)
    return f"{', '.join(points[:3])} ... {points[-1]}"


class UNetArchitecture(Architecture):
    """A diffusers ``UNet2DModel`` or ``UNet2DConditionModel``: h around the mid-block.

    - ``before``: the input of the mid-block (a forward pre-hook on ``mid_block``);
    - ``middle``: inside the mid-block's second resnet, the output of its ``norm2``;
    - ``after``: the output of the mid-block (the paper's default).
    """

    name = "UNet"
    POINTS = ("before", "middle", "after")

    def points(self, net) -> List[str]:
        if getattr(net, "mid_block", None) is None:
            return []
        resnets = getattr(net.mid_block, "resnets", None)
        has_middle = resnets is not None and len(resnets) >= 2
        return [p for p in self.POINTS if p != "middle" or has_middle]

    def default_point(self, net) -> str:
        return "after"

    def target(self, net, point: str) -> HookTarget:
        if point not in self.POINTS:
            raise ValueError(f"unknown h-space point '{point}' (use one of {', '.join(self.POINTS)})")
        mid = getattr(net, "mid_block", None)
        if mid is None:
            raise ModelLoadError("this UNet has no mid-block, so it has no h-space")
        if point == "middle":
            resnets = getattr(mid, "resnets", None)
            if resnets is None or len(resnets) < 2:
                raise ModelLoadError("the mid-block has no second resnet for the 'middle' point")
            return HookTarget(resnets[1].norm2)
        return HookTarget(mid, pre=point == "before")

    def upstream(self, net, point: str) -> List[torch.nn.Module]:
        mods = [net.conv_in, net.time_embedding]
        if getattr(net, "class_embedding", None) is not None:
            mods.append(net.class_embedding)
        mods += list(net.down_blocks)
        mid = net.mid_block
        if point == "after":
            mods.append(mid)
        elif point == "middle":
            mods.append(mid.resnets[0])
            attns = getattr(mid, "attentions", None) or []
            if len(attns) and attns[0] is not None:
                mods.append(attns[0])
        return [m for m in mods if m is not None]

    def call(self, net, x, t, cond: dict) -> torch.Tensor:
        return net(x, t, **cond).sample
