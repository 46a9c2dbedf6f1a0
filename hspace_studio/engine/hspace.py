"""Capture h and add a delta to it, by module hooks on a diffusers ``UNet2DModel``.

Three points (docs/architecture.md):

- ``before``: the input of the mid-block (a forward pre-hook on ``mid_block``);
- ``middle``: inside the mid-block's second resnet, the output of its ``norm2``;
- ``after``: the output of the mid-block (the paper's default).

No diffusers forward code is copied: the hooks read or replace one tensor and leave
the rest of the model as it is.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Callable, Optional

import torch

from ..core.errors import ModelLoadError

POINTS = ("before", "middle", "after")


def _check_point(point: str) -> str:
    if point not in POINTS:
        raise ValueError(f"unknown h-space point '{point}' (use one of {', '.join(POINTS)})")
    return point


def hook_module(unet, point: str):
    """The module whose input (``before``) or output (``middle``, ``after``) is h."""
    _check_point(point)
    mid = getattr(unet, "mid_block", None)
    if mid is None:
        raise ModelLoadError("this UNet has no mid-block, so it has no h-space")
    if point == "middle":
        resnets = getattr(mid, "resnets", None)
        if resnets is None or len(resnets) < 2:
            raise ModelLoadError("the mid-block has no second resnet for the 'middle' point")
        return resnets[1].norm2
    return mid


def _apply(h, unet, edit, record):
    """h after ``edit`` (each guidance branch alike), the conditional part appended to ``record``."""
    parts = h.chunk(getattr(unet, "branches", 1))
    if edit is not None:
        parts = [edit(p) for p in parts]
    if record is not None:
        record.append(parts[-1])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _register(module, point: str, apply: Callable[[torch.Tensor], torch.Tensor]):
    """A hook on ``module`` that passes h through ``apply``; returns its handle."""
    if point == "before":
        def pre(mod, args, kwargs):
            if "hidden_states" in kwargs:
                kwargs = dict(kwargs, hidden_states=apply(kwargs["hidden_states"]))
                return args, kwargs
            return (apply(args[0]),) + tuple(args[1:]), kwargs

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(mod, args, output):
        return apply(output)

    return module.register_forward_hook(post)


# The slots' entries live in a module-level table, not on the slot (which the compiled code
# reaches through the UNet's hooks): with inductor's freezing, tensors reached through a
# module are taken as constants, so an edit's tensors would build the code again per edit.
_ACTIVE: dict = {}
_KEYS = itertools.count()


class HookSlot:
    """A permanent h hook at one point (:func:`install_slots`): :func:`hspace_hook` puts its
    ``(unet, edit, record)`` in ``active`` instead of registering a hook of its own, so the
    module's hooks stay the same from call to call (what compiled code, :mod:`.compiled`,
    traced them as). Entries apply in the order they were entered, as stacked hooks do."""

    def __init__(self, point: str):
        self.point = point
        self.key = next(_KEYS)
        _ACTIVE[self.key] = []
        self.handle = None

    @property
    def active(self) -> list:
        return _ACTIVE[self.key]

    def __call__(self, h):
        for unet, edit, record in _ACTIVE[self.key]:
            h = _apply(h, unet, edit, record)
        return h


def install_slots(unet) -> list:
    """Give ``unet``'s h-space points permanent hooks (:class:`HookSlot`); returns their
    handles (for :func:`remove_slots` and to tell them from other hooks)."""
    handles = []
    for point in POINTS:
        try:
            module = hook_module(unet, point)
        except ModelLoadError:  # no second resnet: no 'middle' point
            continue
        slots = module.__dict__.setdefault("_hspace_slots", {})
        if point in slots:
            handles.append(slots[point].handle)
            continue
        slot = HookSlot(point)
        slot.handle = _register(module, point, slot)
        slots[point] = slot
        handles.append(slot.handle)
    return handles


def remove_slots(unet) -> None:
    for m in unet.modules():
        for slot in m.__dict__.pop("_hspace_slots", {}).values():
            slot.handle.remove()
            _ACTIVE.pop(slot.key, None)


@contextmanager
def hspace_hook(unet, point: str, edit: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                record: Optional[list] = None):
    """While active, every UNet forward passes h through ``edit`` and appends it to ``record``.

    ``edit(h) -> h'`` may return a new tensor (e.g. ``h + delta``); ``record`` receives
    the h that the rest of the network sees (after the edit).

    While ``unet.branches`` is above 1 (classifier-free guidance running its unconditional
    and conditional branch as one batch, :mod:`.text_model`), ``edit`` is applied to each
    branch's part of the batch alike and ``record`` receives the last (conditional) part.
    """
    module = hook_module(unet, point)
    slot = module.__dict__.get("_hspace_slots", {}).get(point)
    if slot is not None:
        entry = (unet, edit, record)
        slot.active.append(entry)
        try:
            yield
        finally:
            slot.active[:] = [e for e in slot.active if e is not entry]
        return
    handle = _register(module, point, lambda h: _apply(h, unet, edit, record))
    try:
        yield
    finally:
        handle.remove()


def h_shape(unet, point: str, sample_shape) -> tuple:
    """Shape (C', H', W') of h for one sample of ``sample_shape``, found by a dry run."""
    rec: list = []
    p = next(unet.parameters())
    x = torch.zeros((1, *sample_shape), device=p.device, dtype=p.dtype)
    with torch.no_grad(), hspace_hook(unet, point, record=rec):
        unet(x, torch.tensor([0], device=p.device))
    return tuple(rec[0].shape[1:])
