"""The GUI's document: the direction library's state and the session file (no Qt, no torch).

A session is two files written atomically as a pair:

- ``NAME.json``: a JSON document (model, image source, library with slider states,
  view settings) that names its sidecar;
- ``NAME.<hash>.safetensors``: the tensors (the image's trajectory, the library's
  direction tensors, the mask) as numpy arrays.

The sidecar is written first under a name that contains a hash of its content, then the
JSON replaces the old one, then older sidecars of the same session are removed; a crash
at any point leaves a consistent pair on disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .atomic import atomic_path, write_text
from .errors import FileFormatError

SESSION_KIND = "hspace-session"
SESSION_FORMAT = 1

METHOD_GROUPS = (("pca", "PCA"), ("jacobian", "Jacobian"), ("supervised", "Supervised"),
                 ("disentangled", "Disentangled"), ("imported", "Imported"), ("custom", "Custom"))
METHOD_TITLES = dict(METHOD_GROUPS)

DEFAULT_RANGE = {"pca": 4.0, "supervised": 2.0}


@dataclass
class DirectionState:
    """One direction of a set as the library shows it, with its slider state.

    ``index`` is the row of the set's ``delta_h``; ``window`` is a pair of diffusion
    timesteps (inclusive, either order) or None for every step; ``at_timestep``, when
    set, applies the vector of the step nearest that timestep at every step.
    """

    index: int
    label: str
    active: bool = False
    scale: float = 0.0
    window: Optional[Tuple[int, int]] = None
    at_timestep: Optional[int] = None
    range: float = 3.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["window"] = list(self.window) if self.window is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DirectionState":
        try:
            w = d.get("window")
            return cls(index=int(d["index"]), label=str(d.get("label", "")),
                       active=bool(d.get("active", False)), scale=float(d.get("scale", 0.0)),
                       window=(int(w[0]), int(w[1])) if w is not None else None,
                       at_timestep=int(d["at_timestep"]) if d.get("at_timestep") is not None else None,
                       range=float(d.get("range", 3.0)))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise FileFormatError(f"bad direction entry in session: {e}") from e


@dataclass
class SetState:
    """A direction set in the library: metadata (tensors live with the engine worker)."""

    set_id: str
    name: str
    method: str
    fingerprint: str
    h_space: str
    h_shape: Tuple[int, ...]
    timesteps: List[int]
    values: Optional[List[List[float]]] = None
    params: dict = field(default_factory=dict)
    path: Optional[str] = None  # the file holding exactly this set's tensors, if any
    directions: List[DirectionState] = field(default_factory=list)
    # runtime only (not saved): does it fit the loaded model and trajectory?
    status: str = "ok"  # ok | remapped | mismatch
    status_text: str = ""

    @property
    def count(self) -> int:
        return len(self.directions)

    def value_of(self, d: DirectionState) -> Optional[List[float]]:
        if self.values is None or not 0 <= d.index < len(self.values):
            return None
        return self.values[d.index]

    def to_json(self) -> dict:
        return {"set_id": self.set_id, "name": self.name, "method": self.method,
                "fingerprint": self.fingerprint, "h_space": self.h_space,
                "h_shape": list(self.h_shape), "timesteps": list(self.timesteps),
                "values": self.values, "params": self.params, "path": self.path,
                "directions": [d.to_json() for d in self.directions]}

    @classmethod
    def from_json(cls, d: dict) -> "SetState":
        try:
            return cls(set_id=str(d["set_id"]), name=str(d["name"]), method=str(d["method"]),
                       fingerprint=str(d["fingerprint"]), h_space=str(d["h_space"]),
                       h_shape=tuple(int(v) for v in d["h_shape"]),
                       timesteps=[int(t) for t in d["timesteps"]], values=d.get("values"),
                       params=d.get("params") or {}, path=d.get("path"),
                       directions=[DirectionState.from_json(x) for x in d["directions"]])
        except (KeyError, TypeError, ValueError) as e:
            raise FileFormatError(f"bad direction set entry in session: {e}") from e


def default_range(method: str) -> float:
    return DEFAULT_RANGE.get(method, 3.0)


def summarize_values(method: str, values: Optional[List[float]]) -> str:
    """A short text for a direction's values: 'sigma 12.3', 'EV 8.1%', 'gap 0.82'."""
    if not values:
        return ""
    finite = [float(v) for v in values if v is not None and v == v]
    if not finite:
        return ""
    if method == "pca":
        return f"EV {100 * sum(finite) / len(finite):.1f}%"
    if method == "jacobian":
        return f"σ {max(finite):.3g}"
    if method == "supervised":
        return f"gap {finite[0]:.3g}"
    return f"{sum(finite) / len(finite):.3g}"


# --------------------------------------------------------------------------- files

def _sidecar_glob(path: Path) -> str:
    return f"{_stem(path)}.*.safetensors"


def _stem(path: Path) -> str:
    name = path.name
    return name[:-5] if name.endswith(".json") else name


def write_session(path, doc: dict, arrays: Dict[str, np.ndarray]) -> Path:
    """Write ``doc`` (JSON-able) and ``arrays`` as a session; returns the JSON path."""
    from safetensors.numpy import save

    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    blob = save(arrays, metadata={"kind": SESSION_KIND})
    digest = hashlib.sha256(blob).hexdigest()
    sidecar = path.with_name(f"{_stem(path)}.{digest[:12]}.safetensors")
    with atomic_path(sidecar) as tmp:
        tmp.write_bytes(blob)
    doc = dict(doc, kind=SESSION_KIND, format=SESSION_FORMAT, sidecar=sidecar.name,
               sidecar_sha256=digest)
    write_text(path, json.dumps(doc, indent=1, sort_keys=True))
    for old in path.parent.glob(_sidecar_glob(path)):
        if old.name != sidecar.name:
            try:
                old.unlink()
            except OSError:
                pass
    return path


def read_session(path) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Read a session written by :func:`write_session`; raises FileFormatError."""
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"session file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FileFormatError(f"{path} is not a session file (not valid JSON)") from e
    if not isinstance(doc, dict) or doc.get("kind") != SESSION_KIND:
        raise FileFormatError(f"{path} is not an hspace-studio session file")
    if int(doc.get("format", 0)) > SESSION_FORMAT:
        raise FileFormatError(f"{path} was written by a newer version (format {doc.get('format')})")
    sidecar = path.with_name(str(doc.get("sidecar", "")))
    if not doc.get("sidecar") or not sidecar.is_file():
        raise FileFormatError(f"{path}: its tensor file {sidecar.name} is missing")
    blob = sidecar.read_bytes()
    if doc.get("sidecar_sha256") and hashlib.sha256(blob).hexdigest() != doc["sidecar_sha256"]:
        raise FileFormatError(f"{sidecar} does not match {path.name} (changed or truncated)")
    try:
        arrays = load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise FileFormatError(f"{sidecar} is not a readable tensor file") from e
    return doc, arrays


def remove_session(path) -> None:
    """Delete a session's JSON and sidecars (used for the autosave)."""
    path = Path(path)
    for p in [path, *path.parent.glob(_sidecar_glob(path))]:
        try:
            p.unlink()
        except OSError:
            pass
