"""Mask-contained Jacobian directions against the dense generalized eigenproblem."""
import numpy as np
import pytest
import scipy.linalg
import torch

from hspace_studio.engine.discover.local import contained_directions


@pytest.mark.parametrize("rho", [0.05, 1.0])
def test_matches_dense_generalized_eigenproblem(rho):
    rng = np.random.default_rng(0)
    M, D = 80, 24
    A = rng.standard_normal((M, D)) @ np.diag(np.linspace(2, 0.2, D))
    w = np.zeros(M)
    w[10:25] = 1.0
    w[25:30] = 0.5  # a soft edge
    At = torch.from_numpy(A)
    r = contained_directions(lambda X: X.double() @ At.T, lambda Y: Y.double() @ At, D,
                             torch.from_numpy(w), k=3, rho=rho, tol=1e-9, max_iter=500,
                             generator=torch.Generator().manual_seed(1))
    assert r.converged
    # reg is rho x the mean gain of the p random start vectors: the dense problem uses the same
    np.testing.assert_allclose(r.ratios.numpy(), _ratios(A, w, r.vectors.numpy(), r), rtol=1e-6)
    assert r.ratios[0] >= r.ratios[1] >= r.ratios[2]
    # directions maximise in/out: none of the dense problem's top vectors beats the first
    lam_reg, V_reg = _dense_with_reg(A, w, r.reg)
    np.testing.assert_allclose(r.ratios.numpy(), lam_reg[:3], rtol=1e-6)
    for j in range(3):
        v = V_reg[:, j] / np.linalg.norm(V_reg[:, j])
        assert abs(float(v @ r.vectors[:, j].numpy())) > 0.999
    np.testing.assert_allclose(r.inside.numpy(), np.linalg.norm((A * w[:, None]) @ r.vectors.numpy(), axis=0))


def _dense_with_reg(A, w, reg):
    Ai, Ao = A * w[:, None], A * (1 - w)[:, None]
    lam, V = scipy.linalg.eigh(Ai.T @ Ai, Ao.T @ Ao + reg * np.eye(A.shape[1]))
    return lam[::-1], V[:, ::-1]


def _ratios(A, w, V, r):
    Ai, Ao = (A * w[:, None]) @ V, (A * (1 - w)[:, None]) @ V
    return (Ai ** 2).sum(0) / ((Ao ** 2).sum(0) + r.reg * (V ** 2).sum(0))


def test_local_operator_is_preferred_over_a_stronger_global_one():
    """An input that changes only masked outputs wins over a 10x stronger one that changes
    everything (the masked SVD's choice): the change lands in the mask."""
    M, D = 50, 6
    A = np.zeros((M, D))
    A[:, 0] = 10.0  # global
    A[:5, 1] = 1.0  # only inside
    A[5:, 2:] = np.random.default_rng(0).standard_normal((M - 5, D - 2))
    w = np.zeros(M)
    w[:5] = 1
    At = torch.from_numpy(A)
    r = contained_directions(lambda X: X.double() @ At.T, lambda Y: Y.double() @ At, D,
                             torch.from_numpy(w), k=1, rho=0.01, tol=1e-10, max_iter=200)
    masked_top = np.zeros(D)
    masked_top[0] = 1.0  # the top right singular vector of diag(w) A
    share = lambda v: np.linalg.norm((A * w[:, None]) @ v) / np.linalg.norm(A @ v)
    assert share(masked_top) < 0.35
    assert share(r.vectors[:, 0].numpy()) > 0.75  # (reg keeps a little of the strong input)
    assert abs(float(r.vectors[1, 0])) > 0.99


def test_zero_operator_and_bad_arguments():
    D = 5
    z = contained_directions(lambda X: torch.zeros(X.shape[0], 7, dtype=torch.float64),
                             lambda Y: torch.zeros(Y.shape[0], D, dtype=torch.float64), D,
                             torch.ones(7), k=2)
    assert z.converged and torch.equal(z.ratios, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError):
        contained_directions(lambda X: X, lambda Y: Y, D, torch.ones(D), k=0)
    with pytest.raises(ValueError):
        contained_directions(lambda X: X, lambda Y: Y, D, torch.ones(D), k=1, rho=0)


# ------------------------------------------------------------------ on a tiny diffusion model

@pytest.fixture(scope="module")
def eps_model(tiny_model_8_dir):
    from hspace_studio.engine import load_model

    return load_model(str(tiny_model_8_dir), device="cpu")


def _dense_eps_jacobian(model, traj, i):
    """d eps / d h at step i through the full UNet, by autograd (no stubs)."""
    
    x, t = traj.xs[i][None], traj.timesteps[i]

    def f(h):
        with model.denoiser.hook(traj.h_space, edit=lambda _h: h):
            out = model.denoiser(x, t)
        return model.predict_eps(out, x, t).reshape(-1)

    h0 = traj.hs[i][None].clone()
    return torch.autograd.functional.jacobian(f, h0, vectorize=True).reshape(-1, h0.numel()).double().numpy()


def test_contained_directions_on_a_model_match_the_dense_problem(eps_model, tmp_path):
    from hspace_studio.engine import sample
    from hspace_studio.engine.directions import DirectionSet
    from hspace_studio.engine.discover.contained import contained_jacobian_directions
    from hspace_studio.engine.masks import prepare_mask
    from hspace_studio.engine.sampler import EditSpec, edit_batch

    model = eps_model
    traj = sample(model, [4], steps=4, eta=1.0)[0]
    mask = np.zeros(model.image_size, dtype=bool)
    mask[2:5, 1:4] = True
    res = contained_jacobian_directions(model, traj, mask, step=2, k=2, rho=0.1, tol=1e-6, max_iter=400)
    assert res.converged, res.summary()
    J = _dense_eps_jacobian(model, traj, 2)
    w = prepare_mask(mask, model)[0].expand(1, *model.sample_shape).reshape(-1).double().numpy()
    v0 = res.directions.delta_h[0, 2].reshape(-1).double().numpy()
    Ai, Ao = J * w[:, None], J * (1 - w)[:, None]
    i0, o0 = np.linalg.norm(Ai @ v0), np.linalg.norm(Ao @ v0)
    assert i0 == pytest.approx(res.inside[0], rel=1e-4) and o0 == pytest.approx(res.outside[0], rel=1e-4)
    reg = i0 ** 2 / res.ratios[0] - o0 ** 2  # the regulariser the solver used
    lam, V = scipy.linalg.eigh(Ai.T @ Ai, Ao.T @ Ao + reg * np.eye(J.shape[1]))
    np.testing.assert_allclose(res.ratios, lam[::-1][:2], rtol=1e-4)
    v = V[:, -1] / np.linalg.norm(V[:, -1])
    assert abs(v @ v0) > 0.999
    # the paper's masked direction (top singular vector of the masked J) keeps less in the mask
    top = np.linalg.svd(Ai)[2][0]
    share = lambda u: np.linalg.norm(Ai @ u) ** 2 / np.linalg.norm(J @ u) ** 2
    assert share(v0) > share(top)
    # the set is zero except at its step, edits only from that step, round-trips through a file
    ds = res.directions
    assert torch.count_nonzero(ds.delta_h[:, [0, 1, 3]]) == 0
    out = edit_batch(model, traj, [[EditSpec(ds.delta_h[0], 0.5)]], keep_pre_edit=True)
    assert out.hs.shape[1] == 2  # steps 2 and 3 recomputed, 0 and 1 reused
    ds.save(tmp_path / "c.safetensors")
    back = DirectionSet.load(tmp_path / "c.safetensors")
    assert back.params["objective"] == "contained" and torch.equal(back.delta_h, ds.delta_h)


def test_contained_cli(tmp_path, tiny_model_dir):
    from hspace_studio.cli import main

    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 3:10] = 255
    from PIL import Image

    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "c.safetensors"
    base = ["jacobian", "--model", str(tiny_model_dir), "--seed", "3", "--steps", "4", "--out", str(out)]
    assert main(base + ["--contained", "-2", "-k", "1", "--mask", str(tmp_path / "m.png")]) == 0
    from hspace_studio.engine.directions import DirectionSet

    ds = DirectionSet.load(out)
    assert ds.params["step"] == 2 and torch.count_nonzero(ds.delta_h[0, 3]) == 0
    assert main(base + ["--contained", "1"]) == 1  # no mask: a one-line error
    assert main(base + ["--contained", "9", "--mask", str(tmp_path / "m.png")]) == 1
    assert main(["edit", "--model", str(tiny_model_dir), "--seed", "3", "--steps", "4",
                 "--direction", f"{out}:0", "--scale", "2", "--out", str(tmp_path / "e.png")]) == 0
