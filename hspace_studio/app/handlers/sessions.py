"""Session handlers: save the model, image, direction sets and mask to a session file, and open one all or nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from ...core.errors import HSpaceError
from ...core.session import SetState, read_session, write_session
from ..records import SessionPayload
from ..requests import Invert, LoadSession, Sample, SaveSession
from ..direction_library import _jsonable
from . import handler
from .source import _invert, _prompt_of, _sample


TRAJ_KEYS = ("x_T", "zs", "etas", "timesteps", "hs", "x_0", "xs", "x0s")  # (xs, x0s: the cached chain)


@handler(SaveSession)
def _save_session(state, job, progress, cancel):
    arrays: Dict[str, np.ndarray] = {}
    doc = dict(job.doc)
    if state.traj is not None:
        t = state.traj
        for k in TRAJ_KEYS:
            v = getattr(t, k)
            if v is not None:
                arrays[f"traj/{k}"] = v.detach().cpu().numpy()
        doc["trajectory"] = {"fingerprint": t.fingerprint, "h_space": t.h_space, "origin": t.origin,
                             "format": t.schedule}
    for sid in job.set_ids:
        ds = state.sets.get(sid)
        if ds is None:
            continue
        arrays[f"set/{sid}/delta_h"] = ds.delta_h.detach().float().cpu().numpy()
        arrays[f"set/{sid}/timesteps"] = ds.timesteps.detach().cpu().numpy()
        doc.setdefault("set_meta", {})[sid] = {"labels": list(ds.labels), "values": _jsonable(ds.values),
                                               "method": ds.method, "params": _jsonable(ds.params),
                                               "fingerprint": ds.fingerprint, "h_space": ds.h_space}
    if job.mask is not None:
        arrays["mask"] = np.asarray(job.mask, dtype=np.uint8)
    write_session(job.path, doc, arrays)
    return job.path


@handler(LoadSession)
def _load_session(state, job, progress, cancel):
    """Open a session all or nothing: if anything fails (or is cancelled) halfway, the
    worker's model, image and direction sets are put back as they were, so the window's
    current work stays usable."""
    saved = state.snapshot()
    try:
        return _load_session_now(state, job, progress, cancel)
    except BaseException:
        state.restore(saved)
        raise


def _load_session_now(state, job, progress, cancel):
    import torch

    from ...engine.directions import DirectionSet
    from ...engine.trajectory import Trajectory, stored_timesteps

    doc, arrays = read_session(job.path)
    warnings: List[str] = []
    m = doc.get("model") or {}
    model_info = None
    if m.get("source"):
        try:
            model_info = state.load_model(str(m["source"]), str(m.get("h_space", "after")), job.device,
                                          m.get("guide"), m.get("guide_weight"), m.get("timesteps"),
                                          loras=tuple((str(p), float(w)) for p, w in m.get("loras") or ()),
                                          model_config=m.get("model_config"))
        except HSpaceError as e:
            warnings.append(f"model: {e}")
    if model_info is not None and m.get("fingerprint") and m["fingerprint"] != model_info.fingerprint:
        warnings.append(f"the model '{model_info.source}' has changed since the session was saved "
                        f"(fingerprint {m['fingerprint']} -> {model_info.fingerprint}); "
                        f"directions made for the old weights are marked")
    traj_info = None
    tmeta = doc.get("trajectory") or {}
    src = doc.get("source") or {}
    if state.model is not None:
        if "traj/x_T" in arrays and tmeta.get("fingerprint") == state.model.fingerprint \
                and tmeta.get("h_space") == state.h_space:
            t = {k: torch.from_numpy(np.array(arrays[f"traj/{k}"])) for k in TRAJ_KEYS
                 if f"traj/{k}" in arrays}
            traj = Trajectory(x_T=t["x_T"].float(), zs=t["zs"].float(), etas=t["etas"].float(),
                              timesteps=stored_timesteps(t["timesteps"]), hs=t["hs"].float(), x_0=t["x_0"].float(),
                              fingerprint=tmeta["fingerprint"], h_space=tmeta["h_space"],
                              origin=tmeta.get("origin") or {}, xs=t["xs"].float() if "xs" in t else None,
                              x0s=t["x0s"].float() if "x0s" in t else None,
                              schedule=2 if tmeta.get("format") == 2 else 1)
            traj.check_model(state.model.fingerprint, state.h_space, "the session's image",
                             sample_shape=state.model.sample_shape, h_shape=state.model_info.h_shape)
            traj_info = state.set_trajectory(traj, src)
        elif src.get("kind") == "seed" and src.get("seed") is not None:
            traj_info = _sample(state, Sample(*_prompt_of(src), seed=int(src["seed"]),
                                              steps=int(src.get("steps", 10)), eta=float(src.get("eta", 1.0))),
                                progress, cancel)
            warnings.append("the image was sampled again from its seed")
        elif src.get("kind") == "image" and Path(str(src.get("path"))).is_file():
            traj_info = _invert(state, Invert(*_prompt_of(src), path=str(src["path"]),
                                              steps=int(src.get("steps", 10)), eta=float(src.get("eta", 1.0))),
                                progress, cancel)
            warnings.append("the image was inverted again")
        elif src:
            warnings.append("the session's image could not be restored for this model")
    sets = []
    meta_all = doc.get("set_meta") or {}
    for sd in doc.get("library") or []:
        ss = SetState.from_json(sd)
        key = f"set/{ss.set_id}/delta_h"
        if key not in arrays:
            warnings.append(f"direction set '{ss.name}' has no tensors in the session; skipped")
            continue
        meta = meta_all.get(ss.set_id, {})
        labels = meta.get("labels") or [f"direction {i}" for i in range(arrays[key].shape[0])]
        ts = arrays.get(f"set/{ss.set_id}/timesteps")  # (read_session checked the shapes)
        ds = DirectionSet(delta_h=torch.from_numpy(np.array(arrays[key])).float(),
                          timesteps=(torch.from_numpy(np.array(ts)).long() if ts is not None
                                     else torch.tensor(ss.timesteps, dtype=torch.long)),
                          fingerprint=ss.fingerprint, h_space=ss.h_space, method=ss.method,
                          labels=[str(x) for x in labels], values=meta.get("values", ss.values),
                          params=meta.get("params", ss.params))
        state.library.sets[ss.set_id] = ds
        state.library.version += 1
        ss.status, ss.status_text = state.library.check_set(ds)
        sets.append(ss)
    mask = arrays.get("mask")
    return SessionPayload(doc=doc, model=model_info, trajectory=traj_info, sets=sets,
                          mask=mask.astype(bool) if mask is not None else None, warnings=warnings)
