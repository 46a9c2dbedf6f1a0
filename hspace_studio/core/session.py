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
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .atomic import atomic_path, write_text
from .errors import FileFormatError
from .spacing import parse_spacing

SESSION_KIND = "hspace-session"
SESSION_FORMAT = 1

METHOD_GROUPS = (("pca", "PCA"), ("jacobian", "Jacobian"), ("supervised", "Supervised"),
                 ("disentangled", "Disentangled"), ("imported", "Imported"), ("custom", "Custom"))
METHOD_TITLES = dict(METHOD_GROUPS)

DEFAULT_RANGE = {"pca": 4.0, "supervised": 2.0}

MAX_SESSION_JSON = 256 * 1024 * 1024
MAX_INT = 2 ** 63
SEED_MAX = 2 ** 31 - 1
MAX_STEPS = 1000
MAX_ETA = 2.0


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
    asymmetric: bool = False  # Asyrp: the edit moves only each step's predicted x_0

    def to_json(self) -> dict:
        d = asdict(self)
        d["window"] = list(self.window) if self.window is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DirectionState":
        try:
            w = d.get("window")
            if w is not None and (not isinstance(w, (list, tuple)) or len(w) != 2):
                raise ValueError(f"window must be two timesteps, not {w!r}"[:100])
            out = cls(index=_int(d["index"]), label=str(d.get("label", "")),
                      active=bool(d.get("active", False)), scale=float(d.get("scale", 0.0)),
                      window=(_int(w[0]), _int(w[1])) if w is not None else None,
                      at_timestep=_int(d["at_timestep"]) if d.get("at_timestep") is not None else None,
                      range=float(d.get("range", 3.0)), asymmetric=bool(d.get("asymmetric", False)))
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as e:
            raise FileFormatError(f"bad direction entry in session: {e}"[:200]) from e
        if not math.isfinite(out.scale):
            raise FileFormatError(f"bad direction entry in session: scale {out.scale!r}")
        if not (math.isfinite(out.range) and out.range > 0):
            raise FileFormatError(f"bad direction entry in session: range {out.range!r}")
        if out.index < 0:
            raise FileFormatError(f"bad direction entry in session: index {out.index}")
        return out


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
            values = d.get("values")
            if values is not None and not _is_values(values):
                values = None  # only shown: drop them rather than the session
            params = d.get("params") or {}
            if not isinstance(params, dict):
                raise ValueError("params must be an object")
            path = d.get("path")
            if path is not None and not isinstance(path, str):
                raise ValueError("path must be text")
            if not isinstance(d["directions"], list) or not isinstance(d["h_shape"], list) \
                    or not isinstance(d["timesteps"], list):
                raise ValueError("directions, h_shape and timesteps must be lists")
            return cls(set_id=str(d["set_id"]), name=str(d["name"]), method=str(d["method"]),
                       fingerprint=str(d["fingerprint"]), h_space=str(d["h_space"]),
                       h_shape=tuple(_int(v) for v in d["h_shape"]),
                       timesteps=[_int(t) for t in d["timesteps"]], values=values,
                       params=params, path=path,
                       directions=[DirectionState.from_json(x) for x in d["directions"]])
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
            raise FileFormatError(f"bad direction set entry in session: {e}"[:200]) from e


def _int(v) -> int:
    """A whole number from JSON (not a bool, not a fraction, not huge)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a whole number, not {v!r}"[:80])
    if isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
        raise ValueError(f"expected a whole number, not {v!r}")
    v = int(v)
    if abs(v) > MAX_INT:
        raise ValueError(f"number {v} is out of range")
    return v


def _is_values(values) -> bool:
    return isinstance(values, list) and all(
        isinstance(r, list) and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                    for v in r) for r in values)


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
    """Read a session written by :func:`write_session`; raises FileFormatError.

    Everything in it is checked before it is returned (see :func:`check_session`), so a
    caller can apply it without failing halfway. Only JSON and safetensors are read:
    nothing is unpickled or evaluated.
    """
    from safetensors.numpy import load

    from .jsonfile import read_json

    path = Path(path)
    if path.exists() and not path.is_file():
        raise FileFormatError(f"{path} is not a session file (not a file)")
    doc = read_json(path, "session file", max_bytes=MAX_SESSION_JSON)
    if not isinstance(doc, dict) or doc.get("kind") != SESSION_KIND:
        raise FileFormatError(f"{path} is not an hspace-studio session file")
    fmt = doc.get("format", 0)
    if isinstance(fmt, bool) or not isinstance(fmt, int):
        raise FileFormatError(f"{path}: unknown session format {fmt!r}"[:200])
    if fmt > SESSION_FORMAT:
        raise FileFormatError(f"{path} was written by a newer version (format {fmt})")
    name = doc.get("sidecar")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\0" in name:
        raise FileFormatError(f"{path}: its tensor file {str(name)[:80]!r} is missing "
                              f"(it must be a file next to the session)")
    sidecar = path.with_name(name)
    if not sidecar.is_file():
        raise FileFormatError(f"{path}: its tensor file {sidecar.name} is missing")
    digest = doc.get("sidecar_sha256")
    if digest is not None and not isinstance(digest, str):
        raise FileFormatError(f"{path}: bad sidecar_sha256 entry")
    try:
        blob = sidecar.read_bytes()
    except (OSError, MemoryError) as e:
        raise FileFormatError(f"{sidecar} cannot be read ({type(e).__name__})") from e
    if digest and hashlib.sha256(blob).hexdigest() != digest:
        raise FileFormatError(f"{sidecar} does not match {path.name} (changed or truncated)")
    try:
        arrays = load(blob)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise FileFormatError(f"{sidecar} is not a readable tensor file") from e
    check_session(doc, arrays, str(path))
    return doc, arrays


TRAJ_REQUIRED = ("x_T", "zs", "etas", "timesteps", "hs", "x_0")


def _opt(doc: dict, key: str, types, where: str):
    v = doc.get(key)
    if v is not None and not isinstance(v, types):
        raise FileFormatError(f"{where}: '{key}' has the wrong type ({type(v).__name__})")
    return v


def check_session(doc: dict, arrays: Dict[str, np.ndarray], where: str = "session") -> None:
    """Check that a session document and its arrays are consistent and usable: every
    field the application reads has the right type and range, tensors are finite
    numbers of consistent shapes. Raises :class:`FileFormatError` (the first problem)."""
    number = (int, float)
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            raise FileFormatError(f"{where}: tensor '{k}' is not numeric")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise FileFormatError(f"{where}: tensor '{k}' contains NaN or infinite values")
    model = _opt(doc, "model", dict, where) or {}
    for key in ("source", "h_space", "fingerprint", "guide", "timesteps"):
        _opt(model, key, str, f"{where}: model")
    try:
        parse_spacing(model.get("timesteps"))
    except ValueError as e:
        raise FileFormatError(f"{where}: the model's {e}"[:200]) from None
    w = model.get("guide_weight")
    if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)):
        raise FileFormatError(f"{where}: the model's guide weight {w!r} is not a finite number"[:200])
    if model.get("h_space") is not None and model["h_space"] not in ("before", "middle", "after"):
        raise FileFormatError(f"{where}: unknown h-space point {model['h_space']!r}"[:200])
    for part in ("source", "controls", "view", "trajectory", "set_meta"):
        _opt(doc, part, dict, where)
    src = doc.get("source") or {}
    ctl = doc.get("controls") or {}
    try:
        for d, name in ((src, "source"), (ctl, "controls")):
            if d.get("seed") is not None and not 0 <= _int(d["seed"]) <= SEED_MAX:
                raise ValueError(f"seed {d['seed']} out of range")
            if d.get("steps") is not None and not 1 <= _int(d["steps"]) <= MAX_STEPS:
                raise ValueError(f"steps {d['steps']} out of range")
            eta = d.get("eta")
            if eta is not None and not (isinstance(eta, number) and not isinstance(eta, bool)
                                        and 0 <= eta <= MAX_ETA):
                raise ValueError(f"eta {str(eta)[:40]} is not a number from 0 to {MAX_ETA}")
            if d.get("path") is not None and not isinstance(d["path"], str):
                raise ValueError("path must be text")
        _opt(src, "kind", str, where)
    except (ValueError, TypeError) as e:
        raise FileFormatError(f"{where}: bad image source or controls: {e}"[:200]) from e
    view = doc.get("view") or {}
    if view.get("mode") is not None and not isinstance(view["mode"], str):
        raise FileFormatError(f"{where}: bad view mode")
    for key, lo, hi in (("mask_opacity", 0, 100), ("brush_radius", 0, 1e4)):
        v = view.get(key)
        if v is not None and not (isinstance(v, number) and not isinstance(v, bool) and lo <= v <= hi):
            raise FileFormatError(f"{where}: bad view setting {key}={str(v)[:40]}")
    sel = doc.get("selected")
    if sel is not None and not (isinstance(sel, list) and len(sel) == 2 and isinstance(sel[0], str)
                                and (sel[1] is None or (isinstance(sel[1], int)
                                                        and not isinstance(sel[1], bool)))):
        raise FileFormatError(f"{where}: bad selection entry")
    # the trajectory
    if any(k.startswith("traj/") for k in arrays):
        t = {k: arrays.get(f"traj/{k}") for k in TRAJ_REQUIRED + ("xs", "x0s")}
        missing = [k for k in TRAJ_REQUIRED if t[k] is None]
        if missing:
            raise FileFormatError(f"{where}: the trajectory lacks {', '.join(missing)}")
        x_T = t["x_T"]
        T = t["timesteps"].shape[0] if t["timesteps"].ndim == 1 else -1
        if (T < 1 or x_T.ndim != 3 or t["x_0"].shape != x_T.shape or t["zs"].shape != (T, *x_T.shape)
                or t["etas"].shape != (T,) or t["hs"].ndim != 4 or t["hs"].shape[0] != T
                or any(t[k] is not None and t[k].shape != (T, *x_T.shape) for k in ("xs", "x0s"))
                or 0 in x_T.shape or 0 in t["hs"].shape):
            raise FileFormatError(f"{where}: the trajectory's tensors have inconsistent shapes")
        tm = doc.get("trajectory") or {}
        if not (isinstance(tm.get("fingerprint"), str) and isinstance(tm.get("h_space"), str)):
            raise FileFormatError(f"{where}: the trajectory's model fingerprint is missing")
        _opt(tm, "origin", dict, where)
    # the mask
    m = arrays.get("mask")
    if m is not None and (m.ndim != 2 or 0 in m.shape):
        raise FileFormatError(f"{where}: the mask must be a 2-D array, not {m.shape}")
    # the library
    lib = doc.get("library")
    if lib is None:
        lib = []
    if not isinstance(lib, list) or not all(isinstance(x, dict) for x in lib):
        raise FileFormatError(f"{where}: the direction library must be a list of sets")
    meta_all = doc.get("set_meta") or {}
    seen = set()
    for sd in lib:
        ss = SetState.from_json(sd)
        if ss.set_id in seen:
            raise FileFormatError(f"{where}: direction set id {ss.set_id!r} appears twice"[:200])
        seen.add(ss.set_id)
        d, ts = arrays.get(f"set/{ss.set_id}/delta_h"), arrays.get(f"set/{ss.set_id}/timesteps")
        if d is None:
            continue  # the loader skips it with a warning
        n_ts = ts.shape[0] if ts is not None and ts.ndim == 1 else len(ss.timesteps) if ts is None else -1
        if d.ndim != 5 or d.shape[1] != n_ts or 0 in d.shape:
            raise FileFormatError(f"{where}: direction set '{ss.name[:40]}' has tensors of "
                                  f"inconsistent shapes")
        if any(not 0 <= x.index < d.shape[0] for x in ss.directions):
            raise FileFormatError(f"{where}: direction set '{ss.name[:40]}' refers to a direction "
                                  f"it does not have")
        meta = meta_all.get(ss.set_id, {})
        if not isinstance(meta, dict):
            raise FileFormatError(f"{where}: bad metadata of direction set '{ss.name[:40]}'")
        labels = meta.get("labels")
        if labels is not None and not (isinstance(labels, list) and len(labels) in (0, d.shape[0])):
            raise FileFormatError(f"{where}: direction set '{ss.name[:40]}' has {len(labels) if isinstance(labels, list) else 'no'} "
                                  f"labels for {d.shape[0]} directions")
        if meta.get("values") is not None and not (_is_values(meta["values"])
                                                    and len(meta["values"]) == d.shape[0]):
            meta["values"] = None  # only shown (plots, labels): drop them rather than the session
        if meta.get("params") is not None and not isinstance(meta["params"], dict):
            raise FileFormatError(f"{where}: bad parameters of direction set '{ss.name[:40]}'")
        for key in ("method", "fingerprint", "h_space"):
            _opt(meta, key, str, where)


def remove_session(path) -> None:
    """Delete a session's JSON and sidecars (used for the autosave)."""
    path = Path(path)
    for p in [path, *path.parent.glob(_sidecar_glob(path))]:
        try:
            p.unlink()
        except OSError:
            pass
