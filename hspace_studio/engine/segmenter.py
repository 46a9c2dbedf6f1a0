"""Part segmenters: images -> named part masks, for "Fill part", ``--region-from`` and the
per-sample regions of fitted directions.

A segmenter is any network that maps images (N, 3, H, W) in [-1, 1] to per-pixel logits
(N, P, h, w), one channel per named part (the largest wins), with a list of the P part
names. It is loaded by :func:`load_segmenter` from

- a TorchScript file saved with ``torch.jit.save`` and a JSON file of its part names beside
  it (``parser.pt`` and ``parser.json``: a list of names, or an object
  ``{"parts": [...], "input_size": [H, W]}``). **A TorchScript file is code**: it runs with
  this process's rights, so load only files you trust;
- a folder holding ``model.pt`` and ``parts.json`` in that form;
- a folder in a format of the active domain (:mod:`.domain`), e.g. the toy faces';
- None or ``"default"``: the active domain's default segmenter.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import FileFormatError, HSpaceError, reason
from .domain import active_domain, folder_format

MAX_PARTS = 1024
TRUSTED_CODE_NOTE = "a TorchScript file runs its own code: load only files you trust"


class SegmenterError(HSpaceError):
    """A segmenter cannot be loaded, or does not produce the masks it promises."""


class UnknownPart(SegmenterError, ValueError):
    """A part the segmenter does not know was asked for. Also a ``ValueError``."""


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Boolean (N, H, W) grown by ``px`` pixels (8-connected, as a square max-pool)."""
    if px <= 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * px + 1, stride=1, padding=px)[:, 0] > 0


class Segmenter:
    """A segmentation network and its part names (``parts[i]`` is output channel i)."""

    def __init__(self, module, parts: Sequence[str], name: str = "segmenter", digest: str = "",
                 input_size: Optional[Tuple[int, int]] = None):
        self.segmenter = module.eval()
        params = list(module.parameters()) if hasattr(module, "parameters") else []
        for p in params:  # a fixed reader: gradients flow to the images only
            p.requires_grad_(False)
        self.device = params[0].device if params else torch.device("cpu")
        self.parts = _check_parts(list(parts), name)
        self.index = {n: i for i, n in enumerate(self.parts)}
        self.name = name
        self.digest = digest
        self.input_size = tuple(input_size) if input_size else None

    def to(self, device) -> "Segmenter":
        self.segmenter = self.segmenter.to(device)
        self.device = torch.device(device)
        return self

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-pixel part logits (N, P, H, W) at the images' size, with gradients."""
        x = pixels.clamp(-1, 1).float().to(self.device)
        size = tuple(x.shape[-2:])
        if self.input_size is not None and size != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        try:
            out = self.segmenter(x)
        except Exception as e:  # a user's scripted code raises many types
            msg = str(e).strip().splitlines()
            raise SegmenterError(f"segmenter {self.name} failed on images of shape {tuple(x.shape)}: "
                                 f"{msg[-1][:160] if msg else type(e).__name__}") from e
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not torch.is_tensor(out) or out.dim() != 4 or out.shape[1] != len(self.parts):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise SegmenterError(f"segmenter {self.name} gave {got}, not logits (N, {len(self.parts)}, H, W) "
                                 f"for its {len(self.parts)} parts")
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False)
        return out.float()

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Soft part probabilities (N, P, H, W) of images in [-1, 1], with gradients."""
        return torch.softmax(self.logits(pixels), 1)

    @torch.no_grad()
    def labels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Part index per pixel (N, H, W)."""
        return self.logits(pixels).argmax(1)

    def indices(self, parts: Sequence[str]) -> List[int]:
        unknown = [p for p in parts if p not in self.index]
        if unknown or not parts:
            raise UnknownPart(f"the segmenter {self.name} has no part "
                                 f"{', '.join(unknown) if unknown else '(none asked)'}; "
                                 f"it has {', '.join(self.parts)}")
        return [self.index[p] for p in parts]

    def part_mask(self, pixels: torch.Tensor, parts: Sequence[str]) -> np.ndarray:
        """Boolean (H, W) of one image (1, 3, H, W): where ``parts`` are."""
        idx = torch.tensor(self.indices(parts))
        return torch.isin(self.labels(pixels)[0].cpu(), idx).numpy()

    def own_region(self, parts: Sequence[str], grow: int, size, free_steps: int = 1) -> Callable:
        """A function of unedited images (N, 3, H, W) in [-1, 1] giving each image its own
        :class:`~.sampler.Region`: where the segmenter finds ``parts``, grown by ``grow``
        pixels, at the resolution ``size`` (h, w) of the model's x (the weights averaged
        over each cell when it is smaller). An image where none of the parts is found gets
        an empty region: its edit is then decoded unchanged but for the last ``free_steps``."""
        from .sampler import Region

        idx = torch.tensor(self.indices(list(parts)))

        def fn(pixels: torch.Tensor) -> Region:
            lab = self.labels(pixels)
            zone = dilate(torch.isin(lab, idx.to(lab.device)), int(grow)).float()[:, None]
            if tuple(zone.shape[-2:]) != tuple(size):
                zone = F.interpolate(zone, size=tuple(size), mode="area")
            return Region(zone.to(pixels.device), int(free_steps))

        fn.recipe = {"parts": list(parts), "grow": int(grow)}  # recorded by the fits that use it
        return fn


def _check_parts(names, where) -> List[str]:
    if not isinstance(names, list) or not names or len(names) > MAX_PARTS:
        raise SegmenterError(f"{where}: the part names must be a list of 1 to {MAX_PARTS} names")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise SegmenterError(f"{where}: every part name must be a non-empty string")
    if len(set(names)) != len(names):
        raise SegmenterError(f"{where}: duplicate part names")
    return [str(n) for n in names]


def read_part_names(path) -> dict:
    """A parts JSON file: a list of names, or ``{"parts": [...], "input_size": [H, W]}``."""
    from ..core.jsonfile import read_json

    data = read_json(Path(path), "part names file", max_bytes=4 * 1024 * 1024)
    if isinstance(data, list):
        data = {"parts": data}
    if not isinstance(data, dict) or "parts" not in data:
        raise FileFormatError(f"{path} must hold a JSON list of part names, or an object with a 'parts' list")
    out = {"parts": _check_parts(data["parts"], str(path))}
    size = data.get("input_size")
    if size is not None:
        if isinstance(size, int) and not isinstance(size, bool):
            size = [size, size]
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 for v in size)):
            raise FileFormatError(f"{path}: input_size must be [H, W] (two whole numbers from 1 to 4096)")
        out["input_size"] = tuple(size)
    return out


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def torchscript_segmenter(path, parts_file, device=None) -> Segmenter:
    p = Path(path)
    if not p.is_file():
        raise SegmenterError(f"segmenter file not found: {p}")
    meta = read_part_names(parts_file)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    try:
        module = torch.jit.load(str(p), map_location=dev)
    except Exception as e:  # torch raises RuntimeError/ValueError/zip errors
        first = reason(e, 120)
        raise SegmenterError(f"{p} is not a TorchScript file (save it with torch.jit.save; "
                             f"{TRUSTED_CODE_NOTE}): {first}") from e
    seg = Segmenter(module, meta["parts"], name=f"torchscript:{p.name}", digest=_digest([p, parts_file]),
                    input_size=meta.get("input_size"))
    seg.device = dev
    return seg


def load_segmenter(spec=None, device=None) -> Segmenter:
    """A segmenter from a spec (see the module doc). Every problem raises an HSpaceError."""
    if spec is None or str(spec) == "default":
        default = active_domain().default_segmenter
        if default is None:
            raise SegmenterError(f"the {active_domain().name} domain has no default segmenter: give a "
                                 "TorchScript file with its part names (parser.pt + parser.json)")
        spec = default
        if not Path(str(spec)).expanduser().exists():  # the domain says how to get it
            raise SegmenterError(active_domain().missing("segmenter", spec))
    p = Path(str(spec)).expanduser()
    if p.is_dir():
        fmt = folder_format(p, "segmenter")
        if fmt is not None:
            seg = fmt.load(p, device)
        elif (p / "model.pt").is_file() and (p / "parts.json").is_file():
            seg = torchscript_segmenter(p / "model.pt", p / "parts.json", device)
        else:
            raise SegmenterError(f"{p} is not a segmenter folder (model.pt + parts.json, or a format "
                                 f"of the {active_domain().name} domain)")
        return seg.to(device) if device is not None else seg
    if p.is_file():
        names = p.with_suffix(".json")
        if not names.is_file():
            raise SegmenterError(f"the segmenter {p.name} needs its part names in {names.name} beside it")
        return torchscript_segmenter(p, names, device)
    raise SegmenterError(f"segmenter not found: {spec} (a TorchScript file with its .json, or a folder)")


def part_region(model, parts: Sequence[str], grow: int = 0, free_steps: int = 1, segmenter=None) -> Callable:
    """:meth:`Segmenter.own_region` of ``parts`` with ``segmenter`` (a spec of
    :func:`load_segmenter`; None: the domain's default), at the resolution of ``model``'s x;
    refused for a model whose images are not RGB."""
    if int(model.sample_shape[0]) != 3 and getattr(model, "vae", None) is None:
        raise ValueError("a segmenter reads RGB images; this model's are not")
    seg = load_segmenter(segmenter, device=model.device)
    fn = seg.own_region(list(parts), int(grow), tuple(model.sample_shape[1:]), free_steps)
    if segmenter not in (None, "default"):  # a user's segmenter: the fit's recipe names it
        fn.recipe["segmenter"] = str(segmenter)
    return fn


def split_region_spec(value: str) -> Tuple[str, List[str]]:
    """``SEGMENTER:PART[,PART...]`` -> (segmenter spec, parts); ``default:hair`` uses the
    domain's segmenter. The last colon splits, so a path may hold colons."""
    head, sep, tail = str(value).rpartition(":")
    parts = [p.strip() for p in tail.split(",") if p.strip()]
    if not sep or not head or not parts:
        raise ValueError(f"expected SEGMENTER:PART[,PART...] (e.g. default:hair or parser.pt:mouth), "
                         f"got '{value}'")
    return head, parts
