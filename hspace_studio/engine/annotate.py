"""Attribute classifiers: attribute names and scores for batches of images.

Every classifier takes images (N, 3, H, W) in [-1, 1] at any size (resized inside to
its input size) and returns scores (N, A), one column per attribute, larger meaning
"more of the attribute" (probabilities in [0, 1] for the built-in kinds).

- a folder in a format of the active domain (:mod:`.domain`; the toy faces' classifier is
  one), and the domain's default classifier when none is named;
- :class:`TorchScriptClassifier`: any classifier saved with ``torch.jit.save``, plus a
  JSON file naming its outputs: a list of names, or an object
  ``{"attributes": [...], "input_size": [H, W], "activation": "sigmoid" | "none"}``.
  **A TorchScript file is code**: loading it with ``torch.jit.load`` and running it
  executes what its author wrote, so it must come from someone you trust (as any program
  does). This is by design (a user's own classifier); nothing else the project loads is
  executable: model weights, directions, trajectories and sessions are safetensors and
  JSON, never pickles (every ``torch.load`` passes ``weights_only=True``).
- :class:`CallableClassifier`: wraps a Python function (for tests and scripts).

:func:`load_classifier` picks the kind from what it is given.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..core.errors import FileFormatError, HSpaceError, reason
from .domain import active_domain, folder_format

ACTIVATIONS = ("sigmoid", "none")


class ClassifierError(HSpaceError):
    """A classifier cannot be loaded or does not produce the scores it promises."""


class ClassifierUsageError(ClassifierError, ValueError):
    """A classifier was asked for in a way that cannot work (e.g. a TorchScript file
    without its attribute names). Also a ``ValueError``."""


MAX_ATTRIBUTES = 4096
MAX_INPUT_SIDE = 4096
TRUSTED_CODE_NOTE = "a TorchScript file runs its own code: load only files you trust"


def _file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class AttributeClassifier:
    """Base class. Subclasses set ``attributes``, ``name``, ``input_size`` and ``_raw``."""

    name: str = "classifier"
    attributes: List[str]
    input_size: Optional[Tuple[int, int]] = None
    digest: str = ""
    batch_size: int = 64
    probabilities: bool = True  # scores in [0, 1] (sigmoid); False: raw scores, 0 the boundary

    @property
    def identity(self) -> dict:
        """What a recipe records to recognise this classifier later."""
        return {"name": self.name, "digest": self.digest, "attributes": list(self.attributes)}

    def index_of(self, attribute: str) -> int:
        if attribute in self.attributes:
            return self.attributes.index(attribute)
        low = [a.lower() for a in self.attributes]
        if attribute.lower() in low:
            return low.index(attribute.lower())
        raise ValueError(f"unknown attribute '{attribute}' for classifier {self.name} "
                         f"(it has: {', '.join(self.attributes)})")

    def _prepare(self, images: torch.Tensor, keep_graph: bool = False) -> torch.Tensor:
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        x = (images if keep_graph else images.detach()).float().clamp(-1, 1)
        if self.input_size is not None and tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(x, size=tuple(self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        return x

    def _checked(self, s, n: int) -> torch.Tensor:
        if not torch.is_tensor(s):
            raise ClassifierError(f"classifier {self.name} returned {type(s).__name__}, not a tensor")
        if s.dim() == 1 and len(self.attributes) == 1:
            s = s[:, None]
        if tuple(s.shape) != (n, len(self.attributes)):
            raise ClassifierError(f"classifier {self.name} returned scores of shape {tuple(s.shape)}, "
                                  f"expected ({n}, {len(self.attributes)}) for its "
                                  f"{len(self.attributes)} attribute(s)")
        if not torch.isfinite(s.detach()).all():
            raise ClassifierError(f"classifier {self.name} returned NaN or infinite scores")
        return s.float()

    def _raw(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, A) float32 scores on the CPU for images (N, 3, H, W) in [-1, 1]."""
        x = self._prepare(images)
        outs = []
        for b in range(0, x.shape[0], self.batch_size):
            n = min(self.batch_size, x.shape[0] - b)
            outs.append(self._checked(self._raw(x[b:b + self.batch_size]), n).cpu())
        return torch.cat(outs)

    def differentiable_scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, A) scores as :meth:`scores`, in one batch on the classifier's device, keeping
        the autograd graph back to ``images`` (to optimise something through the classifier)."""
        x = self._prepare(images, keep_graph=True)
        return self._checked(self._raw(x), x.shape[0])

    @property
    def threshold(self) -> float:
        """The score where an attribute turns from absent to present."""
        return 0.5 if self.probabilities else 0.0


class CallableClassifier(AttributeClassifier):
    """``fn(images (N, 3, H, W) in [-1, 1]) -> scores (N, A)`` with the given names."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], attributes: Sequence[str],
                 name: str = "callable", input_size: Optional[Tuple[int, int]] = None,
                 digest: str = "", probabilities: bool = True):
        self.fn = fn
        self.probabilities = bool(probabilities)
        self.attributes = _check_names(list(attributes), name)
        self.name = name
        self.input_size = tuple(input_size) if input_size is not None else None
        self.digest = digest

    def _raw(self, x):
        return self.fn(x)


def _check_names(names, where) -> List[str]:
    if not isinstance(names, list) or not names:
        raise ClassifierError(f"{where}: attribute names must be a non-empty JSON list of strings")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ClassifierError(f"{where}: every attribute name must be a non-empty string")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ClassifierError(f"{where}: duplicate attribute names {', '.join(dup)}")
    return [str(n) for n in names]


def read_attribute_names(path) -> dict:
    """Validate a names JSON file: a list of names, or an object with ``attributes``."""
    from ..core.jsonfile import read_json

    p = Path(path)
    if p.exists() and not p.is_file():
        raise FileFormatError(f"attribute names file {p} is not a file")
    data = read_json(p, "attribute names file", max_bytes=16 * 1024 * 1024)
    if isinstance(data, list):
        data = {"attributes": data}
    if not isinstance(data, dict) or "attributes" not in data:
        raise FileFormatError(f"{p} must hold a JSON list of attribute names, or an object "
                              f"with an 'attributes' list")
    if isinstance(data["attributes"], list) and len(data["attributes"]) > MAX_ATTRIBUTES:
        raise FileFormatError(f"{p}: {len(data['attributes'])} attribute names (at most {MAX_ATTRIBUTES})")
    out = {"attributes": _check_names(data["attributes"], str(p))}
    size = data.get("input_size")
    if size is not None:
        if isinstance(size, int) and not isinstance(size, bool):
            size = [size, size]
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_INPUT_SIDE
                        for v in size)):
            raise FileFormatError(f"{p}: input_size must be [H, W] (two whole numbers from 1 to "
                                  f"{MAX_INPUT_SIDE})")
        out["input_size"] = tuple(size)
    act = data.get("activation", "sigmoid")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise FileFormatError(f"{p}: activation must be one of {', '.join(ACTIVATIONS)}, "
                              f"not {act!r}"[:200])
    out["activation"] = act
    return out


class TorchScriptClassifier(AttributeClassifier):
    """A TorchScript classifier file and a JSON file with its attribute names.

    The file is loaded with ``torch.jit.load``: it is a program and runs with this
    process's rights, so it is trusted code by definition (use files you made or trust).
    Bad files (not TorchScript, truncated, junk) raise :class:`ClassifierError`.
    """

    def __init__(self, path, names_file, device=None, activation: Optional[str] = None,
                 input_size: Optional[Tuple[int, int]] = None):
        p = Path(path)
        if not p.is_file():
            raise ClassifierError(f"classifier file not found: {p}")
        meta = read_attribute_names(names_file)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        try:
            self.module = torch.jit.load(str(p), map_location=self.device)
        except Exception as e:  # torch raises RuntimeError/ValueError/zip errors
            first = reason(e, 120)
            raise ClassifierError(f"{p} is not a TorchScript file (save it with torch.jit.save; "
                                  f"{TRUSTED_CODE_NOTE}): {first}") from e
        if not callable(getattr(self.module, "forward", None)):
            raise ClassifierError(f"{p}: the TorchScript module has no forward method")
        self.module.eval()
        self.attributes = meta["attributes"]
        self.activation = activation or meta["activation"]
        if self.activation not in ACTIVATIONS:
            raise ClassifierUsageError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        self.probabilities = self.activation == "sigmoid"
        self.input_size = tuple(input_size) if input_size else meta.get("input_size")
        self.name = f"torchscript:{p.name}"
        self.path = p
        self.digest = _file_digest([p, Path(names_file)])

    def _raw(self, x):
        try:
            out = self.module(x.to(self.device))
        except Exception as e:  # scripted code raises torch.jit.Error and others
            msg = str(e).strip().splitlines()
            raise ClassifierError(f"classifier {self.path.name} failed on a batch of shape "
                                  f"{tuple(x.shape)}: {msg[-1][:160] if msg else type(e).__name__}") from e
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not torch.is_tensor(out):
            raise ClassifierError(f"classifier {self.path.name} returned {type(out).__name__}, not a tensor")
        return torch.sigmoid(out) if self.activation == "sigmoid" else out


def load_classifier(spec=None, attributes=None, device=None) -> AttributeClassifier:
    """A classifier from a CLI-style spec.

    ``spec`` None, ``"default"`` or the active domain's name: the domain's default
    classifier; a folder: a classifier folder in a format of the active domain; a file: a
    TorchScript classifier, with ``attributes`` (a JSON file of names) required. A
    TorchScript file is trusted code (it runs when used); everything else is data. Every
    problem raises an ``HSpaceError``.
    """
    domain = active_domain()
    if spec is None or str(spec) in ("default", domain.name):
        if attributes is not None:
            raise ClassifierUsageError("--attributes goes with a TorchScript --classifier file")
        if domain.default_classifier is None:
            raise ClassifierUsageError(f"the {domain.name} domain has no default classifier: pass "
                                       "--classifier FILE.pt --attributes NAMES.json")
        spec = domain.default_classifier
        if not Path(spec).expanduser().exists():  # the domain says how to get it
            raise ClassifierError(domain.missing("classifier", spec))
    p = Path(spec).expanduser()
    if p.is_dir():
        if attributes is not None:
            raise ClassifierUsageError("--attributes goes with a TorchScript --classifier file, not a folder")
        fmt = folder_format(p, "classifier")
        if fmt is None:
            raise ClassifierError(f"{p} is not a classifier folder of the {domain.name} domain (for your own "
                                  "classifier pass a TorchScript file and --attributes NAMES.json)")
        return fmt.load(p, device)
    if p.is_file():
        if attributes is None:
            raise ClassifierUsageError(f"a TorchScript classifier ({p.name}) needs --attributes "
                                       f"NAMES.json listing its outputs")
        return TorchScriptClassifier(p, attributes, device=device)
    raise ClassifierError(f"classifier not found: {spec} (a classifier folder or a TorchScript file)")
