"""The configs a checkpoint file lacks, shipped for the common families (used offline).

``resources/checkpoint-configs/`` holds, per family, the diffusers folder of its reference
model without weights: ``model_index.json`` and every component's config (SD 1.x:
stable-diffusion-v1-5's; SDXL: stable-diffusion-xl-base-1.0's), and once for all the CLIP
BPE merges (``clip-merges.txt.gz``, the 48,894 merges of CLIP's tokenizer). A CLIP
tokenizer's vocabulary follows from its merges (the 256 byte symbols, the same with ``</w>``,
one token per merge, then the start and end tokens: 49,408 ids), so :func:`shipped_config`
writes ``vocab.json`` and ``merges.txt`` beside each tokenizer config in a user cache
folder and returns that folder, complete, for ``from_single_file``'s ``config``.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Optional

SHIPPED = Path(__file__).resolve().parent.parent.parent / "resources" / "checkpoint-configs"
FOLDERS = {"SD 1.x": "sd1", "SDXL": "sdxl"}  # family (checkpoint_file.CheckpointKind.family) -> folder


def cache_root() -> Path:
    """Where hspace-studio keeps files it derives (``$HSPACE_CACHE``, else the user cache folder)."""
    if os.environ.get("HSPACE_CACHE"):
        return Path(os.environ["HSPACE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hspace-studio"


def byte_symbols() -> list:
    """The 256 symbols byte-level BPE writes bytes as, in its vocabulary's order: first the
    printable Latin-1 bytes, which stand for themselves, in byte order; then the other bytes,
    in byte order, as the code points from 256 up."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in set(keep)]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def clip_vocab(merges) -> dict:
    """CLIP's token -> id from its merges (each a "a b" line)."""
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def _write_tokenizer(folder: Path) -> None:
    text = gzip.open(SHIPPED / "clip-merges.txt.gz", "rt", encoding="utf-8").read()
    merges = [m for m in text.split("\n")[1:] if m]
    (folder / "merges.txt").write_text(text, encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(merges), ensure_ascii=False), encoding="utf-8")


def shipped_config(family: str) -> Optional[Path]:
    """A complete config folder (configs and tokenizers, no weights) for ``family``, or None
    where none is shipped."""
    name = FOLDERS.get(family)
    if name is None or not (SHIPPED / name).is_dir():
        return None
    dest = cache_root() / "checkpoint-configs" / name
    src_files = sorted(p.relative_to(SHIPPED / name) for p in (SHIPPED / name).rglob("*") if p.is_file())
    tokenizers = sorted({p.parent for p in src_files if p.parent.name.startswith("tokenizer")})
    done = all((dest / p).is_file() for p in src_files) and all(
        (dest / t / "vocab.json").is_file() for t in tokenizers)
    if not done:
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(SHIPPED / name, tmp)
        for t in tokenizers:
            _write_tokenizer(tmp / t)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)  # whole or not at all
    return dest
