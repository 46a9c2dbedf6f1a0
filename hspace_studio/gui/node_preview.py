"""Slider previews from the thumbnail strip, in numpy alone (the UI thread runs no torch).

While a slider moves, the canvas shows at once a cross-fade of the two exact images of
the moved direction at the node scales around the slider's value (the library strip's
five scales -R, -R/2, 0, R/2, R, rendered with the other active edits), the nearest
node's image outside them; the exact image replaces it when the engine has it. This is
:class:`hspace_studio.engine.preview.NodePreview` re-done on uint8 pixels: exact at every
node, never outside the range of real images between them. On the default model it was
23-39 dB PSNR against the exact edit where the unchanged image was 15-31 dB and a
first-order (tangent) image usually worse than that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class NodeImages:
    """Exact images (N, H, W, 3) uint8 of one direction at ascending scales (N,), and the
    context they were rendered in (whatever the caller compares: image, other edits ...)."""

    scales: np.ndarray
    images: np.ndarray
    context: object = None

    @classmethod
    def from_strip(cls, scales: Sequence[float], images: Sequence[np.ndarray], context=None) -> "NodeImages":
        s = np.asarray([float(v) for v in scales], dtype=np.float64)
        if s.size < 1 or s.size != len(images):
            raise ValueError("give one image per node scale")
        order = np.argsort(s, kind="stable")
        s = s[order]
        if np.any(s[1:] == s[:-1]):
            raise ValueError("node scales must be distinct")
        imgs = np.stack([np.asarray(images[i], dtype=np.uint8) for i in order])
        return cls(s, imgs, context)

    def covers(self, scale: float) -> bool:
        """Whether ``scale`` lies between the first and the last node."""
        return bool(self.scales[0] <= float(scale) <= self.scales[-1])

    def pixels(self, scale: float) -> np.ndarray:
        """uint8 (H, W, 3): the cross-fade at ``scale`` (a node's own image at a node)."""
        return crossfade(self.scales, self.images, scale)

    def moved(self, base: np.ndarray, from_scale: float, to_scale: float) -> np.ndarray:
        """uint8 (H, W, 3): ``base`` (an exact image with this direction at ``from_scale``)
        plus what the strip's cross-fade changes from ``from_scale`` to ``to_scale``: the
        preview of a strip made under other edits than ``base`` was (a stale strip)."""
        step = self.pixels(to_scale).astype(np.int16) - self.pixels(from_scale).astype(np.int16)
        return (np.asarray(base, dtype=np.int16) + step).clip(0, 255).astype(np.uint8)


def crossfade(scales: np.ndarray, images: np.ndarray, scale: float) -> np.ndarray:
    """Linear interpolation between the images at the two node ``scales`` (ascending)
    around ``scale``; the first or last image outside them."""
    s = float(scale)
    n = len(scales)
    j = int(np.searchsorted(scales, s, side="left"))
    if j < n and scales[j] == s:
        return images[j].copy()
    if j <= 0 or n == 1:
        return images[0].copy()
    if j >= n:
        return images[-1].copy()
    a, b = float(scales[j - 1]), float(scales[j])
    w = np.float32((s - a) / (b - a))
    out = images[j - 1].astype(np.float32)
    out *= 1 - w
    out += w * images[j].astype(np.float32)
    return np.rint(out, out=out).clip(0, 255).astype(np.uint8)
