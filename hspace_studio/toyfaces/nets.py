"""The shipped attribute classifier and face-part segmenter for the toyfaces domain.

Plain torch modules, no Qt. Both take images as float tensors (N, 3, H, W) in [-1, 1]
(64x64 is what they are trained on; other sizes work).

A model folder holds three files:

- ``model.safetensors``: the state dict (float32),
- ``config.json``: the architecture sizes (``{"kind": "classifier", "width": 32, ...}``),
- ``attributes.json`` (classifier) or ``parts.json`` (segmenter): a JSON list of the
  output names, in output order.

``load_classifier(folder)`` / ``load_segmenter(folder)`` return ``(module in eval mode,
names)`` and raise ``FileNotFoundError`` / ``ValueError`` with a readable message on a
missing or bad file. ``save_classifier`` / ``save_segmenter`` write the folder, each file
through a temporary file and ``os.replace``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def _load(folder, kind: str, names_file: str, build):
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} folder not found: {folder}")
    config = _read_json(folder / CONFIG_FILE, f"{kind} config")
    if not isinstance(config, dict) or config.get("kind") != kind:
        raise ValueError(f"{folder / CONFIG_FILE} does not describe a {kind} "
                         f"(kind={config.get('kind') if isinstance(config, dict) else None!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / CONFIG_FILE}: unsupported format_version "
                         f"{config.get('format_version')!r} (expected {FORMAT_VERSION})")
    names = _read_json(folder / names_file, f"{kind} names file")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{folder / names_file} must be a non-empty JSON list of strings")
    if len(set(names)) != len(names):
        raise ValueError(f"{folder / names_file} has duplicate names")
    try:
        module = build(config, len(names))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{folder / CONFIG_FILE}: bad architecture sizes: {e}") from None
    wpath = folder / WEIGHTS_FILE
    if not wpath.is_file():
        raise FileNotFoundError(f"{kind} weights not found: {wpath}")
    try:
        state = load_file(str(wpath))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{wpath} is not a readable safetensors file: {e}") from None
    own = module.state_dict()
    expected = {k for k, v in own.items() if v.is_floating_point()}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(
            f"{wpath} does not match the {kind} in {CONFIG_FILE} and {names_file} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}; "
            f"{len(names)} names)")
    for k in expected:
        if tuple(state[k].shape) != tuple(own[k].shape):
            raise ValueError(
                f"{wpath}: tensor {k} has shape {tuple(state[k].shape)}, the {kind} described by "
                f"{CONFIG_FILE} and {names_file} ({len(names)} names) needs {tuple(own[k].shape)}")
    module.load_state_dict(state, strict=False)
    module.eval()
    return module, names


def save_classifier(folder, model: ToyFaceClassifier, names, extra: dict | None = None) -> Path:
    return _save(folder, model, "classifier", names, "attributes.json", extra)


def save_segmenter(folder, model: ToyFaceSegmenter, names, extra: dict | None = None) -> Path:
    return _save(folder, model, "segmenter", names, "parts.json", extra)


def load_classifier(folder):
    """Return ``(ToyFaceClassifier in eval mode, attribute names)``."""
    return _load(folder, "classifier", "attributes.json",
                 lambda c, n: ToyFaceClassifier(n, width=int(c["width"]),
                                                feature_dim=int(c["feature_dim"]),
                                                pool=int(c.get("pool", 4))))


def load_segmenter(folder):
    """Return ``(ToyFaceSegmenter in eval mode, part names)``."""
    return _load(folder, "segmenter", "parts.json",
                 lambda c, n: ToyFaceSegmenter(n, width=int(c["width"])))


__all__ = ["ToyFaceClassifier", "ToyFaceSegmenter", "load_classifier", "load_segmenter",
           "save_classifier", "save_segmenter"]
