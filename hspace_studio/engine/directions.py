"""Directions in h-space: the DirectionSet record, its file format, disentangling.

File format (docs/architecture.md, contract): a safetensors file with tensors ``delta_h``
(K, T, C, H, W) and ``timesteps`` (T,), and JSON metadata ``fingerprint``,
``h_space``, ``method``, ``params`` (the recipe), ``labels`` (K strings) and
``values`` (K lists of T numbers, or null).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence

import torch

from ..core.errors import FileFormatError, ModelMismatchError
from .files import load_tensors, save_tensors

METHODS = ("pca", "jacobian", "supervised", "disentangled", "imported", "custom")


@dataclass
class DirectionSet:
    delta_h: torch.Tensor  # (K, T, C, H, W)
    timesteps: torch.Tensor  # (T,)
    fingerprint: str
    h_space: str
    method: str = "custom"
    labels: List[str] = field(default_factory=list)
    values: Optional[List[List[float]]] = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.delta_h.dim() != 5:
            raise ValueError(f"delta_h must be (K, T, C, H, W), got {tuple(self.delta_h.shape)}")
        if not self.labels:
            self.labels = [f"{self.method} {i}" for i in range(len(self))]

    def __len__(self) -> int:
        return int(self.delta_h.shape[0])

    @property
    def steps(self) -> int:
        return int(self.delta_h.shape[1])

    # -- files -----------------------------------------------------------------------
    def save(self, path) -> None:
        meta = {"kind": "directions", "format": 1, "fingerprint": self.fingerprint,
                "h_space": self.h_space, "method": self.method, "labels": list(self.labels),
                "values": self.values, "params": self.params}
        save_tensors(path, {"delta_h": self.delta_h.float(), "timesteps": self.timesteps.long()}, meta)

    @classmethod
    def load(cls, path) -> "DirectionSet":
        t, meta = load_tensors(path, ("delta_h", "timesteps"), "direction")
        d, ts = t["delta_h"], t["timesteps"]
        if d.dim() != 5 or ts.dim() != 1 or d.shape[1] != ts.shape[0] or d.shape[0] < 1:
            raise FileFormatError(f"{path}: delta_h must be (K, T, C, H, W) with T timesteps")
        for key in ("fingerprint", "h_space"):
            if not isinstance(meta.get(key), str):
                raise FileFormatError(f"{path}: direction metadata lacks '{key}'")
        labels = meta.get("labels")
        if not (isinstance(labels, list) and len(labels) == d.shape[0]):
            labels = []
        values = meta.get("values")
        if values is not None and not (isinstance(values, list) and len(values) == d.shape[0]):
            values = None
        method = meta.get("method") if meta.get("method") in METHODS else "imported"
        params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
        return cls(delta_h=d.float(), timesteps=ts.long(), fingerprint=meta["fingerprint"],
                   h_space=meta["h_space"], method=method, labels=[str(x) for x in labels],
                   values=values, params=params)

    # -- model fit -------------------------------------------------------------------
    def check_model(self, fingerprint: str, h_space: str, h_shape=None, name="direction file") -> None:
        if self.fingerprint != fingerprint:
            raise ModelMismatchError(f"{name} was made for model {self.fingerprint}, "
                                     f"not the loaded model {fingerprint}")
        if self.h_space != h_space:
            raise ModelMismatchError(f"{name} is for h-space point '{self.h_space}', "
                                     f"not '{h_space}'")
        if h_shape is not None and tuple(self.delta_h.shape[2:]) != tuple(h_shape):
            raise ModelMismatchError(f"{name} has h of shape {tuple(self.delta_h.shape[2:])}, "
                                     f"the model's is {tuple(h_shape)}")

    def for_timesteps(self, timesteps: torch.Tensor) -> "DirectionSet":
        """The same directions on other timesteps, each taken from the nearest timestep."""
        timesteps = timesteps.long().cpu()
        if torch.equal(timesteps, self.timesteps):
            return self
        dist = (timesteps[:, None] - self.timesteps[None, :]).abs()
        idx = dist.argmin(1)
        values = None
        if self.values is not None:
            values = [[v[int(j)] for j in idx] for v in self.values]
        return replace(self, delta_h=self.delta_h[:, idx], timesteps=timesteps, values=values,
                       labels=list(self.labels))

    def steps_delta(self, k: int, at_step: Optional[int] = None) -> torch.Tensor:
        """(T, C, H, W) change of h for direction ``k``: per step, or step ``at_step``'s
        vector at every step (how masked Jacobian edits are applied)."""
        if not 0 <= k < len(self):
            raise IndexError(f"direction index {k} out of range (the file has {len(self)})")
        d = self.delta_h[k]
        if at_step is None:
            return d
        if not 0 <= at_step < self.steps:
            raise IndexError(f"step {at_step} out of range (0..{self.steps - 1})")
        return d[at_step][None].expand_as(d).clone()

    def subset(self, indices: Sequence[int]) -> "DirectionSet":
        idx = list(indices)
        values = [self.values[i] for i in idx] if self.values is not None else None
        return replace(self, delta_h=self.delta_h[idx], labels=[self.labels[i] for i in idx],
                       values=values)


def disentangle(d: torch.Tensor, against: Sequence[torch.Tensor], per_step: bool = False,
                rtol: float = 1e-10) -> torch.Tensor:
    """Project ``d`` onto the orthogonal complement of the span of ``against``.

    Least squares in float64 through an SVD of the conditions, so nearly collinear
    conditions are handled: singular values below ``rtol`` times the largest are
    treated as one repeated direction. With ``per_step`` the projection is done
    separately at every step (first axis); otherwise on the whole flattened vector.
    """
    if not against:
        return d.clone()
    for a in against:
        if a.shape != d.shape:
            raise ValueError(f"cannot disentangle: shapes {tuple(d.shape)} and {tuple(a.shape)} differ")
    if per_step:
        return torch.stack([disentangle(d[i], [a[i] for a in against], False, rtol)
                            for i in range(d.shape[0])])
    W = torch.stack([a.reshape(-1).double() for a in against], 1)  # (D, K)
    U, S, _ = torch.linalg.svd(W, full_matrices=False)
    if S.numel() == 0 or S[0] == 0:
        return d.clone()
    U = U[:, S > rtol * S[0]]
    v = d.reshape(-1).double()
    v = v - U @ (U.T @ v)
    return v.reshape(d.shape).to(d.dtype)


def disentangle_set(target: DirectionSet, k: int, against: Sequence[DirectionSet],
                    against_idx: Sequence[int], label: Optional[str] = None) -> DirectionSet:
    """A one-direction set: ``target[k]`` disentangled from ``against[i][against_idx[i]]``."""
    conds = []
    for s, j in zip(against, against_idx):
        s.check_model(target.fingerprint, target.h_space)
        conds.append(s.for_timesteps(target.timesteps).delta_h[j])
    d = disentangle(target.delta_h[k], conds)
    names = [s.labels[j] for s, j in zip(against, against_idx)]
    return DirectionSet(
        delta_h=d[None], timesteps=target.timesteps.clone(), fingerprint=target.fingerprint,
        h_space=target.h_space, method="disentangled",
        labels=[label or f"{target.labels[k]} ⟂ {', '.join(names)}"],
        values=[target.values[k]] if target.values is not None else None,
        params={"target": {"label": target.labels[k], "method": target.method, "params": target.params},
                "against": names})
