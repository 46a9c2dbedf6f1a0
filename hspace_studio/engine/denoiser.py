"""The one denoiser interface: a diffusers network and everything the engine asks of it.

A :class:`Denoiser` wraps one diffusers denoiser (``UNet2DModel``, ``UNet2DConditionModel``
or a transformer, described by an :class:`.architectures.Architecture`) and owns:

- **the call**: ``denoiser(x, t)`` is the network's output for x_t (B, C, H, W) at timestep
  ``t``, under the bound conditioning (:class:`Conditioning`: the encoded prompt, a class
  label, classifier-free guidance run as one batch ``[uncond, cond]`` in the pipelines'
  order, a guidance embedding) and, for autoguidance, a weaker guide network
  (:class:`Guide`: ``g + w (m - g)``);
- **h**: its points (:meth:`points`, :meth:`default_point`) and the hook that reads or
  replaces h (:meth:`hook`). While a guided batch runs, an edit applies to each branch
  alike and a record receives the conditional branch's h. A transformer's h is the image
  tokens of a block's output, (B, N, D), shown to edits and records as (B, D, gh, gw) on
  the token grid, so h has the same layout for every network;
- **the network downstream of h** (:meth:`downstream`): what the Jacobian differentiates,
  with everything upstream of h computed once and stubbed;
- **the compiled-or-eager choice** (:meth:`accelerate`, :mod:`.compiled`), with permanent
  hook slots that compiled code traces.

Nothing outside the engine touches a network's modules; inside it, only this module and
:mod:`.compiled` do.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from .architectures import Architecture, HookTarget
from .hspace import HookSlot, register

Edit = Optional[Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Prompt:
    """What a conditional model samples under: a prompt (a class label for a class-conditional
    model), a negative prompt and the guidance scale."""

    prompt: str = ""
    negative_prompt: str = ""
    guidance: float = 7.5

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "guidance": float(self.guidance)}


class Conditioning:
    """A conditional network's inputs beside x and t.

    ``encode(prompt, negative_prompt)`` returns the keyword arguments of the positive and of
    the negative branch, batch 1 (nested dicts of tensors); ``uses_cfg(guidance)`` says whether
    a call runs both branches (classifier-free guidance); ``extra(guidance)`` adds arguments
    every call takes (a guidance embedding); ``weight(guidance)`` is the w of
    ``uncond + w (cond - uncond)`` (the scale itself, or 1 + scale for a pipeline that writes
    ``cond + scale (cond - uncond)``). Lists in the arguments hold one entry per sample (texts of
    different lengths). Encodings are kept until the prompt changes."""

    def __init__(self, encode: Callable[[str, str], Tuple[dict, dict]], prompt: Prompt,
                 uses_cfg: Callable[[float], bool] = lambda g: float(g) > 1.0,
                 extra: Optional[Callable[[float], dict]] = None,
                 weight: Callable[[float], float] = float):
        self._encode = encode
        self._uses_cfg = uses_cfg
        self._extra = extra
        self.weight = weight  # the guidance scale as w in uncond + w (cond - uncond)
        self.prompt: Optional[Prompt] = None
        self._emb: Optional[Tuple[dict, dict]] = None
        self.set(prompt)

    def set(self, prompt: Prompt) -> None:
        if self.prompt is None or (prompt.prompt, prompt.negative_prompt) != (
                self.prompt.prompt, self.prompt.negative_prompt):
            self._emb = self._encode(prompt.prompt, prompt.negative_prompt)
        self.prompt = prompt

    @property
    def cfg(self) -> bool:
        return bool(self._uses_cfg(float(self.prompt.guidance)))

    def kwargs(self, n: int, cfg: bool) -> dict:
        """The call's keyword arguments for a batch of ``n`` (``2n`` with ``cfg``: uncond first)."""
        pos, neg = self._emb
        out = _tree_cat([_tree_batch(neg, n), _tree_batch(pos, n)]) if cfg else _tree_batch(pos, n)
        if self._extra is not None:
            out.update(self._extra(float(self.prompt.guidance)))
        return out


def _tree_batch(obj, n):
    if torch.is_tensor(obj):
        return obj.expand(n, *obj.shape[1:]) if obj.dim() > 0 and obj.shape[0] == 1 else obj
    if isinstance(obj, dict):
        return {k: _tree_batch(v, n) for k, v in obj.items()}
    if isinstance(obj, list) and len(obj) == 1:  # one entry per sample
        return obj * n
    return obj


def _tree_cat(objs):
    first = objs[0]
    if torch.is_tensor(first):
        return torch.cat(objs) if first.dim() > 0 else first
    if isinstance(first, dict):
        return {k: _tree_cat([o[k] for o in objs]) for k in first}
    if isinstance(first, list):
        return [v for o in objs for v in o]
    return first


class Guide:
    """Autoguidance: a weaker network of the same kind; the guided output is ``g + w (m - g)``
    at the timesteps in ``interval`` (all when None). The guide's output does not depend on h."""

    def __init__(self, net, weight: float, interval: Optional[Tuple[int, int]] = None):
        weight = float(weight)
        if not weight == weight or weight in (float("inf"), float("-inf")):
            raise ValueError("the guidance weight must be a finite number")
        self.net = net
        self.weight = weight
        self.interval = (int(interval[0]), int(interval[1])) if interval is not None else None
        if self.interval is not None and self.interval[0] > self.interval[1]:
            raise ValueError(f"guidance interval {self.interval[0]}:{self.interval[1]}: "
                             "the first timestep must not be above the second")

    def guided_at(self, timestep) -> torch.Tensor:
        """Boolean per timestep value: where guidance applies."""
        t = torch.as_tensor(timestep).flatten()
        if self.interval is None:
            return torch.ones_like(t, dtype=torch.bool)
        lo, hi = self.interval
        return (t >= lo) & (t <= hi)


class Denoiser:
    """See the module doc. ``net`` is the diffusers network, ``arch`` its architecture."""

    def __init__(self, net: torch.nn.Module, arch: Architecture,
                 conditioning: Optional[Conditioning] = None, guide: Optional[Guide] = None):
        self.net = net
        self.arch = arch
        self.conditioning = conditioning
        self.guide = guide
        self._branches = 1  # guidance branches of the running call
        self._grid: Optional[Tuple[int, int]] = None  # token grid of the running call
        self._slots: dict = {}  # point -> HookSlot (permanent hooks, for compiled code)
        self._eager: dict = {}  # network -> its forward before accelerate

    # ------------------------------------------------------------------ the network
    @property
    def config(self):
        return self.net.config

    def networks(self) -> List[torch.nn.Module]:
        """The networks a call runs: the denoiser's, then the guide's."""
        return [self.net] + ([self.guide.net] if self.guide is not None else [])

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        """The network's output for x_t (B, C, H, W) at timestep ``t`` (a scalar or one per
        sample), with the conditioning and guidance bound."""
        n = x.shape[0]
        t = torch.as_tensor(t)
        cond = self.conditioning
        if cond is not None and cond.cfg:
            x2 = torch.cat([x, x])
            t2 = torch.cat([t, t]) if t.dim() == 1 and t.numel() == n > 1 else t
            self._branches = 2
            try:
                out = self._call(self.net, x2, t2, cond.kwargs(n, True))
            finally:
                self._branches = 1
            uncond, c = out.chunk(2)
            return uncond + cond.weight(cond.prompt.guidance) * (c - uncond)
        kwargs = cond.kwargs(n, False) if cond is not None else {}
        out = self._call(self.net, x, t, kwargs)
        g = self.guide
        if g is not None and g.weight != 1.0:
            where = g.guided_at(t)
            if bool(where.any()):
                gout = self.arch.call(g.net, x, t, kwargs)
                guided = gout + g.weight * (out - gout)
                if where.numel() == 1:
                    out = guided
                else:  # one timestep per sample
                    m = where.to(out.device).view(-1, *([1] * (out.dim() - 1)))
                    out = torch.where(m, guided, out)
        return out

    def _call(self, net, x, t, kwargs):
        self._grid = self.arch.grid(net, x)
        return self.arch.call(net, x, t, kwargs)

    # ------------------------------------------------------------------ h
    def points(self) -> List[str]:
        return self.arch.points(self.net)

    def default_point(self) -> str:
        return self.arch.default_point(self.net)

    def target(self, point: str) -> HookTarget:
        return self.arch.target(self.net, point)

    def _apply(self, h: torch.Tensor, target: HookTarget, edit: Edit, record: Optional[list]):
        """h after ``edit`` (each guidance branch alike), the conditional part in ``record``."""
        tokens = target.tokens and h.dim() == 3 and self._grid is not None
        rest = None
        if tokens and target.leading:  # the image tokens, then text and padding
            n = self._grid[0] * self._grid[1]
            h, rest = h[:, :n], h[:, n:]
        if tokens:
            B, N, D = h.shape
            h = h.transpose(1, 2).reshape(B, D, *self._grid)
        parts = h.chunk(self._branches)
        if edit is not None:
            parts = [edit(p) for p in parts]
        if record is not None:
            record.append(parts[-1])
        if edit is None and not tokens:
            return h if len(parts) == 1 else torch.cat(parts)
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        if tokens:
            out = out.reshape(B, D, N).transpose(1, 2)
        return out if rest is None else torch.cat([out, rest], 1)

    @contextmanager
    def hook(self, point: str, edit: Edit = None, record: Optional[list] = None):
        """While active, every call passes h at ``point`` through ``edit`` (``h -> h'``, e.g.
        adding a delta) and appends the h the rest of the network sees to ``record``."""
        target = self.target(point)
        slot = self._slots.get(point)
        if slot is not None:
            entry = (edit, record)
            slot.active.append(entry)
            try:
                yield
            finally:
                slot.active[:] = [e for e in slot.active if e is not entry]
            return
        handle = register(target, lambda h: self._apply(h, target, edit, record))
        try:
            yield
        finally:
            handle.remove()

    def h_shape(self, point: str, sample_shape) -> tuple:
        """Shape (C', H', W') of h for one sample of ``sample_shape``, found by a dry run."""
        rec: list = []
        p = next(self.net.parameters())
        x = torch.zeros((1, *sample_shape), device=p.device, dtype=p.dtype)
        with torch.no_grad(), self.hook(point, record=rec):
            self(x, torch.tensor([0], device=p.device))
        return tuple(rec[0].shape[1:])

    def install_slots(self) -> list:
        """Permanent hooks at every point (:class:`.hspace.HookSlot`), which :meth:`hook` fills
        instead of registering its own; returns their handles."""
        handles = []
        for point in self.points():
            if point not in self._slots:
                target = self.target(point)
                slot = HookSlot(lambda h, entries, target=target: self._apply_all(h, target, entries))
                slot.handle = register(target, slot)
                self._slots[point] = slot
            handles.append(self._slots[point].handle)
        return handles

    def _apply_all(self, h, target, entries):
        for edit, record in entries:
            h = self._apply(h, target, edit, record)
        return h

    def remove_slots(self) -> None:
        for slot in self._slots.values():
            slot.release()
        self._slots = {}

    # ------------------------------------------------------------------ downstream of h
    @contextmanager
    def downstream(self, x: torch.Tensor, t, point: str):
        """The network's output as a function of h alone at one step: yields ``(h0, fn)``.

        Entering runs the call once on ``x`` (1, C, H, W) at ``t``, caching the outputs of the
        modules upstream of h (``h0`` is h there, (1, C', H', W')); while inside, those modules
        return their cached outputs (batch-expanded), so ``fn(h)`` for h (B, C', H', W') costs
        only the network after h. With guidance, each branch moves by the same ``h - h0``.
        Forward-mode AD works inside (:func:`forward_ad_safe`)."""
        mods = self.arch.upstream(self.net, point)
        cached: list = [None] * len(mods)
        handles = []
        rec: list = []
        for i, m in enumerate(mods):
            def grab(mod, args, out, i=i):
                cached[i] = _freeze(out)
            handles.append(m.register_forward_hook(grab))
        try:
            with torch.no_grad(), self.hook(point, record=rec):
                self(x, t)
        finally:
            for h in handles:
                h.remove()
        h0 = rec[-1].detach().contiguous().clone()
        current: list = [None]

        def replace(h_branch):
            h = current[0]
            return h if self._branches == 1 else h + (h_branch - h0)

        def fn(h):
            n = h.shape[0]
            xx = x if n == 1 else x.expand(n, *x.shape[1:])
            current[0] = h
            try:
                return self(xx, t)
            finally:
                current[0] = None

        with ExitStack() as stack:
            stack.enter_context(_stubbed(mods, cached))
            stack.enter_context(forward_ad_safe(self.net))
            stack.enter_context(self.hook(point, edit=replace))
            yield h0, fn

    # ------------------------------------------------------------------ speed
    def accelerate(self, compile: bool, bf16: bool, device_type: str) -> None:
        """Grad-free calls compiled and/or under bf16 autocast (:mod:`.compiled`); the eager
        forward wherever grad, forward-mode AD, another hook or a stub is present."""
        from .gating import gated_forward

        self.restore()
        if not (compile or bf16):
            return
        for net in self.networks():
            allowed = {h.id for h in self.install_slots()} if net is self.net else set()
            self._eager[net] = net.__dict__.get("forward")
            net.forward = gated_forward(net, allowed, compile, bf16, device_type)

    def restore(self) -> None:
        """The eager forwards back, without permanent hooks."""
        for net, old in self._eager.items():
            net.__dict__.pop("forward", None)
            if old is not None:
                net.forward = old
        self._eager = {}
        self.remove_slots()

    @property
    def accelerated(self) -> bool:
        return bool(self._eager)


# ----------------------------------------------------------- stubs of the upstream part

def _batch_of(args, kwargs) -> Optional[int]:
    for a in list(args) + list(kwargs.values()):
        if torch.is_tensor(a) and a.dim() > 0:
            return int(a.shape[0])
    return None


def _expand(obj, n):
    """``obj``'s batch of 1 expanded to ``n``; a batch of k > 1 (the branches of a guided
    call, in order) repeated to k blocks of n / k."""
    if torch.is_tensor(obj):
        if n is None or obj.dim() == 0 or obj.shape[0] == n:
            return obj
        if obj.shape[0] > 1:
            return obj.repeat_interleave(n // obj.shape[0], 0)
        return obj.expand(n, *obj.shape[1:])
    if isinstance(obj, tuple):
        return tuple(_expand(o, n) for o in obj)
    if isinstance(obj, list):
        return [_expand(o, n) for o in obj]
    return obj


def _freeze(obj):
    if torch.is_tensor(obj):
        return obj.detach().contiguous().clone()
    if isinstance(obj, tuple):
        return tuple(_freeze(o) for o in obj)
    if isinstance(obj, list):
        return [_freeze(o) for o in obj]
    return obj


@contextmanager
def _stubbed(modules, cached):
    """Replace each module's forward by one returning its cached output (batch-expanded)."""
    saved = []
    try:
        for m, out in zip(modules, cached):
            saved.append((m, m.__dict__.get("forward", None)))

            def stub(*args, _out=out, **kwargs):
                return _expand(_out, _batch_of(args, kwargs))

            m.forward = stub
        yield
    finally:
        for m, old in saved:
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = old


@contextmanager
def forward_ad_safe(net):
    """Contexts under which forward-mode AD runs through a diffusers network.

    ``scaled_dot_product_attention``'s fused kernels have no forward-mode derivative: use
    its math backend. GroupNorm's forward-mode formula needs a contiguous input (attention
    outputs are channels-last-strided): make it so by a pre-hook."""
    handles = []
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        ctx = sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # older torch
        ctx = nullcontext()
    try:
        for m in net.modules():
            if isinstance(m, torch.nn.GroupNorm):
                handles.append(m.register_forward_pre_hook(
                    lambda mod, args: (args[0].contiguous(),) + tuple(args[1:])))
        with ctx:
            yield
    finally:
        for h in handles:
            h.remove()
