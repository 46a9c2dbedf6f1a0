"""Plain result records the handlers return: the loaded model, the current image, an opened session,
slider previews and strips."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..core.session import SetState


@dataclass(frozen=True)
class ModelInfo:
    source: str
    fingerprint: str
    description: str
    image_size: Tuple[int, int]
    sample_shape: Tuple[int, ...]
    h_space: str
    h_shape: Tuple[int, ...]
    is_latent: bool
    num_train_timesteps: int
    weights_fingerprint: str = ""  # what direction files are made for (no guide)
    guide: Optional[str] = None
    guide_weight: Optional[float] = None
    timesteps: Optional[str] = None
    conditioning: Optional[dict] = None  # a text-to-image model's prompt settings (None: takes none)
    advice: Optional[dict] = None  # the domain's advice per attribute (engine.domain.Domain.advice)
    domain_images: bool = True  # the domain's default segmenter and classifier apply to its images
    h_points: Tuple[str, ...] = ("before", "middle", "after")  # the model's h-space points
    takes_negative: bool = True  # whether a conditional model takes a negative prompt
    loras: Tuple[Tuple[str, float], ...] = ()  # the LoRA files on the model and their weights
    model_config: Optional[str] = None  # the diffusers folder completing a checkpoint file
    checkpoint_family: Optional[str] = None  # what a checkpoint file was detected as ("SDXL" ...)


@dataclass(frozen=True)
class TrajectoryInfo:
    gen: int
    image: np.ndarray  # uint8 (H, W, 3)
    timesteps: Tuple[int, ...]
    source: dict  # {"kind": "seed"|"image"|"trajectory", ...}
    origin: dict
    h_space: str
    note: str = ""
    psnr: Optional[float] = None


@dataclass(frozen=True)
class SessionPayload:
    doc: dict
    model: Optional[ModelInfo]
    trajectory: Optional[TrajectoryInfo]
    sets: List[SetState]
    mask: Optional[np.ndarray]
    warnings: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class PreviewResult:
    """An image of a :class:`~.requests.PreviewRequest`: intermediate (``final`` False) or exact."""

    id: int
    image: object  # numpy uint8 (H, W, 3), or None (no image to edit, or an error)
    final: bool
    render_s: float  # worker time for this request so far
    step: int = 0
    steps: int = 0
    error: Optional[str] = None


@dataclass(frozen=True)
class StripResult:
    """The images of a :class:`~.requests.StripRequest`, one per scale."""

    id: int
    images: tuple  # numpy uint8 (H, W, 3) each
    scales: Tuple[float, ...]
    error: Optional[str] = None
