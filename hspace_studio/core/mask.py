"""The mask document: a boolean image painted with brush strokes, with undoable edits.

No Qt, no torch: a numpy array of shape (H, W) at the model's image resolution and
the operations the brush tool performs on it. Every change is described by a
:class:`MaskChange` (the array before and after, and a name), which the GUI wraps in
one ``QUndoCommand`` per stroke or action.

Coordinates are image pixels as floats: (x, y) = (0.5, 0.5) is the centre of the
top-left pixel. A brush of radius r covers every pixel whose centre lies within r of
the stroke's path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import FileFormatError, ImageError


@dataclass(frozen=True)
class MaskChange:
    """One undoable change: the whole array before and after (masks are small)."""

    name: str
    before: np.ndarray
    after: np.ndarray

    @property
    def changed(self) -> bool:
        return not np.array_equal(self.before, self.after)


class Stroke:
    """A stroke in progress: a polyline of brush stamps painted or erased."""

    def __init__(self, doc: "MaskDocument", radius: float, erase: bool) -> None:
        self.doc = doc
        self.radius = max(0.5, float(radius))
        self.erase = bool(erase)
        self.points: List[Tuple[float, float]] = []
        self.before = doc.array.copy()

    def add(self, x: float, y: float) -> None:
        """Extend the stroke to (x, y), stamping the segment from the previous point."""
        p = (float(x), float(y))
        prev = self.points[-1] if self.points else p
        self.points.append(p)
        self.doc._stamp_segment(prev, p, self.radius, not self.erase)

    def finish(self) -> MaskChange:
        name = "Erase" if self.erase else "Paint"
        return MaskChange(name, self.before, self.doc.array.copy())


class MaskDocument:
    """A boolean mask of ``shape`` (H, W) and the operations that change it."""

    def __init__(self, shape: Tuple[int, int]) -> None:
        h, w = int(shape[0]), int(shape[1])
        if h < 1 or w < 1:
            raise ValueError(f"mask shape must be positive, got {shape}")
        self.array = np.zeros((h, w), dtype=bool)
        ys, xs = np.mgrid[0:h, 0:w]
        self._cx = xs + 0.5
        self._cy = ys + 0.5

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def empty(self) -> bool:
        return not self.array.any()

    def coverage(self) -> float:
        """Fraction of pixels in the mask."""
        return float(self.array.mean())

    # -- painting ------------------------------------------------------------------
    def begin_stroke(self, radius: float, erase: bool = False) -> Stroke:
        return Stroke(self, radius, erase)

    def _stamp_segment(self, a, b, radius: float, value: bool) -> None:
        (x0, y0), (x1, y1) = a, b
        # bounding box of the swept disc, clipped to the image
        h, w = self.array.shape
        lo_x = max(0, int(math.floor(min(x0, x1) - radius)))
        hi_x = min(w, int(math.ceil(max(x0, x1) + radius)) + 1)
        lo_y = max(0, int(math.floor(min(y0, y1) - radius)))
        hi_y = min(h, int(math.ceil(max(y0, y1) + radius)) + 1)
        if lo_x >= hi_x or lo_y >= hi_y:
            return
        cx = self._cx[lo_y:hi_y, lo_x:hi_x]
        cy = self._cy[lo_y:hi_y, lo_x:hi_x]
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        if ll == 0:
            t = 0.0
        else:  # projection of each pixel centre onto the segment, clamped
            t = np.clip(((cx - x0) * dx + (cy - y0) * dy) / ll, 0.0, 1.0)
        px, py = x0 + t * dx, y0 + t * dy
        inside = (cx - px) ** 2 + (cy - py) ** 2 <= radius * radius
        self.array[lo_y:hi_y, lo_x:hi_x][inside] = value

    def stroke(self, points: Sequence[Tuple[float, float]], radius: float,
               erase: bool = False) -> MaskChange:
        """Paint (or erase) a whole polyline at once; returns the change."""
        s = self.begin_stroke(radius, erase)
        for x, y in points:
            s.add(x, y)
        return s.finish()

    # -- whole-mask actions ----------------------------------------------------------
    def _replace(self, name: str, new: np.ndarray) -> MaskChange:
        before = self.array.copy()
        self.array = np.ascontiguousarray(new, dtype=bool).copy()
        return MaskChange(name, before, self.array.copy())

    def clear(self) -> MaskChange:
        return self._replace("Clear mask", np.zeros_like(self.array))

    def fill(self) -> MaskChange:
        return self._replace("Fill mask", np.ones_like(self.array))

    def invert(self) -> MaskChange:
        return self._replace("Invert mask", ~self.array)

    def combine(self, other: np.ndarray, mode: str = "add", name: Optional[str] = None) -> MaskChange:
        """Combine with a boolean array of the same shape: ``add``, ``replace``,
        ``subtract`` or ``intersect``."""
        other = np.asarray(other, dtype=bool)
        if other.shape != self.array.shape:
            raise ValueError(f"mask shape {other.shape} does not match {self.array.shape}")
        new = {"add": lambda: self.array | other, "replace": lambda: other.copy(),
               "subtract": lambda: self.array & ~other,
               "intersect": lambda: self.array & other}.get(mode)
        if new is None:
            raise ValueError(f"unknown combine mode '{mode}'")
        return self._replace(name or f"Mask {mode}", new())

    def set_array(self, array: np.ndarray, name: str = "Set mask") -> MaskChange:
        array = np.asarray(array)
        if array.shape != self.array.shape:
            array = resize_nearest(array.astype(bool), self.array.shape)
        return self._replace(name, array.astype(bool))

    def apply(self, state: np.ndarray) -> None:
        """Set the array to ``state`` (used by undo / redo)."""
        self.array = state.copy()

    # -- files -------------------------------------------------------------------------
    def save_png(self, path) -> None:
        """Write the mask as an 8-bit greyscale PNG (255 inside), atomically."""
        import io

        from PIL import Image

        from .atomic import write_bytes

        buf = io.BytesIO()
        Image.fromarray(self.array.astype(np.uint8) * 255, "L").save(buf, format="PNG")
        write_bytes(path, buf.getvalue())

    def load_png(self, path) -> MaskChange:
        """Read a mask image (any mode: a pixel is inside where its luminance, or its
        alpha for images with transparency, is at least half); resized to this mask's
        shape by nearest neighbour."""
        return self.set_array(read_mask_png(path, self.array.shape), "Load mask")


def resize_nearest(a: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    h, w = a.shape[:2]
    H, W = int(shape[0]), int(shape[1])
    ys = np.minimum((np.arange(H) + 0.5) * h / H, h - 1).astype(int)
    xs = np.minimum((np.arange(W) + 0.5) * w / W, w - 1).astype(int)
    return a[ys][:, xs]


MAX_MASK_PIXELS = 100_000_000  # as for images (engine.images.MAX_PIXELS)


def _mask_values(img) -> np.ndarray:
    """Float (H, W) in [0, 1] from a PIL image of any mode: alpha where the image has
    transparency that is not all opaque, else luminance, as a share of full scale."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if mode.startswith("I;16"):
            full = 65535.0
        elif mode == "F" and a.size and float(a.max()) <= 1.0:
            full = 1.0  # float masks in [0, 1]
        else:
            full = 65535.0 if a.size and float(a.max()) > 255 else 255.0
        return np.clip(a / full, 0.0, 1.0).astype(np.float32)
    if mode in ("LAB", "HSV"):  # Pillow cannot convert these to L: use lightness / value
        return np.asarray(img.getchannel(0 if mode == "LAB" else 2), dtype=np.float32) / 255.0
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        a = np.asarray(img.convert("RGBA"))[..., 3]
        if a.size and a.min() < 255:
            return a.astype(np.float32) / 255.0
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def read_mask_image(path) -> np.ndarray:
    """Read a mask image (PNG or any format Pillow reads) as float (H, W) weights in [0, 1]
    (see :func:`_mask_values`): the one reader of mask files, for the brush and the engine.

    Every problem (missing, not a file, not an image, truncated, too large, an odd mode)
    raises :class:`~.errors.ImageError`.
    """
    import warnings

    from PIL import Image

    p = Path(path)
    if not p.exists():
        raise ImageError(f"mask file not found: {p}")
    if not p.is_file():
        raise ImageError(f"{p} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                if img.width * img.height > MAX_MASK_PIXELS:
                    raise ImageError(f"{p} is too large for a mask ({img.width}x{img.height})")
                if img.width < 1 or img.height < 1:
                    raise ImageError(f"{p} is an empty image ({img.width}x{img.height})")
                img.load()
                out = _mask_values(img)
    except ImageError:
        raise
    except MemoryError as e:
        raise ImageError(f"{p} is too large to read as a mask") from e
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types on bad bytes
        raise ImageError(f"{p} is not a readable image ({type(e).__name__})") from e
    if out.ndim != 2 or out.size == 0:
        raise FileFormatError(f"{p}: unexpected mask image layout {out.shape}")
    return out


def read_mask_png(path, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A mask image (:func:`read_mask_image`) as a boolean array, inside where the weight
    is at least one half; resized to ``shape`` by nearest neighbour."""
    out = read_mask_image(path) >= 0.5
    if shape is not None and out.shape != tuple(shape):
        out = resize_nearest(out, shape)
    return out
