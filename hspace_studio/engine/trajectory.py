"""The Trajectory record (the paper's ``Q``): everything that makes one image reproducible."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from ..core.errors import FileFormatError, ModelMismatchError
from .files import load_tensors, save_tensors

REQUIRED = ("x_T", "zs", "etas", "timesteps", "hs", "x_0")


@dataclass
class Trajectory:
    """One image's sampling chain.

    ``x_T`` (C, H, W); ``zs`` (T, C, H, W) the variance noise of each step (zeros where
    eta is 0); ``etas`` (T,); ``timesteps`` (T,) in sampling order (integers, or a flow
    model's sigma * 1000 as floats); ``hs`` (T, C', H', W')
    the h seen at each step; ``x_0`` (C, H, W) the result in the diffusion space,
    unclamped. ``xs`` (T, C, H, W), when present, caches the input x_t of each step so
    that an edit starting at step k need not recompute steps before k; ``x0s`` (T, C, H, W),
    when present, the x_0 each step of that chain predicted (a progressive preview shows
    what an edit changes in them). Neither is written to a file.
    """

    x_T: torch.Tensor
    zs: torch.Tensor
    etas: torch.Tensor
    timesteps: torch.Tensor
    hs: torch.Tensor
    x_0: torch.Tensor
    fingerprint: str
    h_space: str
    origin: dict = field(default_factory=dict)
    xs: Optional[torch.Tensor] = None
    x0s: Optional[torch.Tensor] = None
    # 2: the chain ends where the model's scheduler says (set_alpha_to_one); 1: a file from
    # when every chain ended at alpha-bar_0 (see sampler.check_schedule)
    schedule: int = 2

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    def copy(self) -> "Trajectory":
        return replace(self, origin=dict(self.origin))

    def describe_origin(self) -> str:
        o = self.origin
        if "seed" in o:
            return f"seed {o['seed']}"
        if "image" in o:
            return f"image {o['image']} ({o.get('inversion', 'inverted')})"
        return "unknown origin"

    def check_model(self, model_fingerprint: str, h_space: str, path="trajectory",
                    sample_shape=None, h_shape=None) -> None:
        """Raise ModelMismatchError unless this trajectory fits the model (and, where
        given, its sample shape (C, H, W) and h shape (C', H', W'))."""
        if self.fingerprint != model_fingerprint:
            raise ModelMismatchError(f"{path} was made with model {self.fingerprint}, "
                                     f"not the loaded model {model_fingerprint}")
        if self.h_space != h_space:
            raise ModelMismatchError(f"{path} records h at '{self.h_space}', not '{h_space}'")
        if sample_shape is not None and tuple(self.x_T.shape) != tuple(sample_shape):
            raise ModelMismatchError(f"{path} holds samples of shape {tuple(self.x_T.shape)}, the model "
                                     f"makes {tuple(sample_shape)}")
        if h_shape is not None and tuple(self.hs.shape[1:]) != tuple(h_shape):
            raise ModelMismatchError(f"{path} holds h of shape {tuple(self.hs.shape[1:])}, the model "
                                     f"has {tuple(h_shape)} at '{h_space}'")

    def save(self, path) -> None:
        tensors = {"x_T": self.x_T, "zs": self.zs, "etas": self.etas.float(),
                   "timesteps": stored_timesteps(self.timesteps), "hs": self.hs, "x_0": self.x_0}
        meta = {"kind": "trajectory", "fingerprint": self.fingerprint, "h_space": self.h_space,
                "origin": self.origin, "format": 2}
        save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path) -> "Trajectory":
        t, meta = load_tensors(path, REQUIRED, "trajectory")
        if meta.get("kind") != "trajectory":
            raise FileFormatError(f"{path} is not a trajectory file (kind: {meta.get('kind')})")
        T = t["timesteps"].shape[0] if t["timesteps"].dim() == 1 else -1
        if (T < 1 or t["x_T"].dim() != 3 or t["x_0"].shape != t["x_T"].shape
                or t["zs"].shape != (T, *t["x_T"].shape) or t["etas"].shape != (T,)
                or t["hs"].dim() != 4 or t["hs"].shape[0] != T):
            raise FileFormatError(f"{path}: trajectory tensors have inconsistent shapes")
        for key in ("fingerprint", "h_space"):
            if not isinstance(meta.get(key), str):
                raise FileFormatError(f"{path}: trajectory metadata lacks '{key}'")
        origin = meta.get("origin") if isinstance(meta.get("origin"), dict) else {}
        return cls(x_T=t["x_T"].float(), zs=t["zs"].float(), etas=t["etas"].float(),
                   timesteps=stored_timesteps(t["timesteps"]), hs=t["hs"].float(), x_0=t["x_0"].float(),
                   fingerprint=meta["fingerprint"], h_space=meta["h_space"], origin=origin,
                   schedule=2 if _format(meta) >= 2 else 1)


def stored_timesteps(ts: torch.Tensor) -> torch.Tensor:
    """Integer timesteps (DDPM-style models) as int64; a flow model's (sigma * 1000) as float32."""
    return ts.float() if ts.is_floating_point() and not torch.equal(ts, ts.round()) else ts.long()


def _format(meta: dict) -> int:
    f = meta.get("format", 1)
    return int(f) if isinstance(f, int) and not isinstance(f, bool) else 1
