"""Direction and trajectory files; disentangling."""
import pytest
import torch

from hspace_studio.core.errors import FileFormatError, ModelMismatchError
from hspace_studio.engine import DirectionSet, Trajectory, disentangle, sample


def _dirs(model, traj, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DirectionSet(delta_h=torch.randn((K, *traj.hs.shape), generator=g), timesteps=traj.timesteps,
                        fingerprint=model.fingerprint, h_space="after", method="pca",
                        labels=[f"PC {i}" for i in range(K)], values=[[0.5] * traj.steps] * K,
                        params={"samples": 10})


@pytest.fixture
def traj(tiny_model):
    return sample(tiny_model, [1], steps=5)[0]


def test_direction_file_round_trip(tiny_model, traj, tmp_path):
    d = _dirs(tiny_model, traj)
    d.save(tmp_path / "d.safetensors")
    e = DirectionSet.load(tmp_path / "d.safetensors")
    assert torch.equal(e.delta_h, d.delta_h) and torch.equal(e.timesteps, d.timesteps)
    assert e.labels == d.labels and e.values == d.values and e.params == d.params
    assert e.method == "pca" and e.fingerprint == tiny_model.fingerprint
    e.check_model(tiny_model.fingerprint, "after", tuple(traj.hs.shape[1:]))


def test_trajectory_file_round_trip(tiny_model, traj, tmp_path):
    traj.save(tmp_path / "t.safetensors")
    t = Trajectory.load(tmp_path / "t.safetensors")
    for k in ("x_T", "zs", "etas", "timesteps", "hs", "x_0"):
        assert torch.equal(getattr(t, k), getattr(traj, k).to(getattr(t, k).dtype)), k
    assert t.origin == traj.origin and t.fingerprint == traj.fingerprint


def test_wrong_model_or_point_is_a_clear_error(tiny_model, traj, tmp_path):
    d = _dirs(tiny_model, traj)
    with pytest.raises(ModelMismatchError, match="made for model"):
        d.check_model("0123456789abcdef", "after")
    with pytest.raises(ModelMismatchError, match="h-space point"):
        d.check_model(tiny_model.fingerprint, "before")
    with pytest.raises(ModelMismatchError, match="shape"):
        d.check_model(tiny_model.fingerprint, "after", (1, 2, 3))
    with pytest.raises(ModelMismatchError):
        traj.check_model("0123456789abcdef", "after")


@pytest.mark.parametrize("kind", ["direction", "trajectory"])
def test_missing_truncated_and_wrong_files(tiny_model, traj, tmp_path, kind):
    load = DirectionSet.load if kind == "direction" else Trajectory.load
    with pytest.raises(FileFormatError, match="not found"):
        load(tmp_path / "missing.safetensors")
    path = tmp_path / "x.safetensors"
    (_dirs(tiny_model, traj) if kind == "direction" else traj).save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        load(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(FileFormatError):
        load(tmp_path / "junk.safetensors")
    other = tmp_path / "other.safetensors"
    (traj if kind == "direction" else _dirs(tiny_model, traj)).save(other)
    with pytest.raises(FileFormatError):
        load(other)


def test_nan_direction_is_rejected(tiny_model, traj, tmp_path):
    d = _dirs(tiny_model, traj)
    d.delta_h[0, 0, 0, 0, 0] = float("nan")
    d.save(tmp_path / "nan.safetensors")
    with pytest.raises(FileFormatError, match="NaN"):
        DirectionSet.load(tmp_path / "nan.safetensors")


def test_other_step_count_maps_by_nearest_timestep(tiny_model, tmp_path):
    t10 = sample(tiny_model, [1], steps=10)[0]
    t5 = sample(tiny_model, [1], steps=5)[0]
    d = _dirs(tiny_model, t10)
    m = d.for_timesteps(t5.timesteps)
    assert m.delta_h.shape[1] == 5 and torch.equal(m.timesteps, t5.timesteps)
    for j, ts in enumerate(t5.timesteps.tolist()):
        i = (t10.timesteps - ts).abs().argmin()
        assert torch.equal(m.delta_h[:, j], d.delta_h[:, i])
    assert len(m.values[0]) == 5


def test_steps_delta_at_step(tiny_model, traj):
    d = _dirs(tiny_model, traj)
    a = d.steps_delta(1, at_step=2)
    assert all(torch.equal(a[i], d.delta_h[1, 2]) for i in range(traj.steps))
    with pytest.raises(IndexError):
        d.steps_delta(7)


def test_disentangled_direction_is_orthogonal_to_each_condition():
    g = torch.Generator().manual_seed(0)
    d = torch.randn((5, 8, 4, 4), generator=g)
    conds = [torch.randn((5, 8, 4, 4), generator=g) for _ in range(4)]
    out = disentangle(d, conds)
    for c in conds:
        cos = torch.nn.functional.cosine_similarity(out.flatten(), c.flatten(), dim=0)
        assert abs(cos.item()) < 1e-5
    # the part already orthogonal is kept: projecting again changes nothing
    assert torch.allclose(disentangle(out, conds), out, atol=1e-5)


def test_disentangle_is_stable_for_nearly_collinear_conditions():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(4096, generator=g)
    a = torch.randn(4096, generator=g)
    b = a + 1e-6 * torch.randn(4096, generator=g)  # almost the same direction
    c = a.clone()  # exactly the same
    out = disentangle(d, [a, b, c])
    assert torch.isfinite(out).all()
    for v in (a, b, c):
        cos = torch.nn.functional.cosine_similarity(out, v, dim=0)
        assert abs(cos.item()) < 1e-5
    assert out.norm() > 0.9 * d.norm() * 0.5


def test_disentangle_per_step():
    g = torch.Generator().manual_seed(2)
    d = torch.randn((3, 16), generator=g)
    c = torch.randn((3, 16), generator=g)
    out = disentangle(d, [c], per_step=True)
    for i in range(3):
        assert abs(torch.dot(out[i], c[i]).item()) < 1e-5
