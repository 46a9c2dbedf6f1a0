"""Faster network evaluations for decodes without grad: ``torch.compile`` and bf16.

:func:`accelerate` compiles the ``forward`` of each down block, up block and the mid-block
of the model's diffusers UNets (the UNet, or those inside the engine's wrappers: a guide,
a prompted UNet), leaving the UNet's own ``forward`` eager. Compiling a block's
``forward``, not the block, keeps the hooks registered on the block itself outside the
compiled code, so the h-space hooks (:mod:`.hspace`), which change from call to call,
run as they always do. Where h sits inside the mid-block (the ``middle`` point) the
mid-block stays eager.

Each block runs its compiled code only when nothing could make that code wrong: grad is
off (sampling, edits, strips, previews), no functorch transform or forward-mode AD is
active (the Jacobian), and no module inside the block carries a hook or a replaced
``forward`` (the Jacobian's upstream stubs). Otherwise its eager ``forward`` runs.

``compile``: results agree with the eager model to float32 rounding (a few 1e-6 per
evaluation, ``tests/engine/test_compiled.py``). Building needs a C++ compiler on a CPU
(:func:`compiler_available`) and takes tens of seconds per model and batch size there
(a second batch size builds code with the batch left free, which serves every later
one; inductor caches it on disk); :func:`warm_up` builds it ahead of use.

``bf16``: the UNet's forward runs under bfloat16 autocast (fast on CPUs with AMX or
AVX-512 BF16, and on GPUs), grad-free calls only. Its final images differ from float32's
by about 47 dB PSNR on the default model (``bench/bench_slider.py --compiled``); a
recipe records it so that a replay uses it too.
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


def _transforms_active() -> bool:
    """Whether forward-mode AD or a functorch transform (jvp, vmap, grad) is running."""
    try:
        if torch._C._functorch.peek_interpreter_stack() is not None:
            return True
    except AttributeError:  # another torch: be safe
        return True
    from torch.autograd import forward_ad

    return getattr(forward_ad, "_current_level", -1) >= 0


def _plain(modules) -> bool:
    """No module in ``modules`` has a hook or an instance ``forward`` of its own."""
    for m in modules:
        if m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__:
            return False
    return True


def _fast_allowed() -> bool:
    return not torch.is_grad_enabled() and not _transforms_active()


def _gate_block(block, eager: Callable, fast: Callable) -> Callable:
    inner = [m for m in block.modules() if m is not block]

    def forward(*args, **kwargs):
        if _fast_allowed() and _plain(inner):
            return fast(*args, **kwargs)
        return eager(*args, **kwargs)

    return forward


def _gate_bf16(eager: Callable, device_type: str) -> Callable:
    def forward(*args, **kwargs):
        if _fast_allowed():
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return eager(*args, **kwargs)
        return eager(*args, **kwargs)

    return forward


def _blocks(u, h_space: str) -> List[torch.nn.Module]:
    out = [*u.down_blocks, *u.up_blocks]
    if getattr(u, "mid_block", None) is not None and h_space != "middle":
        out.append(u.mid_block)
    return out


def _replace_forward(module, new: Callable) -> None:
    setattr(module, _EAGER, module.__dict__.get("forward"))
    module.forward = new


def _give_back(module) -> None:
    old = module.__dict__.pop(_EAGER)
    module.__dict__.pop("forward", None)
    if old is not None:
        module.forward = old


def accelerated(unet) -> bool:
    return any(hasattr(m, _EAGER) for m in unet.modules())


def accelerate(model, compile: bool = True, bf16: bool = False, h_space: str = "after") -> None:
    """Make ``model``'s grad-free evaluations faster in place (see the module doc).

    Nothing is built until the first grad-free evaluation. Calling it again first gives
    the eager forwards back (:func:`restore`)."""
    restore(model)
    if compile:
        # one code object (a block class's forward) serves blocks of several shapes
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for u in _unets(model.unet):
        if compile:
            for block in _blocks(u, h_space):
                eager = block.forward
                fast = torch.compile(eager, options={"freezing": True})
                _replace_forward(block, _gate_block(block, eager, fast))
        if bf16:
            _replace_forward(u, _gate_bf16(u.forward, model.device.type))
    if compile or bf16:
        model.info["accelerated"] = {"compile": bool(compile), "bf16": bool(bf16)}


def restore(model) -> None:
    """Give every module of ``model``'s UNets its eager ``forward`` back."""
    for m in model.unet.modules():
        if hasattr(m, _EAGER):
            _give_back(m)
    model.info.pop("accelerated", None)


def warm_up(model, batch_sizes=(1,)) -> None:
    """Build the compiled code now: one grad-free evaluation per batch size."""
    shape = model.sample_shape
    p = next(model.unet.parameters())
    t = model.scheduler.timesteps[0] if len(getattr(model.scheduler, "timesteps", [])) else torch.tensor(0)
    with torch.no_grad():
        for b in batch_sizes:
            model.unet(torch.zeros((b, *shape), device=p.device, dtype=p.dtype), t)
