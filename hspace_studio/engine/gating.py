"""The gate of an accelerated network's forward (:mod:`.compiled`): the compiled code and/or
bf16 autocast where nothing could make them wrong, the eager forward elsewhere (grad,
forward-mode AD or a functorch transform, another hook, a stubbed module)."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch


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
