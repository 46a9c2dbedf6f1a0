"""The shipped attribute classifier and face-part segmenter for the toyfaces domain.

Plain torch modules, no Qt. Both take images as float tensors (N, 3, H, W) in [-1, 1]
(64x64 is what they are trained on; other sizes work).

A model folder holds three files:

- ``model.safetensors``: the state dict (float32),
- ``config.json``: the architecture sizes (``{"kind": "classifier", "width": 32, ...}``),
- ``attributes.json`` (classifier) or ``parts.json`` (segmenter): a JSON list of the
  output names, in output order.

``load_classifier(folder)`` / ``load_segmenter(folder)`` return ``(module in eval mode,
names)`` and raise the project's :class:`~hspace_studio.core.errors.FileFormatError` with
a readable message on a missing or bad file: ``MissingFileError`` (also a
``FileNotFoundError``) or ``InvalidFileError`` (also a ``ValueError``). A config that asks
for absurd sizes is refused before any memory is allocated (the architecture is built on
the ``meta`` device and checked against the weights file's header first). ``save_classifier`` / ``save_segmenter`` write the folder, each file
through a temporary file and ``os.replace``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import InvalidFileError, MissingFileError, reason

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MAX_SIZE = 4096  # widths, feature sizes, pool sizes and name counts a config may ask for
MAX_JSON_BYTES = 16 * 1024 * 1024
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "torch.float64", "torch.float32", "torch.float16",
                "torch.bfloat16")


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ToyFaceClassifier(nn.Module):
    """Small CNN: four stride-2 stages, a 4x4 adaptive pool (keeps coarse layout, which
    geometric attributes such as face width and gaze need), a feature layer of
    ``feature_dim`` units (``features``) and a linear head of ``n_attributes`` logits."""

    def __init__(self, n_attributes: int, width: int = 32, feature_dim: int = 128, pool: int = 4):
        super().__init__()
        self.config = {"n_attributes": int(n_attributes), "width": int(width),
                       "feature_dim": int(feature_dim), "pool": int(pool)}
        w = width
        self.body = nn.Sequential(
            _conv_bn(3, w),                      # 64
            _conv_bn(w, w, 2),                   # 32
            _conv_bn(w, 2 * w),
            _conv_bn(2 * w, 2 * w, 2),           # 16
            _conv_bn(2 * w, 3 * w),
            _conv_bn(3 * w, 3 * w, 2),           # 8
            _conv_bn(3 * w, 4 * w),
            _conv_bn(4 * w, 4 * w, 2),           # 4
        )
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * w * pool * pool, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(feature_dim, n_attributes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim), e.g. for a Frechet distance."""
        return self.fc(self.pool(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ToyFaceSegmenter(nn.Module):
    """Tiny U-Net: three down stages, three up stages with skip connections, per-pixel
    logits (N, n_parts, H, W). H and W need not be multiples of 8."""

    def __init__(self, n_parts: int, width: int = 16):
        super().__init__()
        self.config = {"n_parts": int(n_parts), "width": int(width)}
        w = width
        self.enc0 = nn.Sequential(_conv_bn(3, w), _conv_bn(w, w))                    # 1
        self.enc1 = nn.Sequential(_conv_bn(w, 2 * w, 2), _conv_bn(2 * w, 2 * w))     # 1/2
        self.enc2 = nn.Sequential(_conv_bn(2 * w, 4 * w, 2), _conv_bn(4 * w, 4 * w))  # 1/4
        self.mid = nn.Sequential(_conv_bn(4 * w, 6 * w, 2), _conv_bn(6 * w, 6 * w))   # 1/8
        self.dec2 = nn.Sequential(_conv_bn(6 * w + 4 * w, 4 * w), _conv_bn(4 * w, 4 * w))
        self.dec1 = nn.Sequential(_conv_bn(4 * w + 2 * w, 2 * w), _conv_bn(2 * w, 2 * w))
        self.dec0 = nn.Sequential(_conv_bn(2 * w + w, w), _conv_bn(w, w))
        self.out = nn.Conv2d(w, n_parts, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = self.dec2(torch.cat([self._up(m, e2), e2], 1))
        d1 = self.dec1(torch.cat([self._up(d2, e1), e1], 1))
        d0 = self.dec0(torch.cat([self._up(d1, e0), e0], 1))
        return self.out(d0)


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save(folder, module: nn.Module, kind: str, names, names_file: str, extra: dict | None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in names]
    n_out = module.config["n_attributes" if kind == "classifier" else "n_parts"]
    if len(names) != n_out:
        raise ValueError(f"{len(names)} names given for a {kind} with {n_out} outputs")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()
             if v.is_floating_point()}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"kind": kind, "format_version": str(FORMAT_VERSION)})
    os.chmod(tmp, 0o644)  # safetensors creates the file owner-only
    os.replace(tmp, folder / WEIGHTS_FILE)
    config = {"kind": kind, "format_version": FORMAT_VERSION, **module.config}
    if extra:
        config["training"] = extra
    _write_atomic(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    _write_atomic(folder / names_file, (json.dumps(names, indent=2) + "\n").encode())
    return folder


def _read_json(path: Path, what: str):
    from ..core.jsonfile import read_json

    return read_json(path, what, max_bytes=MAX_JSON_BYTES)


def _size(config: dict, key: str, default=None) -> int:
    """A positive architecture size from ``config`` (at most ``MAX_SIZE``)."""
    v = config.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{key} must be a whole number, not {v!r}"[:120])
    v = int(v)  # ValueError / OverflowError for junk, NaN and infinities
    if not 1 <= v <= MAX_SIZE:
        raise ValueError(f"{key} must be between 1 and {MAX_SIZE}, not {v}")
    return v


def _header_shapes(wpath: Path) -> dict:
    """Tensor name -> (shape, dtype) from a safetensors header, without reading the data."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(wpath), framework="pt") as f:
        for k in f.keys():
            sl = f.get_slice(k)
            out[k] = (tuple(int(n) for n in sl.get_shape()), str(sl.get_dtype()))
    return out


def _load(folder, kind: str, names_file: str, build):
    """Load a classifier / segmenter folder. Every problem with its files raises a
    :class:`~hspace_studio.core.errors.FileFormatError` (``MissingFileError``, also a
    ``FileNotFoundError``; ``InvalidFileError``, also a ``ValueError``). Nothing is
    unpickled: the weights are safetensors, the rest JSON."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{kind} folder not found: {folder}")
    config = _read_json(folder / CONFIG_FILE, f"{kind} config")
    if not isinstance(config, dict) or config.get("kind") != kind:
        raise InvalidFileError(f"{folder / CONFIG_FILE} does not describe a {kind} "
                               f"(kind={config.get('kind') if isinstance(config, dict) else None!r})"[:300])
    if config.get("format_version") != FORMAT_VERSION:
        raise InvalidFileError(f"{folder / CONFIG_FILE}: unsupported format_version "
                               f"{config.get('format_version')!r} (expected {FORMAT_VERSION})"[:300])
    names = _read_json(folder / names_file, f"{kind} names file")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidFileError(f"{folder / names_file} must be a non-empty JSON list of strings")
    if len(names) > MAX_SIZE:
        raise InvalidFileError(f"{folder / names_file} has {len(names)} names (at most {MAX_SIZE})")
    if len(set(names)) != len(names):
        raise InvalidFileError(f"{folder / names_file} has duplicate names")
    try:  # on the meta device first: no memory, whatever sizes the config claims
        with torch.device("meta"):
            meta_module = build(config, len(names))
    except (TypeError, ValueError, KeyError, OverflowError, RuntimeError) as e:
        raise InvalidFileError(f"{folder / CONFIG_FILE}: bad architecture sizes: "
                               f"{reason(e, 120)}") from None
    wpath = folder / WEIGHTS_FILE
    if not wpath.is_file():
        raise MissingFileError(f"{kind} weights not found: {wpath}")
    try:
        header = _header_shapes(wpath)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        raise InvalidFileError(f"{wpath} is not a readable safetensors file: "
                               f"{reason(e, 120)}") from None
    own = {k: v for k, v in meta_module.state_dict().items() if v.is_floating_point()}
    expected = set(own)
    missing, unexpected = expected - set(header), set(header) - expected
    if missing or unexpected:
        raise InvalidFileError(
            f"{wpath} does not match the {kind} in {CONFIG_FILE} and {names_file} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}; "
            f"{len(names)} names)"[:400])
    for k in sorted(expected):
        shape, dtype = header[k]
        if shape != tuple(own[k].shape):
            raise InvalidFileError(
                f"{wpath}: tensor {k} has shape {shape}, the {kind} described by "
                f"{CONFIG_FILE} and {names_file} ({len(names)} names) needs {tuple(own[k].shape)}")
        if dtype not in FLOAT_DTYPES:
            raise InvalidFileError(f"{wpath}: tensor {k} has dtype {dtype}, expected floating point")
    try:
        state = load_file(str(wpath))
    except Exception as e:  # noqa: BLE001 - e.g. a header that promises more bytes than there are
        raise InvalidFileError(f"{wpath} is not a readable safetensors file: "
                               f"{reason(e, 120)}") from None
    for k in sorted(expected):
        if not torch.isfinite(state[k]).all():
            raise InvalidFileError(f"{wpath}: tensor {k} contains NaN or infinite values")
    module = build(config, len(names))
    try:
        module.load_state_dict({k: state[k] for k in expected}, strict=False)
    except RuntimeError as e:  # pragma: no cover - shapes were checked above
        raise InvalidFileError(f"{wpath}: {reason(e, 200)}") from None
    module.eval()
    return module, names


def save_classifier(folder, model: ToyFaceClassifier, names, extra: dict | None = None) -> Path:
    return _save(folder, model, "classifier", names, "attributes.json", extra)


def save_segmenter(folder, model: ToyFaceSegmenter, names, extra: dict | None = None) -> Path:
    return _save(folder, model, "segmenter", names, "parts.json", extra)


def load_classifier(folder):
    """Return ``(ToyFaceClassifier in eval mode, attribute names)``."""
    return _load(folder, "classifier", "attributes.json",
                 lambda c, n: ToyFaceClassifier(n, width=_size(c, "width"),
                                                feature_dim=_size(c, "feature_dim"),
                                                pool=_size(c, "pool", 4)))


def load_segmenter(folder):
    """Return ``(ToyFaceSegmenter in eval mode, part names)``."""
    return _load(folder, "segmenter", "parts.json",
                 lambda c, n: ToyFaceSegmenter(n, width=_size(c, "width")))


__all__ = ["ToyFaceClassifier", "ToyFaceSegmenter", "load_classifier", "load_segmenter",
           "save_classifier", "save_segmenter"]
