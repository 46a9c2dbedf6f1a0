"""Reading and writing the project's safetensors files with clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.atomic import atomic_path
from ..core.errors import FileFormatError


def save_tensors(path, tensors: dict, metadata: dict) -> None:
    """Write tensors and JSON-encoded metadata atomically."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_tensors(path, required, kind: str):
    """Return ``(tensors, metadata)``; metadata values are JSON-decoded where possible."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{kind} file not found: {p}")
    if not p.is_file():
        raise FileFormatError(f"{p} is not a file")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise FileFormatError(f"{p} is not a readable {kind} file (truncated or not safetensors)") from e
    missing = [k for k in required if k not in tensors]
    if missing:
        raise FileFormatError(f"{p} is not a {kind} file: missing {', '.join(missing)}")
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise FileFormatError(f"{p}: tensor '{k}' contains NaN or infinite values")
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply: keep the text
            meta[k] = v
    return tensors, meta
