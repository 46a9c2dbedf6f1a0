"""The hooks that read or replace h, for :class:`.denoiser.Denoiser` (which owns them).

No diffusers forward code is copied: a hook reads or replaces one tensor (a module's input,
its output, or one element of a tuple output) and leaves the rest of the network as it is.
Which module holds h at a point is the network's :class:`.architectures.Architecture`'s.
"""
from __future__ import annotations

import itertools
from typing import Callable

import torch

from .architectures import HookTarget


def register(target: HookTarget, apply: Callable[[torch.Tensor], torch.Tensor]):
    """A hook on ``target.module`` that passes h through ``apply``; returns its handle."""
    module = target.module
    if target.pre:
        def pre(mod, args, kwargs):
            if "hidden_states" in kwargs:
                kwargs = dict(kwargs, hidden_states=apply(kwargs["hidden_states"]))
                return args, kwargs
            return (apply(args[0]),) + tuple(args[1:]), kwargs

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    index = target.index

    def post(mod, args, output):
        if index is None:
            return apply(output)
        h = output[index]
        new = apply(h)
        if new is h:  # read, not replaced (a record, or an empty permanent slot): the output as it is
            return None
        out = list(output)
        out[index] = new
        return type(output)(out) if isinstance(output, tuple) else out

    return module.register_forward_hook(post)


# A slot's entries live in a module-level table, not on the slot (which compiled code reaches
# through the network's hooks): with inductor's freezing, tensors reached through a module are
# taken as constants, so an edit's tensors would build the code again per edit.
_ACTIVE: dict = {}
_KEYS = itertools.count()


class HookSlot:
    """A permanent h hook (:meth:`.denoiser.Denoiser.install_slots`): the denoiser's ``hook``
    puts its ``(edit, record)`` in ``active`` instead of registering a hook of its own, so the
    module's hooks stay the same from call to call (what compiled code, :mod:`.compiled`,
    traced them as). Entries apply in the order they were entered, as stacked hooks do.
    ``apply(h, entries)`` does the work."""

    def __init__(self, apply: Callable):
        self.key = next(_KEYS)
        _ACTIVE[self.key] = []
        self._apply = apply
        self.handle = None

    @property
    def active(self) -> list:
        return _ACTIVE[self.key]

    def __call__(self, h):
        return self._apply(h, _ACTIVE[self.key])

    def release(self) -> None:
        if self.handle is not None:
            self.handle.remove()
        _ACTIVE.pop(self.key, None)
