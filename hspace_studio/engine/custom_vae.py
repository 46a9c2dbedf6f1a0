"""A custom autoencoder in place of the one a model ships (``--vae``).

- a diffusers folder (``config.json`` and its weights), loaded as its config names;
- a ``.safetensors`` file in diffusers' key layout: the model's own autoencoder with these
  weights (so it must have the same architecture);
- a ``.safetensors`` file in the original (LDM) layout that community VAEs are shared in:
  converted by diffusers' ``from_single_file`` with the model's own autoencoder config,
  offline.

The autoencoder is part of the model: the fingerprint covers it and recipes record its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..core.errors import ModelLoadError, reason


def load_vae(spec: str, like: torch.nn.Module, like_dir: Optional[Path] = None):
    """The autoencoder at ``spec``, for a model whose own one is ``like`` (loaded from
    ``like_dir``; None: its config is written to a temporary folder when needed)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(f"no autoencoder '{spec}' (a diffusers folder or a .safetensors file)")
    cls = type(like)
    try:
        if path.is_dir():
            return cls.from_pretrained(path)
        if path.suffix != ".safetensors":
            raise ModelLoadError(f"{spec}: an autoencoder file must be .safetensors (a pickled file could "
                                 "run code when loaded)")
        from safetensors.torch import load_file

        state = load_file(str(path))
        own = like.state_dict()
        if set(state) == set(own):  # diffusers' layout: the model's own architecture
            vae = cls.from_config(like.config)
            vae.load_state_dict(state)
            return vae
        if like_dir is None:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                like.save_config(tmp)
                return cls.from_single_file(str(path), config=tmp, local_files_only=True)
        return cls.from_single_file(str(path), config=str(like_dir), local_files_only=True)
    except ModelLoadError:
        raise
    except Exception as e:  # diffusers raises many types for files it cannot use
        first = reason(e)
        raise ModelLoadError(f"cannot use the autoencoder {spec} with this model: {first[:200]}") from e
