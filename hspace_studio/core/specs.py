"""The file references the command line, the app and the Python API take: ``FILE:INDEX`` (one
direction of a set) and ``FILE:WEIGHT`` (a LoRA at a weight)."""
from __future__ import annotations

from typing import Optional, Tuple


def split_index(value: str) -> Tuple[str, Optional[int]]:
    """'file.safetensors:3' -> ('file.safetensors', 3); 'file.safetensors' -> (file, None)."""
    head, sep, tail = value.rpartition(":")
    if sep and head and tail.isdigit():
        return head, int(tail)
    return value, None


def split_weight(value: str, default: float = 1.0) -> Tuple[str, float]:
    """'style.safetensors:0.7' -> ('style.safetensors', 0.7); without a number after the last
    colon, the whole value at ``default``. A weight that is not finite is a ValueError."""
    head, sep, tail = str(value).rpartition(":")
    if sep and head:
        try:
            w = float(tail)
        except ValueError:
            return str(value), float(default)
        if not w == w or w in (float("inf"), float("-inf")):
            raise ValueError(f"a LoRA weight must be a finite number, got '{tail}'")
        return head, w
    return str(value), float(default)
