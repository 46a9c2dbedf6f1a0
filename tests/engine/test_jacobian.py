"""Jacobian directions: block subspace iteration against a dense SVD of the explicit Jacobian."""
import numpy as np
import pytest
import torch

from hspace_studio.core.errors import Cancelled
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.discover.jacobian import (DownstreamEps, JacobianOperator,
                                                    jacobian_directions, mask_from_rle,
                                                    mask_to_rle, parse_steps_subset, prepare_mask)

STEPS = 2
TOL = 1e-6


@pytest.fixture(scope="module")
def eps_model(tiny_model_8_dir):
    """An epsilon-prediction pixel model, 8x8 (h is 32x4x4)."""
    return load_model(str(tiny_model_8_dir), device="cpu")


@pytest.fixture(scope="module")
def v_model(tiny_model_b_dir):
    """A v-prediction model with three levels and two layers per block (h is 24x4x4)."""
    m = load_model(str(tiny_model_b_dir), device="cpu")
    assert m.prediction_type == "v_prediction"
    return m


def _mask(model):
    h, w = model.image_size
    m = np.zeros((h, w), dtype=bool)
    m[h // 4: h // 2 + 2, w // 8: w // 2 + 1] = True
    return m


def _dense_jacobian(model, traj, i):
    """d eps / d h at step i through the FULL UNet (no stubs), by autograd."""
    x = traj.xs[i][None]
    t = traj.timesteps[i]
    h0 = traj.hs[i][None].clone()

    def f(h):
        with model.denoiser.hook(traj.h_space, edit=lambda _h: h):
            out = model.denoiser(x, t)
        return model.predict_eps(out, x, t).reshape(-1)

    return torch.autograd.functional.jacobian(f, h0, vectorize=True).reshape(-1, h0.numel()).double()


@pytest.mark.parametrize("which", ["eps", "v"])
def test_block_method_matches_dense_svd(which, eps_model, v_model):
    model = eps_model if which == "eps" else v_model
    traj = sample(model, [5], steps=STEPS, eta=1.0)[0]
    mask = _mask(model)
    weights, _ = prepare_mask(mask, model)
    plain = jacobian_directions(model, traj, k=3, tol=TOL, max_iter=400, oversample=6)
    masked = jacobian_directions(model, traj, k=3, mask=mask, tol=TOL, max_iter=400, oversample=6)
    assert all(plain.converged) and all(masked.converged)
    w_rows = weights.expand(1, *model.sample_shape).reshape(-1).double()
    for i in range(STEPS):
        J = _dense_jacobian(model, traj, i)
        for res, Jm in ((plain, J), (masked, J * w_rows[:, None])):
            _, S, Vh = torch.linalg.svd(Jm, full_matrices=False)
            assert S[2] > 1.0001 * S[3], "test needs a gap after the third singular value"
            sv = res.singular_values[i].double()
            assert torch.allclose(sv, S[:3], rtol=1e-3, atol=0), (sv, S[:4])
            vecs = res.directions.delta_h[:, i].reshape(3, -1).double()
            cos = (vecs * Vh[:3]).sum(1).abs()
            assert (cos > 0.999).all(), cos
            assert torch.allclose(vecs.norm(dim=1), torch.ones(3, dtype=torch.float64), atol=1e-5)
            assert res.directions.values[0][i] == pytest.approx(float(sv[0]))


def test_empty_mask_gives_zero_singular_values(eps_model):
    traj = sample(eps_model, [1], steps=STEPS, eta=1.0)[0]
    empty = np.zeros(eps_model.image_size, dtype=np.uint8)
    res = jacobian_directions(eps_model, traj, k=3, mask=empty)
    assert torch.equal(res.singular_values, torch.zeros(STEPS, 3))
    assert torch.isfinite(res.directions.delta_h).all()
    assert all(res.converged) and res.residuals == [0.0] * STEPS
    assert res.directions.params["mask"]["coverage"] == 0.0


def test_signs_aligned_and_recipe(eps_model, tmp_path):
    traj = sample(eps_model, [2], steps=3, eta=0.5)[0]
    res = jacobian_directions(eps_model, traj, k=2, steps_subset="0,2", tol=1e-4)
    ds = res.directions
    assert ds.delta_h.shape[:2] == (2, 2)
    assert torch.equal(ds.timesteps, traj.timesteps[[0, 2]])
    for k in range(2):
        v = ds.delta_h[k].reshape(2, -1)
        assert float(v[0] @ v[1]) >= 0
        j = int(v[0].abs().argmax())
        assert v[0, j] > 0
    p = ds.params
    assert p["method"] == "jacobian" and p["steps_subset"] == [0, 2] and p["source"]["seed"] == 2
    assert len(p["convergence"]["iterations"]) == 2 and p["mask"] is None
    ds.save(tmp_path / "j.safetensors")
    again = type(ds).load(tmp_path / "j.safetensors")
    assert again.method == "jacobian" and again.values == ds.values
    # one step's vector at every step (masked edits): mapped onto the full trajectory
    full = again.for_timesteps(traj.timesteps)
    d = full.steps_delta(1, at_step=0)
    assert d.shape == traj.hs.shape and torch.equal(d[2], full.delta_h[1, 0])


@pytest.mark.parametrize("point", ["before", "middle", "after"])
def test_downstream_eps_matches_full_unet_and_restores(point, eps_model):
    model = eps_model
    traj = sample(model, [3], steps=2, eta=1.0, h_space=point)[0]
    x, t = traj.xs[1][None], traj.timesteps[1]
    with torch.no_grad():
        ref = model.predict_eps(model.denoiser(x, t), x, t)
    h0 = traj.hs[1][None]
    v = torch.randn_like(h0)

    def full(h):
        with model.denoiser.hook(point, edit=lambda _h: h):
            out = model.denoiser(x, t)
        return model.predict_eps(out, x, t).reshape(1, -1)

    J = torch.autograd.functional.jacobian(full, h0, vectorize=True).reshape(-1, h0.numel())
    jv_ref = (J @ v.reshape(-1))[None]
    with DownstreamEps(model, x, t, point) as fn:
        assert torch.allclose(fn.h0, h0, atol=1e-6)
        with torch.no_grad():
            assert torch.allclose(fn(fn.h0), ref.reshape(1, -1), atol=1e-5)
        op = JacobianOperator(fn, fn.h0)
        jv = op.jmv(v.reshape(1, -1))
        assert torch.allclose(jv, jv_ref, atol=1e-5, rtol=1e-4)
        w = torch.randn(2, jv.shape[1])
        assert torch.allclose(op.jtmv(w), w @ J, atol=1e-5, rtol=1e-4)
    # the model is as it was: no stubs, no hooks left
    assert not any("forward" in m.__dict__ for m in model.net.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.net.modules())
    with torch.no_grad():
        assert torch.equal(model.predict_eps(model.denoiser(x, t), x, t), ref)


def test_masks_png_rle_and_latent_resize(latent_model_dir, tmp_path):
    from PIL import Image

    lm = load_model(str(latent_model_dir), device="cpu")
    H, W = lm.image_size
    m = np.zeros((H, W), dtype=bool)
    m[2:9, 3:12] = True
    Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    w, info = prepare_mask(str(tmp_path / "mask.png"), lm)
    assert w.shape == (1, 1, *lm.sample_shape[1:]) and w.shape[-1] < W
    assert 0 < float(w.sum()) and float(w.max()) <= 1
    assert info["path"].endswith("mask.png") and len(info["sha256"]) == 64
    assert np.array_equal(mask_from_rle(info["rle"], info["shape"]), m)
    w2, info2 = prepare_mask(m, lm)  # a brush array gives the same weights and hash
    assert torch.equal(w, w2) and info2["sha256"] == info["sha256"]
    assert mask_to_rle(np.ones((2, 2), bool)) == [0, 4]
    with pytest.raises(ValueError):
        prepare_mask(np.full((H, W), 2.0), lm)
    with pytest.raises(ValueError):
        mask_from_rle([1, 2], (2, 2))


def test_steps_subset_parsing_and_cancel(eps_model):
    assert parse_steps_subset(None, 3) == [0, 1, 2]
    assert parse_steps_subset(["0,2", "1-1"], 5) == [0, 1, 2]
    assert parse_steps_subset("3-1", 5) == [1, 2, 3]
    for bad in ("7", "a", "1:2"):
        with pytest.raises(ValueError):
            parse_steps_subset(bad, 5)
    traj = sample(eps_model, [4], steps=2, eta=1.0)[0]
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        jacobian_directions(eps_model, traj, k=2, cancel=tok)
