"""Image files <-> tensors: any size and mode in, the model's resolution out."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import ImageError

MAX_PIXELS = 100_000_000


def open_image(path) -> Image.Image:
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image not found: {p}")
    if not p.is_file():
        raise ImageError(f"{p} is not a file")
    try:
        img = Image.open(p)
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(f"{p} is too large ({img.width}x{img.height})")
        img.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{p} is not a readable image ({type(e).__name__})") from e
    return img


def to_rgb(img: Image.Image) -> Tuple[Image.Image, list]:
    """RGB 8-bit version of any PIL image, and notes on what was converted."""
    notes = []
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
        img = Image.fromarray(a, "L")
        notes.append(f"{mode} scaled to 8 bits")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
        notes.append("transparency composited on white")
    if img.mode != "RGB":
        if img.mode not in ("RGBA",):
            notes.append(f"{mode} converted to RGB")
        img = img.convert("RGB")
    return img, notes


def fit_image(img: Image.Image, size: Tuple[int, int]) -> Tuple[Image.Image, list]:
    """Centre-crop to the target aspect ratio and resize to ``size`` (H, W)."""
    h, w = size
    notes = []
    if img.size != (w, h):
        notes.append(f"{img.width}x{img.height} centre-cropped and resized to {w}x{h}")
        img = ImageOps.fit(img, (w, h), method=Image.LANCZOS, centering=(0.5, 0.5))
    return img, notes


def load_image(path, size: Tuple[int, int]) -> Tuple[torch.Tensor, str]:
    """(3, H, W) float tensor in [-1, 1] and a message describing any conversion."""
    img, n1 = to_rgb(open_image(path))
    img, n2 = fit_image(img, size)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    notes = n1 + n2
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), "; ".join(notes)


def to_pil(x: torch.Tensor) -> Image.Image:
    """PIL image from a (3, H, W) tensor in [-1, 1] (clamped)."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(a.permute(1, 2, 0).numpy(), "RGB")


def grid(images, cols: int, pad: int = 2, bg=(255, 255, 255)) -> Image.Image:
    """A grid of equally sized PIL images."""
    images = list(images)
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    out = Image.new("RGB", (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad), bg)
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * (w + pad), (i // cols) * (h + pad)))
    return out


def save_png(path, img: Image.Image, recipe: dict | None = None) -> None:
    """Write a PNG atomically, with ``recipe`` (JSON) in a text chunk named ``hspace-recipe``."""
    import io
    import json

    from PIL.PngImagePlugin import PngInfo

    from ..core.atomic import write_bytes

    info = PngInfo()
    if recipe is not None:
        info.add_text("hspace-recipe", json.dumps(recipe, sort_keys=True))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    write_bytes(path, buf.getvalue())


def read_recipe(path) -> dict | None:
    """The recipe stored by :func:`save_png`, or None."""
    import json

    img = open_image(path)
    text = getattr(img, "text", {}).get("hspace-recipe")
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ImageError(f"{path}: its recipe chunk is not valid JSON") from e
