"""The recipe of an image the app exports: what re-creates it (``core.recipe``'s format),
with the direction sets and the region mask it needs written beside the PNG."""
from __future__ import annotations

from pathlib import Path

from ..core.recipe import make_recipe
from .edits import region_entry


def image_recipe(state, edits, set_files: dict, png_path: str) -> dict:
    """The recipe of ``state``'s image with ``edits``: direction files referenced by path
    where the set is a file on disk (``set_files``), else written to a sidecar next to the PNG."""
    from ..engine.directions import DirectionSet

    traj = state.image.require()
    state.models.model.use_conditioning(traj.origin)  # the image's prompt, whatever a failed job set
    src = dict(traj.origin)
    if state.image.source.get("kind") == "trajectory":
        src["trajectory"] = state.image.source.get("path")
    rows, out = [], []
    for e in edits:
        if float(e.scale) == 0.0:
            continue
        f = set_files.get(e.set_id)
        if state.library.is_noise(e.set_id):
            out.append(_noise_entry(state.library, e, f, png_path))
            continue
        entry = {"direction": None, "index": int(e.index), "scale": float(e.scale),
                 "window": list(e.window) if e.window is not None else None,
                 "at_step": state.image.at_step(e.at_timestep),
                 "label": state.library.get_set(e.set_id).labels[e.index]}
        if getattr(e, "asymmetric", False):
            entry["asymmetric"] = True
        if f and Path(f).is_file():
            entry["direction"] = str(Path(f).resolve())
        else:
            rows.append((len(out), e))
        out.append(entry)
    if rows:
        side = Path(png_path).with_suffix("")
        side = side.with_name(side.name + ".directions.safetensors").resolve()
        deltas, labels = [], []
        for j, (i, e) in enumerate(rows):
            ds = state.library.get_set(e.set_id).for_timesteps(traj.timesteps)
            deltas.append(ds.delta_h[e.index])
            labels.append(ds.labels[e.index])
            out[i]["direction"] = str(side)
            out[i]["index"] = j
        import torch

        DirectionSet(delta_h=torch.stack(deltas), timesteps=traj.timesteps.clone(),
                     fingerprint=state.models.model.weights_fingerprint, h_space=traj.h_space, method="custom",
                     labels=labels, params={"exported_for": Path(png_path).name}).save(side)
    region, mask = None, state.renderer.region_mask
    if mask is not None:
        region = region_entry(state.renderer.region_free_steps, mask=save_region_png(mask, png_path),
                              coverage=float(mask.mean()))
    return make_recipe(state.models.model, state.models.model_info.source, traj.h_space, src, out, region=region,
                       app="hspace-studio gui")


def _noise_entry(library, e, f, png_path: str) -> dict:
    """A recipe entry of a noise-space edit (``--noise-direction FILE:K --noise-scale S``);
    a set that is no file on disk is written beside the PNG."""
    ds = library.get_set(e.set_id)
    if f and Path(f).is_file():
        path = str(Path(f).resolve())
    else:
        side = Path(png_path).with_suffix("")
        side = side.with_name(f"{side.name}.noise-{e.set_id}.safetensors").resolve()
        ds.save(side)
        path = str(side)
    return {"space": "noise", "direction": path, "index": int(e.index), "scale": float(e.scale),
            "label": ds.labels[e.index]}


def save_region_png(mask, png_path: str) -> str:
    """Write the region mask beside an exported image (``NAME-region.png``, white inside)
    so that its recipe and command line re-create the masked edit; returns its path."""
    from ..core.mask import MaskDocument

    side = Path(png_path).with_suffix("")
    side = side.with_name(side.name + "-region.png").resolve()
    doc = MaskDocument(mask.shape)
    doc.apply(mask > 0.5)
    doc.save_png(side)
    return str(side)
