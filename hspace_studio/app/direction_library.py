"""The direction sets of the library (the worker's tensors), and how each fits the model and image."""
from __future__ import annotations

import math
import uuid
from typing import Dict, Optional, Tuple

import numpy as np

from ..core.errors import FileFormatError, HSpaceError, ModelMismatchError
from ..core.session import DirectionState, SetState, default_range

NOISE_RANGE = 2.0  # the slider range of noise-space directions


class DirectionLibrary:
    """``sets`` (set id -> ``DirectionSet``), checked against the loaded model (``models``) and
    the current image (``image``); ``version`` is counted up whenever those checks may give
    another answer (a set added, another model or image)."""

    def __init__(self, models, image) -> None:
        self.models = models
        self.image = image
        self.sets: Dict[str, object] = {}
        self.version = 0

    def forget(self, set_ids) -> int:
        """Drop direction sets; returns how many were asked for."""
        gone = set(set_ids)
        for sid in gone:
            self.sets.pop(sid, None)
        return len(gone)

    def is_noise(self, set_id: str) -> bool:
        return is_noise_set(self.get_set(set_id))

    def add_set(self, ds, name: str, path: Optional[str] = None, set_id: Optional[str] = None) -> SetState:
        set_id = set_id or uuid.uuid4().hex[:10]
        self.sets[set_id] = ds
        self.version += 1
        st = self.set_state(set_id, ds, name, path)
        st.status, st.status_text = self.check_set(ds)
        return st

    def set_state(self, set_id: str, ds, name: str, path: Optional[str]) -> SetState:
        rng = self._default_range(ds)
        values = None
        if ds.values is not None:
            values = [[float(v) if v is not None else float("nan") for v in row] for row in ds.values]
        dirs = [DirectionState(index=k, label=str(ds.labels[k]), range=rng) for k in range(len(ds))]
        return SetState(set_id=set_id, name=name, method=ds.method, fingerprint=ds.fingerprint,
                        h_space=ds.h_space, h_shape=tuple(int(v) for v in ds.delta_h.shape[2:]),
                        timesteps=[int(t) for t in ds.timesteps], values=values,
                        params=_jsonable(ds.params), path=path, directions=dirs)

    def _default_range(self, ds) -> float:
        if is_noise_set(ds):
            return NOISE_RANGE
        if ds.method in ("pca", "supervised"):
            return default_range(ds.method)
        if ds.method == "disentangled":
            inner = (ds.params or {}).get("target", {}).get("method")
            if inner in ("pca", "supervised"):
                return default_range(inner)
        try:  # half the typical norm of h, in units of the direction's norm
            dn = ds.delta_h.flatten(2).norm(dim=2).median().item()
            if self.image.traj is not None:
                hn = self.image.traj.hs.flatten(1).norm(dim=1).median().item()
            else:
                return 3.0
            return _nice(0.5 * hn / dn) if dn > 0 else 3.0
        except Exception:  # noqa: BLE001
            return 3.0

    def check_set(self, ds) -> Tuple[str, str]:
        info = self.models.model_info
        if info is None:
            return "mismatch", "no model loaded"
        if is_noise_set(ds):
            return self.check_noise_set(ds)
        try:
            ds.check_model(info.weights_fingerprint, info.h_space, info.h_shape)
        except ModelMismatchError as e:
            return "mismatch", str(e)
        if self.image.traj is not None and not np.array_equal(ds.timesteps.numpy(), self.image.traj.timesteps.numpy()):
            own = set(int(t) for t in self.image.traj.timesteps)
            if all(int(t) in own for t in ds.timesteps):
                return "ok", (f"computed at {ds.steps} of the image's {self.image.traj.steps} steps; other "
                              f"steps use the nearest one")
            return "remapped", (f"made at {ds.steps} steps; mapped onto the image's {self.image.traj.steps} "
                                f"steps by nearest timestep")
        return "ok", ""

    def check_noise_set(self, ds) -> Tuple[str, str]:
        from ..engine.noise_edits import check_noise_set, noise_edit

        try:
            check_noise_set(ds, self.models.model_info.weights_fingerprint, self.models.require().sample_shape)
            if self.image.traj is not None:
                for k in range(len(ds)):  # per-step noise made on other timesteps is refused
                    noise_edit(ds, k, 1.0, self.image.traj)
        except (ModelMismatchError, FileFormatError) as e:
            return "mismatch", str(e)
        return "ok", "noise-space directions: they change x_T and the per-step noise"

    def check_sets(self) -> Dict[str, Tuple[str, str]]:
        return {sid: self.check_set(ds) for sid, ds in self.sets.items()}

    def get_set(self, set_id: str):
        try:
            return self.sets[set_id]
        except KeyError:
            raise HSpaceError("that direction set is no longer in the library") from None


def _nice(x: float) -> float:
    """A round number near ``x`` (1, 2 or 5 times a power of ten)."""
    if not x > 0 or not math.isfinite(x):
        return 3.0
    e = math.floor(math.log10(x))
    m = x / 10 ** e
    m = 1 if m < 1.5 else 2 if m < 3.5 else 5 if m < 7.5 else 10
    return float(m * 10 ** e)


def set_name(ds, set_id: str) -> str:
    """How a message names a set of the library."""
    return f"direction set '{ds.labels[0] if len(ds) else set_id}'"


def is_noise_set(ds) -> bool:
    from ..engine.noise_edits import is_noise_set as engine_is_noise

    return engine_is_noise(ds)


def _jsonable(obj):
    """Metadata made safe for JSON (tensors and numpy become lists or summaries)."""
    import json

    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        pass
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        try:
            return obj.tolist()
        except Exception:  # noqa: BLE001
            pass
    return str(obj)
