"""Faster network evaluations for decodes without grad: ``torch.compile`` and bf16.

:func:`accelerate` replaces the ``forward`` of the model's diffusers UNets (the UNet, or
the ones inside the engine's wrappers: a guide, a prompted UNet) by a gate: with grad off
(sampling, edits, strips, previews) a compiled ``forward`` runs, with grad on (the
Jacobian, fits through the sampler) the eager one, so autograd and forward-mode AD see
the model as before. The h-space hooks (:mod:`.hspace`) are traced into the compiled code;
a new edit or a new step does not recompile it (the hook's code stays the same, its
tensors are inputs). A new batch size compiles once more, with the batch dimension left
free, so strips and sampling batches share that second build.

``compile``: results agree with the eager model to float32 rounding (a few 1e-6 per
evaluation, ``tests/engine/test_compiled.py``). Inductor freezes the weights into the code
(they do not change after loading). Building needs a C++ compiler on a CPU
(:func:`compiler_available`) and takes tens of seconds per model there (cached on disk by
inductor, so a second start is faster); :func:`warm_up` builds it ahead of use.

``bf16``: the gated forward runs under bfloat16 autocast (on CPUs with AMX or AVX-512
BF16, and on GPUs). Its final images differ from float32 by about 47 dB PSNR on the
default model (``bench/bench_slider.py --variants`` measures it); every image it makes is
then that model's image, replayed alike by the same setting.
"""
from __future__ import annotations

import shutil
from typing import Callable, List

import torch

_EAGER = "_hspace_eager_forward"


def compiler_available() -> bool:
    """Whether ``torch.compile`` can build code here (a CPU build needs a C++ compiler)."""
    if not hasattr(torch, "compile"):
        return False
    if torch.cuda.is_available():
        return True
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def _unets(unet) -> List[torch.nn.Module]:
    """The diffusers UNets in ``unet`` (itself, or those a wrapper holds), outermost first."""
    return [m for m in unet.modules() if "down_blocks" in m._modules and "up_blocks" in m._modules]


def _gate(eager: Callable, fast: Callable, device_type: str, bf16: bool) -> Callable:
    def forward(*args, **kwargs):
        if torch.is_grad_enabled():
            return eager(*args, **kwargs)
        # an expanded (stride 0) input would otherwise build the code again
        args = tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)
        if bf16:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return fast(*args, **kwargs)
        return fast(*args, **kwargs)

    return forward


def accelerated(unet) -> bool:
    return any(hasattr(u, _EAGER) for u in _unets(unet))


def accelerate(model, compile: bool = True, bf16: bool = False) -> None:
    """Make ``model``'s grad-free evaluations faster in place (see the module doc).

    Nothing is built until the first evaluation without grad. Calling it again first
    gives the eager forward back (:func:`restore`)."""
    restore(model)
    if not (compile or bf16):
        return
    for u in _unets(model.unet):
        eager = u.forward
        fast = torch.compile(eager, options={"freezing": True}) if compile else eager
        u.forward = _gate(eager, fast, model.device.type, bf16)
        setattr(u, _EAGER, eager)
    model.info["accelerated"] = {"compile": bool(compile), "bf16": bool(bf16)}


def restore(model) -> None:
    """Give every UNet of ``model`` its eager ``forward`` back."""
    for u in _unets(model.unet):
        if hasattr(u, _EAGER):
            u.forward = getattr(u, _EAGER)
            delattr(u, _EAGER)
    model.info.pop("accelerated", None)


def warm_up(model, batch_sizes=(1,)) -> None:
    """Build the compiled code now: one grad-free evaluation per batch size."""
    shape = model.sample_shape
    p = next(model.unet.parameters())
    t = model.scheduler.timesteps[0] if len(getattr(model.scheduler, "timesteps", [])) else torch.tensor(0)
    with torch.no_grad():
        for b in batch_sizes:
            model.unet(torch.zeros((b, *shape), device=p.device, dtype=p.dtype), t)
