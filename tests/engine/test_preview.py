"""First-order slider previews (engine/preview.py): exact at the linearisation point,
the derivative of the exact edit, linear in several directions, no work before the window,
and through a latent model's decoder."""
import numpy as np
import pytest
import torch

from hspace_studio.core.errors import Cancelled
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.preview import (LinearPreview, NodePreview, decoder_jvp, fd_step,
                                         pixels_from_arrays)
from hspace_studio.engine.sampler import EditSpec, Region, edit

STEPS = 6


def _directions(traj, n, seed=0, size=0.1):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn((n, *traj.hs.shape), generator=g)
    return d * (traj.hs.flatten(1).norm(dim=1).mean() / d.flatten(2).norm(dim=2).mean() * size)


@pytest.fixture(scope="module")
def setup(tiny_model):
    traj = sample(tiny_model, [3], steps=STEPS, eta=1.0)[0]
    return tiny_model, traj, _directions(traj, 2)


def _image(model, traj, specs, region=None):
    return model.to_pixels(edit(model, traj, specs, region=region)[None])[0]


def _central(model, traj, specs, k, h, region=None):
    def moved(sign):
        s = list(specs)
        s[k] = EditSpec(specs[k].delta, specs[k].scale + sign * h, specs[k].window)
        return _image(model, traj, s, region)

    return (moved(1) - moved(-1)) / (2 * h)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_exact_at_the_linearisation_point_and_derivative_matches_finite_differences(setup, method):
    model, traj, D = setup
    specs = [EditSpec(D[0], 0.7, (0, 600)), EditSpec(D[1], -0.4)]
    lp = LinearPreview.prepare(model, traj, specs, method=method)
    exact = _image(model, traj, specs)
    assert (lp.image([0.7, -0.4]) - exact).abs().max() < 1e-4
    assert (lp.x_0([0.7, -0.4]) - edit(model, traj, specs)).abs().max() < 1e-4
    for k in range(2):
        fd = _central(model, traj, specs, k, 0.05)
        assert fd.abs().max() > 1e-3  # the direction does change the image
        assert _rel(lp.dimage[k], fd) < 0.05, (k, _rel(lp.dimage[k], fd))
    # the first-order image moves off the exact one by the derivative
    moved = lp.image([0.7 + 0.05, -0.4])
    assert torch.allclose(moved - lp.image0, 0.05 * lp.dimage[0], atol=1e-5)


def test_the_two_methods_agree_and_a_wrong_derivative_would_be_seen(setup):
    model, traj, D = setup
    specs = [EditSpec(D[0], 0.5)]
    a = LinearPreview.prepare(model, traj, specs, method="jvp")
    b = LinearPreview.prepare(model, traj, specs, method="fd")
    assert _rel(b.dimage[0], a.dimage[0]) < 0.02
    one_sided = LinearPreview.prepare(model, traj, specs, method="fd1")
    assert _rel(one_sided.dimage[0], a.dimage[0]) < 0.05
    assert torch.allclose(one_sided.image0, b.image0, atol=1e-5)
    # the test can fail: the derivative at another point is measurably different
    c = LinearPreview.prepare(model, traj, [EditSpec(D[0], 3.0)], method="jvp")
    assert _rel(c.dimage[0], a.dimage[0]) > 5 * _rel(b.dimage[0], a.dimage[0])


def test_composition_over_two_directions_is_the_sum(setup):
    model, traj, D = setup
    specs = [EditSpec(D[0], 0.0), EditSpec(D[1], 0.0)]
    both = LinearPreview.prepare(model, traj, specs, method="jvp")
    one = [LinearPreview.prepare(model, traj, [s], method="jvp") for s in specs]
    for k in range(2):
        assert torch.allclose(both.dimage[k], one[k].dimage[0], atol=1e-5)
    img = both.image([0.3, -0.2])
    want = one[0].image([0.3]) + one[1].image([-0.2]) - both.image0
    assert torch.allclose(img, want, atol=1e-5)
    # and it is a first-order approximation of the exact joint edit
    exact = _image(model, traj, [EditSpec(D[0], 0.03), EditSpec(D[1], -0.02)])
    lin = both.image([0.03, -0.02])
    assert _rel(lin - both.image0, exact - both.image0) < 0.05


def test_vary_a_subset_and_refuse_a_moved_fixed_direction(setup):
    model, traj, D = setup
    specs = [EditSpec(D[0], 0.5), EditSpec(D[1], 1.0)]
    lp = LinearPreview.prepare(model, traj, specs, vary=[1], method="fd")
    assert lp.dimage.shape[0] == 1
    assert (lp.image([0.5, 1.0]) - _image(model, traj, specs)).abs().max() < 1e-4
    assert torch.equal(lp.image([1.2]), lp.image([0.5, 1.2]))
    with pytest.raises(ValueError):
        lp.image([0.6, 1.0])
    assert lp.fits([EditSpec(D[0], 0.5), EditSpec(D[1], 7.0)])
    assert not lp.fits([EditSpec(D[0], 0.6), EditSpec(D[1], 1.0)])
    assert not lp.fits([EditSpec(D[1], 0.5), EditSpec(D[1], 1.0)])


def test_steps_before_the_window_are_not_recomputed(setup):
    model, traj, D = setup
    ts = [int(t) for t in traj.timesteps]
    window = (0, ts[3])  # steps 3, 4, 5 only
    calls = []
    handle = model.net.register_forward_hook(lambda mod, args, out: calls.append(int(args[1])))
    try:
        for method in ("jvp", "fd"):
            calls.clear()
            lp = LinearPreview.prepare(model, traj, [EditSpec(D[0], 0.0, window)], method=method)
            assert lp.start == 3
            assert sorted(set(calls)) == sorted(ts[3:]), (method, calls)
            assert len(calls) == 3  # one (batched or vectorised) call per recomputed step
    finally:
        handle.remove()
    # and the derivative is still right: zero where the window starts late enough
    lp_exact = _central(model, traj, [EditSpec(D[0], 0.0, window)], 0, 0.2)
    assert _rel(lp.dimage[0], lp_exact) < 0.05


def test_a_region_keeps_the_derivative_inside(setup, tiny_model):
    model, traj, D = setup
    w = torch.zeros(1, 1, 16, 16)
    w[..., :8, :] = 1
    region = Region(w, free_steps=0)
    specs = [EditSpec(D[0], 0.5)]
    lp = LinearPreview.prepare(model, traj, specs, region=region, method="jvp")
    assert (lp.image([0.5]) - _image(model, traj, specs, region)).abs().max() < 1e-4
    assert lp.dimage[0][..., 8:, :].abs().max() == 0
    assert _rel(lp.dimage[0], _central(model, traj, specs, 0, 0.05, region)) < 0.05


def test_cancel_and_bad_arguments(setup):
    model, traj, D = setup
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        LinearPreview.prepare(model, traj, [EditSpec(D[0], 0.5)], cancel=tok)
    with pytest.raises(ValueError):
        LinearPreview.prepare(model, traj, [EditSpec(D[0][:2], 0.5)])
    with pytest.raises(ValueError):
        LinearPreview.prepare(model, traj, [EditSpec(D[0], 0.5)], method="nope")
    lp = LinearPreview.prepare(model, traj, [EditSpec(torch.zeros_like(D[0]), 1.0)])
    assert torch.equal(lp.image([5.0]), model.to_pixels(traj.x_0[None])[0])
    lp = LinearPreview.prepare(model, traj, [EditSpec(D[0], 0.5)], method="fd")
    px = lp.pixels([0.9])
    assert px.shape == (16, 16, 3) and px.dtype.name == "uint8"
    # the numpy path (for a thread without torch) gives the same pixels, up to rounding ties
    img0, dimg = lp.arrays()
    diff = np.abs(pixels_from_arrays(img0, dimg, [0.4]).astype(int) - px.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert np.array_equal(pixels_from_arrays(img0, dimg, [0.0]), lp.pixels([0.5]))


# ---------------------------------------------------------------- latent models

@pytest.fixture(scope="module")
def kl_model(tmp_path_factory):
    """A latent model whose autoencoder is an AutoencoderKL (a smooth decoder)."""
    from diffusers import AutoencoderKL, DDIMScheduler

    from tests.tiny_models import tiny_unet

    folder = tmp_path_factory.mktemp("tiny_kl")
    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  latent_channels=4, norm_num_groups=4, sample_size=16).save_pretrained(folder / "vae")
    tiny_unet("a", sample_size=8, in_channels=4).save_pretrained(folder / "unet")
    DDIMScheduler(num_train_timesteps=1000, clip_sample=False).save_pretrained(folder / "scheduler")
    return load_model(str(folder), device="cpu")


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_latent_model_derivative_goes_through_the_decoder(kl_model, method):
    model = kl_model
    traj = sample(model, [1], steps=4, eta=1.0)[0]
    D = _directions(traj, 1)
    specs = [EditSpec(D[0], 0.3)]
    lp = LinearPreview.prepare(model, traj, specs, method=method)
    assert lp.image0.shape == (3, 16, 16) and lp.dx0.shape == (1, 4, 8, 8)
    assert (lp.image([0.3]) - _image(model, traj, specs)).abs().max() < 1e-4
    fd = _central(model, traj, specs, 0, 0.05)
    assert _rel(lp.dimage[0], fd) < 0.05
    # not just the latent derivative put through some other map: the decoder's Jacobian
    assert _rel(lp.dimage[0], torch.nn.functional.interpolate(lp.dx0[:, :3], scale_factor=2)[0]) > 0.5


def test_vq_model_uses_the_straight_through_derivative(latent_model_dir):
    model = load_model(str(latent_model_dir), device="cpu")
    traj = sample(model, [1], steps=3, eta=1.0)[0]
    D = _directions(traj, 1)
    specs = [EditSpec(D[0], 0.3)]
    lp = LinearPreview.prepare(model, traj, specs, method="fd")
    assert (lp.image([0.3]) - _image(model, traj, specs)).abs().max() < 1e-4
    # the derivative is the unquantized decoder's at the quantized latent, along d x_0
    vae = model.vae
    sf = vae.config.scaling_factor
    with torch.no_grad():
        zq = vae.quantize(lp.x0[None] / sf)[0]

        def dec(z):
            return vae.decode(z, force_not_quantize=True).sample

        h = 1e-3
        fd = (dec(zq + h * lp.dx0[:1] / sf) - dec(zq - h * lp.dx0[:1] / sf))[0] / (2 * h)
    assert lp.dimage[0].abs().max() > 0
    assert _rel(lp.dimage[0], fd) < 0.02
    img, d = decoder_jvp(model, lp.x0, lp.dx0)
    assert torch.equal(img, lp.image0)


def test_fd_step_scales_with_the_direction(setup):
    _, traj, D = setup
    a = fd_step(traj, EditSpec(D[0], 1.0))
    b = fd_step(traj, EditSpec(10 * D[0], 1.0))
    assert b == pytest.approx(a / 10, rel=1e-5)


def test_node_preview_is_exact_at_nodes_and_blends_between(setup):
    model, traj, D = setup
    other = EditSpec(D[1], 0.3)
    nodes = [-1.0, 0.0, 1.0]
    npv = NodePreview.prepare(model, traj, EditSpec(D[0], 0.0), nodes, others=[other])
    for s in nodes:
        assert (npv.image(s) - _image(model, traj, [EditSpec(D[0], s), other])).abs().max() < 1e-4
    mid = npv.image(0.25)
    assert torch.allclose(mid, 0.75 * npv.images[1] + 0.25 * npv.images[2], atol=1e-6)
    assert torch.equal(npv.image(-5.0), npv.images[0]) and torch.equal(npv.image(9.0), npv.images[2])
    with pytest.raises(ValueError):
        NodePreview.from_images([0.0, 0.0], npv.images[:2])
