"""Edits from directions, the same for the command line and the app: a direction's delta on an
image's steps, a noise-space edit, the region that keeps edits inside a mask or a part, and
strips. ``cli/edit_cmd.py`` calls these with direction files and a mask file,
:class:`~.state.EngineState` with the sets of its library and the painted mask.
"""
from __future__ import annotations

from typing import Optional, Sequence

NOISE = "noise"  # the "space" of a noise-space edit in a recipe


def h_delta(ds, index: int, traj, fingerprint: str, at_step: Optional[int] = None,
            name: str = "direction file"):
    """Direction ``index`` of the h-space set ``ds`` as a per-step delta on ``traj``'s steps:
    the set is checked against the model's weights ``fingerprint`` and the image's h-space
    point and shape, and mapped onto its timesteps by nearest timestep; with ``at_step``
    (a step index), that step's vector is used at every step."""
    ds.check_model(fingerprint, traj.h_space, tuple(traj.hs.shape[1:]), name)
    return ds.for_timesteps(traj.timesteps).steps_delta(int(index), at_step)


def h_edit(ds, index: int, scale: float, traj, fingerprint: str, window=None, at_step: Optional[int] = None,
           asymmetric: bool = False, name: str = "direction file"):
    """The sampler ``EditSpec`` of direction ``index`` of ``ds`` at ``scale`` (see :func:`h_delta`)."""
    from ..engine.sampler import EditSpec

    return EditSpec(h_delta(ds, index, traj, fingerprint, at_step, name), float(scale),
                    tuple(window) if window is not None else None, bool(asymmetric))


def noise_edit(ds, index: int, scale: float, traj, fingerprint: str, name: str = "direction file"):
    """The sampler ``NoiseEdit`` of direction ``index`` of the noise-space set ``ds`` on ``traj``,
    checked against the model's weights ``fingerprint`` and the image's x_T."""
    from ..engine.noise_edits import check_noise_set, noise_edit as engine_noise_edit

    check_noise_set(ds, fingerprint, tuple(traj.x_T.shape), name)
    return engine_noise_edit(ds, int(index), float(scale), traj, name)


def strip_x0(model, traj, first, scales: Sequence[float], others=(), region=None, progress=None, cancel=None):
    """x_0 (S, C, H, W): the edit ``first`` (an ``EditSpec`` or a ``NoiseEdit``) at each of
    ``scales``, with the ``others``: the engine's one strip (``sampler.strip``)."""
    from ..engine.sampler import strip

    return strip(model, traj, first, [float(s) for s in scales], others=list(others), progress=progress,
                 cancel=cancel, region=region)


def mask_region(model, mask, free_steps: int = 1):
    """The sampler ``Region`` that keeps edits inside ``mask`` (an image-sized array or a mask
    file; white = inside), the last ``free_steps`` steps run free to blend the border.
    An empty mask is refused."""
    from ..engine.sampler import Region, region_weights

    return Region(region_weights(model, mask), max(0, int(free_steps)))


def part_region(model, traj, parts: Sequence[str], grow: int = 3, free_steps: int = 1,
                segmenter: Optional[str] = "default"):
    """The ``Region`` of the image's own ``parts``, found on ``traj``'s unedited image by
    ``segmenter`` (a spec of ``engine.segmenter.load_segmenter``; "default" or None: the
    domain's) and grown by ``grow`` pixels; refused where the segmenter finds none."""
    from ..engine.segmenter import part_region as own_region

    own = own_region(model, list(parts), int(grow), int(free_steps), segmenter=segmenter)
    region = own(model.to_pixels(traj.x_0[None].to(model.device)).clamp(-1, 1))
    if float(region.weights.sum()) == 0:
        raise ValueError(f"the segmenter finds no {' or '.join(parts)} in this image")
    return region


def region_entry(free_steps: int, mask: Optional[str] = None, parts: Optional[Sequence[str]] = None,
                 grow: int = 3, segmenter: Optional[str] = None, coverage: Optional[float] = None) -> dict:
    """A recipe's ``region``: a mask file (``mask``) or the image's own ``parts`` (with
    ``grow``, and ``segmenter`` unless it is the domain's), and ``free_steps``."""
    if parts is not None:
        out = {"parts": list(parts), "grow": int(grow), "free_steps": int(free_steps)}
        if segmenter not in (None, "default"):
            out["segmenter"] = str(segmenter)
        return out
    out = {"mask": str(mask), "free_steps": int(free_steps)}
    if coverage is not None:
        out["coverage"] = float(coverage)
    return out
