"""Reading a checkpoint file: its tensor names and shapes, or its tensors.

A safetensors file's names and shapes come from its header alone. A pickled file is read
with ``torch.load(weights_only=True)``: tensors only, no code runs; one that needs more is
refused, saying why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch

from ..core.checkpoint_names import SAFETENSORS
from ..core.errors import ModelLoadError, reason


def read_shapes(path) -> Dict[str, Tuple[int, ...]]:
    """Tensor name -> shape of a checkpoint file; a safetensors file's header only. A pickled
    file is read weights-only (its tensors mapped, not copied, where the format allows)."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for a damaged header
            raise ModelLoadError(f"{path}: not a readable safetensors file ({reason(e, 120)})") from e
    return {k: tuple(v.shape) for k, v in load_pickled(path).items()}


def load_pickled(path: Path) -> dict:
    """A pickled checkpoint's tensors by name, read weights-only (``state_dict`` unwrapped)."""
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # an old (non-zip) file cannot be mapped
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights-only refusal (UnpicklingError), truncated or not a torch file
        if type(e).__name__ != "UnpicklingError":
            raise ModelLoadError(f"{path}: not a readable checkpoint ({reason(e, 120)})") from e
        raise ModelLoadError(f"{path}: this pickled file holds more than tensors, and loading it could run "
                             f"code ({reason(e, 100)}); hspace-studio reads pickled checkpoints weights-only. "
                             f"Convert it to .safetensors with a tool you trust") from e
    while isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"{path}: not a checkpoint of tensors by name")
    return sd


def load_weights(path) -> Dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file, by name."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS:
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise ModelLoadError(f"{path}: not a readable safetensors file ({reason(e, 120)})") from e
    return load_pickled(path)
