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

import shutil
from typing import Optional

import torch

from .gating import gated_forward  # noqa: F401 (re-exported)


def compiler_available() -> bool:
    """Whether ``torch.compile`` can build code here (a CPU build needs a C++ compiler)."""
    if not hasattr(torch, "compile"):
        return False
    if torch.cuda.is_available():
        return True
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


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
