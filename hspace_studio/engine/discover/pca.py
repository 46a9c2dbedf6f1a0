"""Global directions: principal components of h over many generated samples.

Two modes:

- ``per-step``: one basis per timestep, fitted on the N samples' h_t (D = C*H*W);
- ``global``: one basis over all steps flattened (T*D), applied per step by reshaping.

Samples are drawn ``batch`` at a time and streamed into one accumulator per basis.
Memory is bounded by a budget (``memory_mb``: the accumulators, their final
decomposition and one sampling batch; the network's own working memory is not
counted), never by N. Three accumulators (:mod:`.pca_accumulators`); ``solver="auto"`` takes
the first that fits:

- ``gram`` (exact): keeps the rows (N x D float32); at the end the top eigenvectors of
  the N x N Gram matrix of the centred rows give the components (O(N^2 D)). Only while
  N <= D and the rows fit in the budget (e.g. up to ~1500 samples of the default model
  per step within the default 1 GiB);
- ``covariance`` (exact): sums and sums of outer products in float64, shifted by the
  first batch's mean (no cancellation), updated in place by BLAS ``syrk``, then one
  symmetric eigendecomposition. About ``D^2 * 8`` bytes per basis plus twice that once
  to decompose, whatever N: small D (tiny models; one basis of the default model is
  512 MiB);
- ``incremental``: scikit-learn's ``IncrementalPCA`` (Ross et al. 2008; what the paper
  uses), keeping ``m`` components (``k <= m <= 128``, as many as the budget allows) and
  fitting every ``m`` buffered samples. Exact while N <= m; beyond that an
  approximation whose error grows as the spectrum flattens (tests/test_pca.py measures
  it on an untrained model's flat spectrum: with m = 16 the top-3 subspace still
  captures > 97% of the optimal variance).

``plan_pca`` reports the choice and its estimated peak (``PCAPlan``).

On several processes (``torchrun``; :mod:`..distributed`) each rank samples its block of
the seeds and the exact accumulators are combined before the decomposition (covariance:
a ``reduce`` of float64 statistics; gram: a ``gather`` of the rows), so the result
matches one process's to float tolerance; rank 0 decomposes and broadcasts the result.
The incremental solver is refused there.

Direction values (docs/architecture.md): ``delta_h[k, t]`` is the component at one standard
deviation (slider units are sigma), ``values`` the explained-variance ratios (per step;
the global ratio repeated over T). Per-step signs are aligned across timesteps so a
direction points the same way at every step.
"""
from __future__ import annotations

from contextlib import contextmanager

import math
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from ...core.progress import CancelToken, Progress, ProgressFn
from ..directions import DirectionSet
from ..model import DiffusionModel
from ..etas import EtaLike, eta_json, etas_tensor
from ..sampler import sample, timesteps_for
from .pca_accumulators import CovarianceAccumulator, GramAccumulator, IncrementalAccumulator

MODES = ("per-step", "global")
SOLVERS = ("auto", "gram", "covariance", "incremental")
MAX_KEPT = 128


@dataclass
class PCAPlan:
    mode: str
    solver: str
    dim: int  # features per basis (D, or T*D for global)
    bases: int  # T for per-step, 1 for global
    kept: int  # components kept by the incremental solver (k for covariance)
    flush_rows: int
    batch: int
    est_bytes: int  # accumulators + one decomposition + one sampling batch
    budget_bytes: int

    def describe(self) -> str:
        extra = f", keeping {self.kept} components" if self.solver == "incremental" else ""
        return (f"{self.mode} PCA, {self.solver} solver{extra}, ~{self.est_bytes / 2**20:.1f} MiB "
                f"of a {self.budget_bytes / 2**20:.0f} MiB budget")


def batch_bytes(batch: int, steps: int, dim: int, x_dim: int) -> int:
    """One sampling batch: h of every step, the noise (x_T and z_t) and x_0 (float32)."""
    return 4 * batch * (steps * dim + (steps + 2) * x_dim)


def plan_pca(dim: int, steps: int, k: int, n_samples: int, batch: int, memory_mb: float,
             mode: str = "per-step", solver: str = "auto", x_dim: int = 0) -> PCAPlan:
    """Choose the accumulator that fits ``memory_mb`` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown PCA mode '{mode}' (use {' or '.join(MODES)})")
    if solver not in SOLVERS:
        raise ValueError(f"unknown PCA solver '{solver}' (use {', '.join(SOLVERS)})")
    if not memory_mb > 0:
        raise ValueError("the memory budget must be > 0 MB")
    budget = int(memory_mb * 2**20)
    feats = dim if mode == "per-step" else steps * dim
    bases = steps if mode == "per-step" else 1
    if k < 1:
        raise ValueError("the number of components must be at least 1")
    if k > min(feats, n_samples):
        raise ValueError(f"cannot find {k} components from {n_samples} samples of dimension {feats}")
    bb = batch_bytes(batch, steps, dim, x_dim)
    gram = (bases * GramAccumulator.bytes_needed(feats, n_samples)
            + GramAccumulator.work_bytes(feats, n_samples, k) + bb)
    cov = (bases * CovarianceAccumulator.bytes_needed(feats)
           + CovarianceAccumulator.work_bytes(feats, batch) + bb)
    if solver == "gram" or (solver == "auto" and gram <= budget and n_samples <= feats):
        return PCAPlan(mode, "gram", feats, bases, k, batch, batch, gram, budget)
    if solver == "covariance" or (solver == "auto" and cov <= budget):
        return PCAPlan(mode, "covariance", feats, bases, k, batch, batch, cov, budget)

    def inc_bytes(m):
        return (bases * IncrementalAccumulator.bytes_needed(feats, m, m, batch)
                + IncrementalAccumulator.work_bytes(feats, m, m, batch) + bb)

    hi = max(k, min(MAX_KEPT, feats, n_samples))
    m = hi
    if solver == "auto":
        while m > k and inc_bytes(m) > budget:
            m -= 1
        if inc_bytes(m) > budget:
            raise ValueError(
                f"PCA of {k} components does not fit in {memory_mb:g} MB (it needs about "
                f"{math.ceil(inc_bytes(k) / 2**20)} MB with the incremental solver); raise "
                f"--memory-mb, or lower --batch or --components")
    return PCAPlan(mode, "incremental", feats, bases, m, m, batch, inc_bytes(m), budget)


# -------------------------------------------------------------------------- driver

@dataclass
class PCAResult:
    directions: DirectionSet
    explained_variance: np.ndarray  # (K, T) or (K, 1): variance along each component
    explained_variance_ratio: np.ndarray  # (K, T) or (K, 1)
    plan: PCAPlan
    n_samples: int
    seconds: float
    mean: Optional[np.ndarray] = None  # (T, D) mean h, when asked for
    notes: List[str] = field(default_factory=list)


def align_component_signs(comps: np.ndarray) -> np.ndarray:
    """(T, K, D) per-step components, flipped so each points the way of the previous
    steps' sum; at the first step the largest-magnitude entry is positive."""
    out = comps.copy()
    T, K = out.shape[:2]
    for j in range(K):
        v0 = out[0, j]
        if v0[np.argmax(np.abs(v0))] < 0:
            out[0, j] = -v0
        ref = out[0, j].copy()
        for t in range(1, T):
            if float(np.dot(out[t, j], ref)) < 0:
                out[t, j] = -out[t, j]
            ref += out[t, j]
    return out


def _seed_list(seeds, n_samples, seed_start):
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("no seeds given")
        return seeds, {"list": seeds} if len(seeds) <= 64 else {"count": len(seeds), "first": seeds[:8]}
    if int(n_samples) < 2:
        raise ValueError("PCA needs at least 2 samples")
    seeds = list(range(int(seed_start), int(seed_start) + int(n_samples)))
    return seeds, {"start": int(seed_start), "count": int(n_samples)}


@contextmanager
def _prompt_kept(model: DiffusionModel, prompts):
    """With a list of ``prompts``, the model goes back to its own prompt afterwards."""
    before = model.conditioning.get("prompt")
    try:
        yield
    finally:
        if prompts is not None and before is not None:
            model.set_prompt(before)


def pca_directions(model: DiffusionModel, n_samples: int = 1000, components: int = 8,
                   mode: str = "per-step", steps: int = 10, eta: EtaLike = 1.0,
                   h_space: Optional[str] = None, batch: int = 16, memory_mb: float = 1024,
                   solver: str = "auto", seeds: Optional[Sequence[int]] = None,
                   seed_start: int = 0, keep_mean: bool = False,
                   prompts: Optional[Sequence[str]] = None,
                   progress: Optional[ProgressFn] = None,
                   cancel: Optional[CancelToken] = None) -> PCAResult:
    """Principal components of h over ``n_samples`` samples (seeds ``seed_start ...``).

    Returns a :class:`PCAResult` whose ``directions`` hold ``components`` directions on
    the ``steps`` timesteps. ``seeds`` overrides ``n_samples``/``seed_start``. For a
    text-to-image model, ``prompts`` (a list) samples every seed under every prompt (the
    model's negative prompt and guidance), and the model keeps its own prompt afterwards;
    None: the model's current prompt.
    """
    h_space = model.point(h_space)
    with _prompt_kept(model, prompts):
        if prompts is not None:
            prompts = [str(p) for p in prompts]
            if not prompts:
                raise ValueError("the prompt list is empty")
            model.set_prompt(prompts[0])  # refuses prompts for an unconditional model
        from .. import distributed as dist

        t0 = time.perf_counter()
        seeds, seed_rec = _seed_list(seeds, n_samples, seed_start)
        runs = prompts if prompts is not None else [None]  # one pass over the seeds per prompt
        N = len(seeds) * len(runs)
        nproc = dist.world_size()
        if not dist.is_main():
            progress = None  # rank 0 reports
        batch = max(1, int(batch))
        timesteps = timesteps_for(model, steps)
        etas_tensor(eta, steps)  # validate early
        hs = model.denoiser.h_shape(h_space, model.sample_shape)
        D = int(np.prod(hs))
        x_dim = int(np.prod(model.sample_shape))
        plan = plan_pca(D, steps, components, N, min(batch, N), memory_mb, mode, solver, x_dim)
        if nproc > 1 and plan.solver == "incremental":
            cov = plan_pca(D, steps, components, N, min(batch, N), memory_mb, mode, "covariance", x_dim)
            raise ValueError(
                f"the incremental PCA solver does not run on several processes ({nproc}): only the "
                f"exact solvers (gram, covariance) combine across processes; raise --memory-mb (the "
                f"covariance solver needs about {math.ceil(cov.est_bytes / 2**20)} MB here) or run "
                f"on one process")
        if plan.solver == "gram":
            accs = [GramAccumulator(plan.dim) for _ in range(plan.bases)]
        elif plan.solver == "covariance":
            accs = [CovarianceAccumulator(plan.dim) for _ in range(plan.bases)]
        else:
            accs = [IncrementalAccumulator(plan.dim, plan.kept, plan.flush_rows) for _ in range(plan.bases)]
        mine = dist.shard(seeds) if nproc > 1 else seeds  # this rank's seeds
        what = f"PCA: sampling {N} images" + (f" on {nproc} processes" if nproc > 1 else "")
        prog = Progress(len(mine) * len(runs) * steps, progress, cancel, what)
        for prompt in runs:
            if prompt is not None:
                model.set_prompt(prompt)
            for b in range(0, len(mine), batch):
                chunk = mine[b:b + batch]
                trajs = sample(model, chunk, steps=steps, eta=eta, h_space=h_space, batch_size=len(chunk),
                               keep_chain=False, progress=lambda d, t, m: prog.step(len(chunk)),
                               cancel=cancel)
                H = torch.stack([tr.hs for tr in trajs]).reshape(len(chunk), steps, D)
                del trajs
                if plan.mode == "per-step":
                    for t in range(steps):
                        accs[t].update(H[:, t].numpy())
                else:
                    accs[0].update(H.reshape(len(chunk), steps * D).numpy())
                del H
        if cancel is not None:
            cancel.check()
        k = components
        if nproc > 1:  # rank 0 combines the ranks' statistics, decomposes, and shares the result
            for a in accs:
                a.combine()
            res = dist.broadcast_object([a.result(k) for a in accs] if dist.is_main() else None)
        else:
            res = [a.result(k) for a in accs]
        del accs
        if plan.mode == "per-step":
            k = min(r[0].shape[0] for r in res)
            comps = np.stack([r[0][:k] for r in res])  # (T, K, D)
            ev = np.stack([r[1][:k] for r in res], 1)  # (K, T)
            ratio = np.stack([r[2][:k] for r in res], 1)
            comps = align_component_signs(comps)
            delta = comps * np.sqrt(np.clip(ev.T, 0, None))[:, :, None]  # (T, K, D)
            delta = torch.from_numpy(delta).float().permute(1, 0, 2).reshape(k, steps, *hs)
            values = ratio.tolist()
            mean = np.stack([r[3] for r in res]) if keep_mean else None
            labels = [f"PC {j}" for j in range(k)]
        else:
            c, ev1, r1, mu = res[0]
            k = c.shape[0]
            c = align_component_signs(c[None])[0]
            delta = torch.from_numpy(c * np.sqrt(np.clip(ev1, 0, None))[:, None]).float()
            delta = delta.reshape(k, steps, *hs)
            ev = ev1[:, None]
            ratio = r1[:, None]
            values = [[float(v)] * steps for v in r1]
            mean = mu.reshape(steps, D) if keep_mean else None
            labels = [f"PC {j} (global)" for j in range(k)]
        params = {
            "method": "pca", "mode": plan.mode, "components": int(k), "samples": N, "seeds": seed_rec,
            "steps": int(steps), "eta": eta_json(eta, steps),
            "h_space": h_space, "batch": batch, "memory_mb": float(memory_mb), "solver": plan.solver,
            "kept_components": plan.kept, "units": "sigma",
        }
        if model.conditioning:  # what the samples were made under (the directions apply under any prompt)
            params["conditioning"] = {k: v for k, v in model.conditioning.items() if k != "prompt"}
            params["prompts"] = prompts or [model.conditioning["prompt"]]
        ds = DirectionSet(delta_h=delta, timesteps=timesteps.clone().long(),
                          fingerprint=model.weights_fingerprint, h_space=h_space, method="pca",
                          labels=labels, values=values, params=params)
        notes = [f"sampled on {nproc} processes"] if nproc > 1 else []
        if int(k) > N - 1:  # N centred samples span at most N - 1 directions
            warn = (f"{N} samples give at most {N - 1} components with variance: components {N} to {int(k)} "
                    "carry none (sample more, or ask for fewer)")
            notes.append(warn)
            ds.params["warnings"] = [warn]
        return PCAResult(directions=ds, explained_variance=ev, explained_variance_ratio=ratio, plan=plan,
                         n_samples=N, seconds=time.perf_counter() - t0, mean=mean, notes=notes)
