"""LoRA files on a pipeline's denoiser and text encoders.

``FILE[:WEIGHT]`` (weight 1 by default), one or several: each is loaded by the pipeline's own
``load_lora_weights`` (the formats diffusers reads: diffusers, kohya, PEFT) as a named adapter,
and the adapters are set active together with their weights (``set_adapters``), as a user of
the diffusers pipeline would. They are part of the model: its fingerprint covers each file's
contents and weight, and :func:`records` is what recipes and sessions keep, so an export
replays and a direction says which weights it was found on.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ..core.errors import ModelLoadError, reason
from ..core.specs import split_weight


@dataclass(frozen=True)
class LoRA:
    path: str
    weight: float = 1.0


def parse_lora(spec: str) -> LoRA:
    """``"style.safetensors"`` or ``"style.safetensors:0.7"``."""
    return LoRA(*split_weight(spec))


def as_loras(items) -> List[LoRA]:
    """LoRAs from specs, ``LoRA`` objects or recipe dicts (``{"path", "weight"}``)."""
    out = []
    for it in items or ():
        if isinstance(it, LoRA):
            out.append(it)
        elif isinstance(it, dict):
            out.append(LoRA(str(it["path"]), float(it.get("weight", 1.0))))
        else:
            out.append(parse_lora(str(it)))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def apply(pipe, loras: Sequence[LoRA]) -> List[dict]:
    """Load ``loras`` into ``pipe`` and make them active with their weights; returns their
    records ({path, weight, sha256})."""
    loras = list(loras)
    if not loras:
        return []
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelLoadError(f"{type(pipe).__name__} models take no LoRA")
    names, weights, recs = [], [], []
    for i, lora in enumerate(loras):
        path = Path(lora.path).expanduser()
        if not path.exists():
            raise ModelLoadError(f"no LoRA file '{lora.path}'")
        name = f"lora{i}"
        try:
            if path.is_dir():
                pipe.load_lora_weights(str(path), adapter_name=name)
            else:
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
        except ModelLoadError:
            raise
        except Exception as e:  # diffusers and peft raise many types for files they cannot use
            first = reason(e)
            raise ModelLoadError(f"cannot load the LoRA {lora.path}: {first[:200]}") from e
        names.append(name)
        weights.append(float(lora.weight))
        recs.append({"path": str(path.resolve()), "weight": float(lora.weight),
                     "sha256": _sha256(path) if path.is_file() else None})
    pipe.set_adapters(names, adapter_weights=weights)
    return recs


def fingerprint_with(base: str, recs: Optional[List[dict]]) -> str:
    """The fingerprint of the base weights with these LoRAs on them (the base one without)."""
    if not recs:
        return base
    h = hashlib.sha256(base.encode())
    for r in recs:
        h.update(f"{r.get('sha256')}:{float(r['weight'])!r}".encode())
    return h.hexdigest()[:16]


def records(recs: Optional[List[dict]]) -> List[dict]:
    """What a recipe or session keeps of them: path and weight."""
    return [{"path": r["path"], "weight": float(r["weight"])} for r in recs or ()]
