"""The Python API: hspace-studio in a few lines of a notebook, and its directions on your own
diffusers pipeline.

    from hspace_studio import api

    model = api.load("default")                          # or a folder: SD, SDXL, SD3, Flux ...
    image = api.sample(model, seed=7, steps=10)
    pcs = api.pca(model, samples=64, components=4, steps=10)
    edited = api.edit(model, image, [(pcs, 0, 3.0)])     # or {"pcs.safetensors:0": 3.0}
    api.save(model, edited, "edited.png")

    with api.apply_directions(pipe, {"pcs.safetensors:0": 3.0}):
        out = pipe(prompt, generator=torch.Generator().manual_seed(7))

``apply_directions`` adds the directions to h inside the pipeline's own network (its UNet or
transformer, at the point the file records), at each step the direction of the nearest
timestep, in every guidance branch alike: the image equals ``hspace-studio edit`` with the same
seed, steps, eta and scale when the pipeline samples as the engine does (docs/python-api.md).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .core.specs import split_index
from .engine.directions import DirectionSet
from .engine.model import DiffusionModel
from .engine.trajectory import Trajectory

# {"file.safetensors:INDEX": scale, ...}, or [(set, index, scale), ...] (a DirectionSet is no dict key)
Refs = Union[Mapping[str, float], Sequence[Tuple[DirectionSet, int, float]]]


def load(source: str = "default", prompt: Optional[str] = None, negative_prompt: Optional[str] = None,
         guidance: Optional[float] = None, **kwargs) -> DiffusionModel:
    """A model by name, folder or hub id (``engine.model.load_model``'s options: ``device``,
    ``loras``, ``vae``, ``image_size`` ...), under ``prompt`` for a text-to-image model."""
    from .engine.model import load_model

    model = load_model(source, **kwargs)
    model.set_prompt(prompt, negative_prompt, guidance)
    return model


def sample(model: DiffusionModel, seed: int, steps: int = 10, eta: float = 1.0,
           h_space: Optional[str] = None) -> Trajectory:
    """The image of ``seed``, as an editable trajectory."""
    from .engine.sampler import sample as engine_sample

    return engine_sample(model, [int(seed)], steps=steps, eta=eta, h_space=h_space)[0]


def invert(model: DiffusionModel, image_path, steps: int = 10, eta: float = 1.0,
           h_space: Optional[str] = None) -> Trajectory:
    """A real image (a file) as an editable trajectory (exact for eta > 0)."""
    from .engine.images import load_image
    from .engine.inversion import invert as engine_invert

    img, _ = load_image(image_path, model.image_size)
    return engine_invert(model, img, steps=steps, eta=eta, h_space=h_space,
                         origin={"image": str(image_path)}).trajectory


def pca(model: DiffusionModel, samples: int = 64, components: int = 8, steps: int = 10, eta: float = 1.0,
        h_space: Optional[str] = None, prompts: Optional[Sequence[str]] = None) -> DirectionSet:
    """Principal components of h over ``samples`` seeds (under each of ``prompts``)."""
    from .engine.discover.pca import pca_directions

    return pca_directions(model, n_samples=samples, components=components, steps=steps, eta=eta,
                          h_space=h_space, prompts=prompts).directions


def jacobian(model: DiffusionModel, image: Trajectory, k: int = 3, mask=None) -> DirectionSet:
    """The k directions that change this image most (inside ``mask``, an (H, W) array, if given)."""
    from .engine.discover.jacobian import jacobian_directions

    return jacobian_directions(model, image, k=k, mask=mask).directions


def supervised(model: DiffusionModel, positive, negative, steps: int = 10, eta: float = 1.0,
               h_space: Optional[str] = None) -> DirectionSet:
    """The mean change of h between two sets of labelled images (folders or lists of files)."""
    from .engine.discover.supervised import supervised_from_images

    return supervised_from_images(model, positive, negative, steps=steps, eta=eta, h_space=h_space).directions


def directions(refs: Refs) -> List[Tuple[DirectionSet, int, float]]:
    """(set, index, scale) of each ``"file.safetensors:INDEX"`` (index 0 if none) of a dict, or
    each ``(set, index, scale)`` of a list."""
    out = []
    items = refs.items() if isinstance(refs, Mapping) else [((ds, k), scale) for ds, k, scale in refs]
    for ref, scale in items:
        if isinstance(ref, tuple):
            ds, k = ref
        else:
            path, k = split_index(str(ref))
            k = 0 if k is None else k
            ds = DirectionSet.load(path)
        if not 0 <= int(k) < len(ds):
            raise IndexError(f"direction index {k} out of range (the set has {len(ds)})")
        out.append((ds, int(k), float(scale)))
    return out


def edit(model: DiffusionModel, image: Trajectory, refs: Refs) -> torch.Tensor:
    """x_0 of ``image`` decoded with the directions added to h at their scales."""
    from .engine.sampler import EditSpec, edit as engine_edit

    specs = []
    for ds, k, scale in directions(refs):
        ds.check_model(model.weights_fingerprint, image.h_space, tuple(image.hs.shape[1:]))
        specs.append(EditSpec(ds.for_timesteps(image.timesteps).steps_delta(k), scale))
    return engine_edit(model, image, specs)


def to_image(model: DiffusionModel, x0: Union[torch.Tensor, Trajectory]):
    """A PIL image of x_0 (or of a trajectory's image)."""
    from .engine.images import to_pil

    x0 = x0.x_0 if isinstance(x0, Trajectory) else x0
    return to_pil(model.to_pixels(x0[None])[0].cpu())


def save(model: DiffusionModel, x0: Union[torch.Tensor, Trajectory], path) -> None:
    to_image(model, x0).save(path)


# ---------------------------------------------------------------- on your own pipeline

@contextmanager
def apply_directions(pipe, refs: Refs):
    """While active, ``pipe`` (a diffusers pipeline of a family the engine supports) makes the
    image edited by the directions (see the module doc). All directions must be at one h point."""
    from .engine.hspace import register
    from .engine.transformers import architecture_for

    net = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if net is None:
        raise ValueError(f"{type(pipe).__name__} has no unet or transformer")
    arch = architecture_for(net)
    edits = directions(refs)
    points = {ds.h_space for ds, _, _ in edits}
    if len(points) != 1:
        raise ValueError(f"the directions are at several h-space points ({', '.join(sorted(points))})")
    target = arch.target(net, points.pop())
    now: Dict[str, Optional[float]] = {"t": None}

    def timestep(mod, args, kwargs):
        now["t"] = arch.timestep_of(args, kwargs)

    def delta(h: torch.Tensor) -> torch.Tensor:
        t = now["t"]
        if t is None:
            raise RuntimeError("apply_directions: the network was called without a timestep")
        total = 0
        for ds, k, scale in edits:
            i = int((ds.timesteps.double() - t).abs().argmin())
            total = total + scale * ds.delta_h[k, i]
        return total

    def apply(h: torch.Tensor) -> torch.Tensor:
        d = delta(h)
        if not torch.is_tensor(d):
            return h
        d = d.to(h.device, h.dtype)
        if target.tokens and h.dim() == 3:  # (D, gh, gw) -> tokens (gh * gw, D)
            tokens = d.reshape(d.shape[0], -1).T
            n = tokens.shape[0]
            if target.leading:
                return torch.cat([h[:, :n] + tokens, h[:, n:]], 1)
            return h + tokens
        return h + d

    handles = [net.register_forward_pre_hook(timestep, with_kwargs=True), register(target, apply)]
    try:
        yield pipe
    finally:
        for hd in handles:
            hd.remove()
