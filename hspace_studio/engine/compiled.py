"""Faster network evaluations for decodes without grad: ``torch.compile`` and bf16.

:func:`accelerate` compiles the ``forward`` of the model's networks (the denoiser's, and a
guide's; :meth:`.denoiser.Denoiser.accelerate`). The h-space hooks are traced into the
compiled code, so they must not come and go between calls: the network gets permanent hooks
at its h-space points (:meth:`.denoiser.Denoiser.install_slots`), which the denoiser's
``hook`` fills instead of registering hooks of its own. A new edit or a
new step then reuses the compiled code (its tensors are inputs); a batch of another size
builds it once more with the batch dimension left free, which serves every later size.

The compiled code runs only when nothing could make it wrong: grad is off (sampling,
edits, strips, previews), no functorch transform or forward-mode AD is active (the
Jacobian), and no module of the UNet carries a hook other than the permanent ones or a
replaced ``forward`` (the Jacobian's upstream pass and stubs). Otherwise the eager
``forward`` runs.

``compile``: the weights are built into the code as constants (inductor's freezing), so
convolutions and linear layers run pre-packed oneDNN kernels and no call checks the
weights; a model whose weights are changed in place needs :func:`accelerate` again. The
edit's tensors stay inputs (:mod:`.hspace` keeps them out of the modules' reach). Results
agree with the eager model to float32 rounding (a few 1e-6 per evaluation,
``tests/engine/test_compiled.py``). Building needs a C++ compiler on a CPU
(:func:`compiler_available`) and takes tens of seconds per model and batch size there.
Inductor cannot keep code with packed weights on disk, so every start builds it again;
:func:`warm_up` builds it ahead of use.

``bf16``: the same calls (grad-free, nothing else hooked) run under bfloat16 autocast
(fast on CPUs with AMX or AVX-512 BF16, and on GPUs). Its final images differ from
float32's by about 45 dB PSNR on the default model (``bench/bench_slider.py --compiled``);
a recipe records it so that a replay uses it too.
"""
from __future__ import annotations

import contextlib
import shutil
from typing import Callable, Optional

import torch


def compiler_available() -> bool:
    """Whether ``torch.compile`` can build code here (a CPU build needs a C++ compiler)."""
    if not hasattr(torch, "compile"):
        return False
    if torch.cuda.is_available():
        return True
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def _transforms_active() -> bool:
    """Whether forward-mode AD or a functorch transform (jvp, vmap, grad) is running."""
    try:
        if torch._C._functorch.peek_interpreter_stack() is not None:
            return True
    except AttributeError:  # another torch: be safe
        return True
    from torch.autograd import forward_ad

    return getattr(forward_ad, "_current_level", -1) >= 0


def _fast_allowed() -> bool:
    return not torch.is_grad_enabled() and not _transforms_active()


def _gate(u, eager: Callable, fast: Callable, allowed: set, device_type: str, bf16: bool) -> Callable:
    """``u``'s forward: ``fast`` where it is safe (see the module doc), else ``eager``."""
    modules = list(u.modules())

    def plain() -> bool:
        for m in modules:
            if (m._forward_hooks and not allowed.issuperset(m._forward_hooks)) or \
                    (m._forward_pre_hooks and not allowed.issuperset(m._forward_pre_hooks)):
                return False
            if m is not u and "forward" in m.__dict__:
                return False
        return True

    def forward(*args, **kwargs):
        # grad, AD, another hook or a stub: the plain float32 forward (the Jacobian's upstream
        # pass caches outputs that its float32 pass with grad reads back)
        if not _fast_allowed() or not plain():
            return eager(*args, **kwargs)
        # an expanded (stride 0) input would build the code again
        args = tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)
        kwargs = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        with _frozen(fast is not eager), \
                torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            return fast(*args, **kwargs)

    return forward


def _frozen(on: bool):
    """Inductor's freezing while code is built: the weights become constants, so the
    convolutions and linear layers use pre-packed oneDNN kernels (the ``freezing`` option of
    ``torch.compile`` alone leaves them as inputs and plain calls). Dynamo reads the setting
    when it traces, which happens inside the call."""
    if not on:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def _no_parameter_guards(entries) -> list:
    """Keep every guard but those on the weights: frozen code has the weights built in, so
    checking them on every call (about a millisecond on the default model) buys nothing."""
    return [not isinstance(getattr(e, "value", None), torch.nn.Parameter) for e in entries]


def gated_forward(net, allowed: set, compile: bool, bf16: bool, device_type: str) -> Callable:
    """``net``'s new forward: compiled (weights frozen) and/or under bf16 autocast where that is
    safe, the eager forward elsewhere (see the module doc). ``allowed``: the ids of the
    permanent hooks the compiled code traces."""
    eager = net.forward
    fast = torch.compile(eager, options={"guard_filter_fn": _no_parameter_guards}) if compile else eager
    return _gate(net, eager, fast, allowed, device_type, bf16)


def accelerated(model) -> bool:
    return model.denoiser.accelerated


def accelerate(model, compile: bool = True, bf16: bool = False) -> None:
    """Make ``model``'s grad-free evaluations faster in place (see the module doc).

    Nothing is built until the first grad-free evaluation. Calling it again first gives
    the eager forwards back (:func:`restore`)."""
    restore(model)
    if not (compile or bf16):
        return
    model.denoiser.accelerate(compile, bf16, model.device.type)
    model.info["accelerated"] = {"compile": bool(compile), "bf16": bool(bf16)}


def restore(model) -> None:
    """Give every network of ``model`` its eager ``forward`` back, without permanent hooks."""
    model.denoiser.restore()
    model.info.pop("accelerated", None)


def warm_up(model, h_space: Optional[str] = None, strip_size: int = 5, progress=None, cancel=None) -> None:
    """Build the compiled code now for what a slider needs next: a sample, an edit and a
    strip of ``strip_size`` scales (each a one-step chain; the code depends on what the
    h hook does and on the batch, not on the step or the scale). ``progress(done, 3, msg)``
    after each; ``cancel`` is checked between them."""
    h_space = model.point(h_space)
    from ..core.progress import check
    from .sampler import EditSpec, edit, sample, strip

    def stage(i, msg):
        check(cancel)
        if progress is not None:
            progress(i, 3, msg)

    stage(0, "building the compiled network: sampling")
    traj = sample(model, [0], steps=1, eta=0.0, h_space=h_space)[0]
    delta = torch.full_like(traj.hs, 1e-6)
    stage(1, "building the compiled network: edits")
    edit(model, traj, [EditSpec(delta, 1.0)])
    stage(2, "building the compiled network: strips")
    if strip_size > 1:
        strip(model, traj, delta, [float(i) for i in range(strip_size)])
    stage(3, "compiled network built")
