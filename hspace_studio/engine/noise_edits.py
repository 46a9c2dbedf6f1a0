"""Directions in noise space: x_T and the per-step variance noise z_t, as the reference code's
``apply_direction(..., space="noise")`` edits them: decode with ``x_T + s * d_xT`` and
``z_t + s * d_z[t]`` (:class:`~.sampler.NoiseEdit`).

File format: a :class:`~.directions.DirectionSet` file whose ``h_space`` is ``"noise"`` and
whose ``params`` hold ``"space": "noise"``. ``delta_h`` is (K, 1 + T, C, H, W) in the shape
of x_t: slot 0 is the change of x_T, slots 1..T the change of z_t at each step;
``timesteps`` (1 + T,) is ``-1`` (the x_T slot) followed by the T sampling timesteps.
Because ``h_space`` is ``"noise"``, every place that checks a direction file against an
h-space point (``DirectionSet.check_model``) refuses it, and :func:`load_noise_directions`
refuses h-space files.

The noise-space mean difference (:func:`noise_mean_difference`) is the supervised
direction of noise space: mean x_T (and z_t) of the positive examples minus that of the
negative ones; :func:`supervised_noise_directions` takes the examples of a supervised
annotation index without running the network (a seed's noise is drawn, not computed).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from ..core.errors import FileFormatError, ModelMismatchError
from .directions import DirectionSet
from .model import DiffusionModel
from .sampler import NoiseEdit, noise_levels, seed_noise, timesteps_for
from .trajectory import Trajectory

NOISE_SPACE = "noise"
X_T_SLOT = -1  # the timesteps entry of the x_T slot


def is_noise_set(ds: DirectionSet) -> bool:
    """Whether a direction set holds noise-space directions."""
    return ds.h_space == NOISE_SPACE or (ds.params or {}).get("space") == NOISE_SPACE


def noise_direction_set(d_xT: torch.Tensor, d_zs: Optional[torch.Tensor], timesteps: torch.Tensor,
                        fingerprint: str, labels: Sequence[str] = (), method: str = "supervised",
                        values=None, params: Optional[dict] = None) -> DirectionSet:
    """A noise-space DirectionSet from changes of x_T (K, C, H, W) and of z (K, T, C, H, W)
    on ``timesteps`` (T,); ``d_zs`` None means zero (x_T only)."""
    if d_xT.dim() != 4:
        raise ValueError(f"d_xT must be (K, C, H, W), got {tuple(d_xT.shape)}")
    T = int(timesteps.shape[0])
    if d_zs is None:
        d_zs = torch.zeros(d_xT.shape[0], T, *d_xT.shape[1:])
    if tuple(d_zs.shape) != (d_xT.shape[0], T, *d_xT.shape[1:]):
        raise ValueError(f"d_zs must be (K, T, C, H, W) = {(d_xT.shape[0], T, *d_xT.shape[1:])}, "
                         f"got {tuple(d_zs.shape)}")
    delta = torch.cat([d_xT[:, None].float(), d_zs.float()], 1)
    ts = torch.cat([torch.tensor([X_T_SLOT]), timesteps.long().cpu()])
    return DirectionSet(delta_h=delta, timesteps=ts, fingerprint=fingerprint, h_space=NOISE_SPACE,
                        method=method, labels=list(labels), values=values,
                        params={**(params or {}), "space": NOISE_SPACE,
                                "layout": "delta_h slot 0: x_T; slots 1..T: z_t of each step"})


def split_noise_set(ds: DirectionSet, name="direction file") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d_xT (K, C, H, W), d_zs (K, T, C, H, W), timesteps (T,)) of a noise-space set;
    an h-space set is refused."""
    if not is_noise_set(ds):
        raise ModelMismatchError(f"{name} holds h-space directions (at '{ds.h_space}'), not "
                                 "noise-space ones: use it as an h-space direction (--direction)")
    if ds.delta_h.shape[1] < 1 or int(ds.timesteps[0]) != X_T_SLOT:
        raise FileFormatError(f"{name}: a noise-space direction file must start with the x_T slot "
                              f"(timesteps[0] = {X_T_SLOT})")
    return ds.delta_h[:, 0], ds.delta_h[:, 1:], ds.timesteps[1:]


def load_noise_directions(path) -> DirectionSet:
    """Read a noise-space direction file (refusing h-space files with a clear error)."""
    ds = DirectionSet.load(path)
    split_noise_set(ds, str(path))
    return ds


def check_noise_set(ds: DirectionSet, fingerprint: str, sample_shape, name="direction file") -> None:
    """Raise unless ``ds`` is a noise-space set for the model ``fingerprint`` (its weights'
    fingerprint, as for h-space directions) and samples of ``sample_shape`` (C, H, W)."""
    split_noise_set(ds, name)
    ds.check_model(fingerprint, NOISE_SPACE, tuple(sample_shape), name)


def noise_edit(ds: DirectionSet, k: int, scale: float, traj: Trajectory, name="direction file") -> NoiseEdit:
    """The :class:`NoiseEdit` of direction ``k`` of a noise-space set on ``traj``.

    Its per-step part is used only on the timesteps it was found on: on other
    timesteps a set whose per-step part is not zero is refused (x_T-only sets fit any
    step count)."""
    d_xT, d_zs, ts = split_noise_set(ds, name)
    if not 0 <= k < len(ds):
        raise IndexError(f"direction index {k} out of range (the file has {len(ds)})")
    dz = d_zs[k]
    if not torch.equal(ts.long().cpu(), traj.timesteps.long().cpu()):
        if float(dz.abs().max()) > 0:
            raise ModelMismatchError(
                f"{name} changes the per-step noise of {ts.shape[0]} steps at timesteps "
                f"{ts.tolist()[:4]}...; the image has {traj.steps} steps at {traj.timesteps.tolist()[:4]}... "
                "(use the same --steps and --timesteps)")
        dz = None
    return NoiseEdit(d_xT=d_xT[k], d_zs=dz, scale=float(scale))


def noise_mean_difference(positive: Sequence[Trajectory],
                          negative: Sequence[Trajectory]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(d_xT (C, H, W), d_zs (T, C, H, W)): mean x_T and z of ``positive`` minus those of
    ``negative`` (float64 sums), all on the same timesteps."""
    if not positive or not negative:
        raise ValueError("the noise-space mean difference needs positive and negative examples")
    ts = positive[0].timesteps
    for t in list(positive) + list(negative):
        if not torch.equal(t.timesteps, ts) or t.x_T.shape != positive[0].x_T.shape:
            raise ValueError("all examples must have the same timesteps and shape")

    def mean(trajs, key):
        acc = None
        for t in trajs:
            v = getattr(t, key).double()
            acc = v if acc is None else acc + v
        return acc / len(trajs)

    return ((mean(positive, "x_T") - mean(negative, "x_T")).float(),
            (mean(positive, "zs") - mean(negative, "zs")).float())


def seed_trajectory_noise(model: DiffusionModel, seed: int, steps: int, eta) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x_T, zs) that :func:`~.sampler.sample` gives ``seed`` (zs zero where unused),
    without running the network."""
    from .etas import etas_tensor

    timesteps = timesteps_for(model, steps)
    etas = etas_tensor(eta, steps)
    used = (etas > 0) & (noise_levels(model, timesteps) > 0)
    x_T, zs = seed_noise(seed, model.sample_shape, steps)
    return x_T, zs * used.view(-1, 1, 1, 1)


def supervised_noise_directions(model: DiffusionModel, index, attributes: Union[str, Sequence[str]],
                                examples: int = 100) -> DirectionSet:
    """One noise-space direction per attribute of a supervised annotation index
    (:class:`~.discover.supervised.AnnotationIndex`): mean x_T and z of the ``examples``
    top-scored seeds minus those of the bottom-scored ones (the same examples as
    :func:`~.discover.supervised.supervised_directions` picks)."""
    from .discover.supervised import index_targets, select_examples

    rec = index.recipe
    targets = index_targets(index, model, attributes)
    steps, eta = int(rec["steps"]), rec["eta"]
    dxs, dzs, labels, per_dir = [], [], [], []
    for a in targets:
        ex = select_examples(index, a, examples)

        def mean(seeds):
            xs = zs = None
            for s in seeds:
                x_T, z = seed_trajectory_noise(model, s, steps, eta)
                xs = x_T.double() if xs is None else xs + x_T.double()
                zs = z.double() if zs is None else zs + z.double()
            return xs / len(seeds), zs / len(seeds)

        px, pz = mean(ex.positive)
        nx, nz = mean(ex.negative)
        dxs.append((px - nx).float())
        dzs.append((pz - nz).float())
        labels.append(f"{ex.attribute} (noise)")
        per_dir.append({"attribute": ex.attribute, "positive_seeds": ex.positive,
                        "negative_seeds": ex.negative, "score_gap": ex.gap})
    params = {"method": "supervised", "source": "classifier-index", "examples": int(examples),
              "steps": steps, "eta": eta, "classifier": rec["classifier"], "index": index.path,
              "directions": per_dir}
    return noise_direction_set(torch.stack(dxs), torch.stack(dzs), timesteps_for(model, steps),
                               model.weights_fingerprint, labels=labels, params=params)


def noise_directions_from_trajectories(positive: Sequence[Trajectory], negative: Sequence[Trajectory],
                                       fingerprint: str, label: str = "attribute") -> DirectionSet:
    """A one-direction noise-space set: the mean difference of two groups of trajectories
    (e.g. inverted images with and without an attribute)."""
    d_xT, d_zs = noise_mean_difference(positive, negative)
    return noise_direction_set(d_xT[None], d_zs[None], positive[0].timesteps, fingerprint,
                               labels=[label], params={"method": "supervised", "source": "trajectories",
                                                       "positive": len(positive),
                                                       "negative": len(negative)})
