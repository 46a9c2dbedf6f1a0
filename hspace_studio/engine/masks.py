"""Masks in image pixels, as the engine uses them: soft weights at the resolution of x.

A mask is a PNG path (read by :func:`~..core.mask.read_mask_image`, the one reader of mask
images), a numpy array from the GUI's brush or a tensor. It is fitted to the model's
image size as images are, then area-resized to the resolution of x (the latent grid for
latent models). Its recipe stores the SHA-256, path, coverage and, for a binary mask, a
run-length encoding that :func:`mask_from_rle` turns back into the mask.
"""
from __future__ import annotations

import hashlib
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .model import DiffusionModel

RLE_MAX_RUNS = 8192


def mask_to_rle(binary: np.ndarray) -> List[int]:
    """Run lengths of a binary mask in row-major order, starting with a run of zeros."""
    flat = np.asarray(binary, dtype=bool).reshape(-1)
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


def mask_from_rle(rle: Sequence[int], shape: Tuple[int, int]) -> np.ndarray:
    """The boolean (H, W) mask of :func:`mask_to_rle`."""
    h, w = int(shape[0]), int(shape[1])
    if sum(int(r) for r in rle) != h * w or any(int(r) < 0 for r in rle):
        raise ValueError(f"run-length mask does not describe a {h}x{w} mask")
    vals = np.zeros(len(rle), dtype=bool)
    vals[1::2] = True
    return np.repeat(vals, np.asarray(rle, dtype=np.int64)).reshape(h, w)


def _mask_image_array(mask, size: Tuple[int, int]) -> Tuple[np.ndarray, Optional[str], List[str]]:
    """A float (H, W) array in [0, 1] at the model's image size, the source path, notes."""
    from PIL import Image

    from ..core.mask import read_mask_image
    from .images import fit_image

    notes: List[str] = []
    path = None
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        path = str(mask)
        mask = read_mask_image(path)  # the one mask-file reader: float weights in [0, 1]
    if torch.is_tensor(mask):
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., -1] if arr.shape[-1] == 4 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"a mask must be a 2-D array (H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    else:
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("the mask contains NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError("mask values must lie in [0, 1] (or 0..255 for uint8 arrays)")
    if tuple(arr.shape) != tuple(size):
        img = Image.fromarray((arr * 255).round().astype(np.uint8), "L")
        img, n = fit_image(img, size)
        notes += n
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr, path, notes


def prepare_mask(mask, model: DiffusionModel) -> Tuple[Optional[torch.Tensor], dict]:
    """Weights (1, 1, h, w) on eps at the resolution of x, and the mask's recipe.

    ``mask`` is None (no mask), a PNG path, or an (H, W) array/tensor in image pixels
    (bool, uint8 0..255 or float 0..1).
    """
    if mask is None:
        return None, {}
    arr, path, notes = _mask_image_array(mask, tuple(model.image_size))
    u8 = (arr * 255).round().astype(np.uint8)
    info = {"path": path, "shape": list(u8.shape),
            "sha256": hashlib.sha256(u8.tobytes()).hexdigest(),
            "coverage": float(arr.mean())}
    if notes:
        info["note"] = "; ".join(notes)
    binary = np.isin(u8, (0, 255)).all()
    if binary:
        rle = mask_to_rle(u8 > 127)
        if len(rle) <= RLE_MAX_RUNS:
            info["rle"] = rle
    w = torch.from_numpy(arr)[None, None]
    _, h, wd = model.sample_shape
    if tuple(w.shape[-2:]) != (h, wd):
        w = F.interpolate(w, size=(h, wd), mode="area")
    return w.to(model.device, torch.float32), info
