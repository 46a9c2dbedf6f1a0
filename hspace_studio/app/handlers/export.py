"""Export handlers: an edited image, a strip or a grid as PNG with the recipe that re-creates it."""
from __future__ import annotations

import dataclasses

from ..requests import ExportGrid, ExportImage, ExportStrip
from . import handler


@handler(ExportImage)
def _export_image(state, job, progress, cancel):
    from ...engine.images import save_png, to_pil

    model = state.models.require()
    edits = () if job.original else job.edits
    x0 = state.renderer.render_x0(edits, cancel=cancel, progress=progress)
    recipe = state.recipe(edits, dict(job.set_files), job.path)
    save_png(job.path, to_pil(model.to_pixels(x0[None])[0].cpu()), recipe)
    return {"path": job.path, "recipe": recipe}


@handler(ExportStrip)
def _export_strip(state, job, progress, cancel):
    from ...engine.images import grid, save_png, to_pil

    model = state.models.require()
    xs = state.renderer.strip_x0(job.item, job.scales, job.others, cancel=cancel, progress=progress)
    imgs = [to_pil(model.to_pixels(x[None])[0].cpu()) for x in xs]
    first = dataclasses.replace(job.item, scale=1.0)
    recipe = state.recipe((first, *job.others), dict(job.set_files), job.path)
    recipe["strip"] = [float(s) for s in job.scales]
    save_png(job.path, grid(imgs, cols=len(imgs)), recipe)
    return {"path": job.path, "recipe": recipe}


@handler(ExportGrid)
def _export_grid(state, job, progress, cancel):
    from ...engine.images import grid, save_png, to_pil

    model = state.models.require()
    imgs, rows = [], []
    cols = max(len(s) for _, s in job.rows)
    for item, scales in job.rows:
        xs = state.renderer.strip_x0(item, scales, (), cancel=cancel)
        row = [to_pil(model.to_pixels(x[None])[0].cpu()) for x in xs]
        row += [row[-1].copy()] * (cols - len(row))
        imgs += row
        r = state.recipe((dataclasses.replace(item, scale=1.0),),
                         dict(job.set_files), job.path)
        rows.append({"edits": r["edits"], "strip": [float(s) for s in scales]})
        progress(len(rows), len(job.rows), "grid")
    base = state.recipe((), {}, job.path)
    base["grid"] = rows
    save_png(job.path, grid(imgs, cols=cols), base)
    return {"path": job.path, "recipe": base}
