"""Which file names are single-file checkpoints (``--model FILE``), by suffix."""
from __future__ import annotations

from pathlib import Path

SAFETENSORS = (".safetensors", ".sft")
PICKLED = (".ckpt", ".pt", ".pth", ".bin")  # read weights-only (engine.checkpoint_file)
CHECKPOINT_SUFFIXES = SAFETENSORS + PICKLED


def has_checkpoint_suffix(path) -> bool:
    """Whether ``path`` is named as a checkpoint file (it need not exist)."""
    return Path(str(path)).suffix.lower() in CHECKPOINT_SUFFIXES
