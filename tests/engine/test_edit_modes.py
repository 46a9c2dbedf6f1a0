"""The reference code's other edits (issue 33, point 3): asymmetric reverse process (Asyrp),
noise-space edits, interpolation between two images, eta schedules — each against a
hand-written implementation of its formula on a tiny model, and through the CLI.

The hand-written chain below loops over the steps calling ``model.net`` with an h-space
hook and writes the DDIM update out (Song et al., eq. 12): it shares no code with the
engine's sampler. The tiny untrained models give x_0 of magnitude ~50, so chains are
compared to 1e-5 relative to the largest value (float32 batch-size effects are ~1e-6).
"""
import math

import pytest
import torch

from hspace_studio.cli import main
from hspace_studio.core.errors import ModelMismatchError
from hspace_studio.engine import DirectionSet, EditSpec, edit, edit_batch, load_model, sample
from hspace_studio.engine.etas import eta_schedule, etas_tensor
from hspace_studio.engine.sampler import NoiseEdit, run_chain
from tests.tiny_models import save_direction_files

STEPS = 5


def _close(a, b, tol=1e-5):
    scale = max(1.0, float(b.abs().max()))
    return float((a.float().cpu() - b.float().cpu()).abs().max()) <= tol * scale


def _differs(a, b):
    """Clearly apart: ten times the tolerance of :func:`_close`."""
    return not _close(a, b, 1e-4)


def reference_chain(model, x_T, zs, etas, timesteps, h_space, delta=None, asym=None):
    """x_0 (C, H, W) of DDIM written out step by step. ``delta`` (T, C', H', W') is added to h
    for the whole step; ``asym`` (T, ...) only for the predicted x_0 (Asyrp): the noise
    direction term is the network's output without it."""
    sched = model.scheduler
    sched.set_timesteps(len(timesteps))
    assert torch.equal(sched.timesteps, timesteps)
    cfg = sched.config
    stride = cfg.num_train_timesteps // len(timesteps)
    x = x_T[None].float().clone()

    def net(i, d):
        add = None if d is None else (lambda h: h + d[i][None].to(h.dtype))
        with torch.no_grad(), model.denoiser.hook(h_space, edit=add):
            return model.denoiser(x, sched.timesteps[i]).float()

    for i, t in enumerate(timesteps.tolist()):
        out_plain = net(i, delta)
        both = None if asym is None else (asym if delta is None else delta + asym)
        out_edit = out_plain if asym is None else net(i, both)
        ab_t = sched.alphas_cumprod[t]
        prev = t - stride
        ab_prev = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
        a, s = ab_t.sqrt(), (1 - ab_t).sqrt()
        if cfg.prediction_type == "epsilon":
            x0, eps = (x - s * out_edit) / a, out_plain
        elif cfg.prediction_type == "v_prediction":
            x0, eps = a * x - s * out_edit, a * out_plain + s * x
        else:  # sample
            x0, eps = out_edit, (x - a * out_plain) / s
        if cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        var = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        sigma = float(etas[i]) * var.sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * zs[i][None]
    return x[0]


@pytest.fixture(scope="module")
def sample_model_dir(tmp_path_factory):
    from tests.tiny_models import save_pixel_model

    return save_pixel_model(tmp_path_factory.mktemp("tiny_x0"), "a", prediction_type="sample")


@pytest.fixture(scope="module")
def models(tiny_model, tiny_model_b_dir, sample_model_dir, latent_model_dir):
    return {"epsilon": tiny_model, "v_prediction": load_model(str(tiny_model_b_dir), device="cpu"),
            "sample": load_model(str(sample_model_dir), device="cpu"),
            "latent": load_model(str(latent_model_dir), device="cpu")}


# ---------------------------------------------------------------------------- Asyrp

def test_asymmetric_step_with_equal_outputs_is_the_ddim_step():
    from diffusers import DDIMScheduler

    from hspace_studio.engine.asyrp import ddim_step_asymmetric
    from hspace_studio.engine.ddim import ddim_step

    g = torch.Generator().manual_seed(0)
    x, out, other, z = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(4))
    for pred in ("epsilon", "v_prediction", "sample"):
        s = DDIMScheduler(prediction_type=pred, clip_sample=True)
        s.set_timesteps(10)
        for eta in (0.0, 1.0):
            t = int(s.timesteps[3])
            a = ddim_step(s, out, t, x, eta, z)
            b = ddim_step_asymmetric(s, out, out, t, x, eta, z)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            # the x_0 comes from the first output, the direction term from the second
            c = ddim_step_asymmetric(s, out, other, t, x, eta, z)
            assert torch.equal(c[1], a[1]) and not torch.equal(c[0], a[0])


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample", "latent"])
def test_asyrp_equals_the_hand_written_chain(models, kind):
    m = models[kind]
    t = sample(m, [3], steps=STEPS, eta=1.0)[0]
    g = torch.Generator().manual_seed(1)
    d = torch.randn(t.hs.shape, generator=g) * float(t.hs.abs().mean())
    window = (int(t.timesteps[1]), int(t.timesteps[-1]))  # all steps but the first
    on = ((t.timesteps <= window[0]) & (t.timesteps >= window[1])).float().view(-1, 1, 1, 1)
    x = edit(m, t, [EditSpec(d, 0.8, window, asymmetric=True)])
    ref = reference_chain(m, t.x_T, t.zs, t.etas, t.timesteps, t.h_space, asym=0.8 * d * on)
    assert _close(x, ref)
    sym = reference_chain(m, t.x_T, t.zs, t.etas, t.timesteps, t.h_space, delta=0.8 * d * on)
    assert _differs(x, sym) and _differs(x, t.x_0)  # asymmetric is not the symmetric edit, nor none


def test_asyrp_with_symmetric_companion_and_batch(models):
    m = models["epsilon"]
    t = sample(m, [5], steps=STEPS, eta=1.0)[0]
    g = torch.Generator().manual_seed(2)
    d1 = torch.randn(t.hs.shape, generator=g) * float(t.hs.abs().mean())
    d2 = torch.randn(t.hs.shape, generator=g) * float(t.hs.abs().mean())
    res = edit_batch(m, t, [[EditSpec(d1, 1.0)], [EditSpec(d2, 0.5, asymmetric=True)],
                            [EditSpec(d1, 1.0), EditSpec(d2, 0.5, asymmetric=True)]]).x_0
    assert _close(res[0], reference_chain(m, t.x_T, t.zs, t.etas, t.timesteps, "after", delta=d1))
    assert _close(res[1], reference_chain(m, t.x_T, t.zs, t.etas, t.timesteps, "after", asym=0.5 * d2))
    assert _close(res[2], reference_chain(m, t.x_T, t.zs, t.etas, t.timesteps, "after", delta=d1,
                                          asym=0.5 * d2))


def test_asyrp_with_a_zero_direction_is_the_plain_decode(models):
    m = models["v_prediction"]
    t = sample(m, [6], steps=STEPS, eta=1.0)[0]
    assert torch.equal(edit(m, t, [EditSpec(torch.zeros_like(t.hs), 3.0, asymmetric=True)]), t.x_0)
    zero = torch.zeros(1, *t.hs.shape[1:])
    plain = run_chain(m, t.x_T[None], t.zs, t.etas, t.timesteps, t.h_space)
    asym = run_chain(m, t.x_T[None], t.zs, t.etas, t.timesteps, t.h_space, asym_delta_at=lambda i: zero)
    assert torch.equal(asym.x_0, plain.x_0) and torch.equal(asym.hs, plain.hs)
    assert _close(asym.x_0[0], t.x_0)


def test_a_symmetric_edit_is_unchanged(models):
    """The default path runs the network once per step and equals run_chain without Asyrp
    bit for bit, and the hand-written chain to 1e-5."""
    m = models["epsilon"]
    t = sample(m, [7], steps=STEPS, eta=1.0)[0]
    d = torch.randn(t.hs.shape, generator=torch.Generator().manual_seed(3))
    calls = []
    handle = m.net.register_forward_hook(lambda *a: calls.append(1))
    try:
        x = edit(m, t, [EditSpec(d, 1.5)])
    finally:
        handle.remove()
    assert len(calls) == STEPS
    full = run_chain(m, t.xs[0][None], t.zs, t.etas, t.timesteps, "after", delta_at=lambda i: (1.5 * d[i])[None])
    assert torch.equal(x, full.x_0[0])
    assert _close(x, reference_chain(m, t.x_T, t.zs, t.etas, t.timesteps, "after", delta=1.5 * d))


# ---------------------------------------------------------------------- noise space

@pytest.mark.parametrize("kind", ["epsilon", "latent"])
def test_noise_edit_equals_the_hand_written_chain(models, kind):
    m = models[kind]
    t = sample(m, [8], steps=STEPS, eta=1.0)[0]
    g = torch.Generator().manual_seed(4)
    dx, dz = torch.randn(t.x_T.shape, generator=g), torch.randn(t.zs.shape, generator=g)
    x = edit(m, t, [NoiseEdit(dx, dz, 0.7)])
    ref = reference_chain(m, t.x_T + 0.7 * dx, t.zs + 0.7 * dz, t.etas, t.timesteps, t.h_space)
    assert _close(x, ref) and _differs(x, t.x_0)
    # only the per-step noise, from step 2 on: the steps before are reused, same result
    dz2 = dz.clone()
    dz2[:2] = 0
    x = edit(m, t, [NoiseEdit(None, dz2, -0.5)])
    assert _close(x, reference_chain(m, t.x_T, t.zs - 0.5 * dz2, t.etas, t.timesteps, t.h_space))


def test_noise_edit_on_a_ddim_chain_changes_only_through_x_T(models):
    m = models["epsilon"]
    t = sample(m, [9], steps=STEPS, eta=0.0)[0]
    g = torch.Generator().manual_seed(5)
    dx, dz = torch.randn(t.x_T.shape, generator=g), torch.randn(t.zs.shape, generator=g)
    assert torch.equal(edit(m, t, [NoiseEdit(None, dz, 2.0)]), t.x_0)  # eta 0: z is unused
    x = edit(m, t, [NoiseEdit(dx, dz, 0.3)])
    assert _close(x, reference_chain(m, t.x_T + 0.3 * dx, t.zs, t.etas, t.timesteps, "after"))


def test_noise_and_h_edits_batch_together(models):
    m = models["epsilon"]
    t = sample(m, [10], steps=STEPS, eta=1.0)[0]
    g = torch.Generator().manual_seed(6)
    dx, dz = torch.randn(t.x_T.shape, generator=g), torch.randn(t.zs.shape, generator=g)
    d = torch.randn(t.hs.shape, generator=g)
    ne, he = NoiseEdit(dx, dz, 0.4), EditSpec(d, 1.0, asymmetric=True)
    res = edit_batch(m, t, [[ne], [he], [ne, he], []]).x_0
    assert _close(res[2], reference_chain(m, t.x_T + 0.4 * dx, t.zs + 0.4 * dz, t.etas, t.timesteps,
                                          "after", asym=d))
    assert _close(res[0], edit(m, t, [ne])) and _close(res[1], edit(m, t, [he]))
    assert _close(res[3], t.x_0)


def test_noise_mean_difference_of_a_supervised_index(models):
    from hspace_studio.engine.discover.supervised import AnnotationIndex
    from hspace_studio.engine.noise_edits import (noise_mean_difference, split_noise_set,
                                                  supervised_noise_directions)

    m = models["epsilon"]
    seeds = [20, 21, 22, 23, 24, 25]
    recipe = {"fingerprint": m.fingerprint, "steps": STEPS, "eta": 1.0, "h_space": "after",
              "classifier": {"attributes": ["smile", "age"]}}
    index = AnnotationIndex(recipe, seeds, [[0.9, 0.0], [0.1, 0.0], [0.8, 1.0], [0.2, 1.0],
                                            [0.5, 0.0], [0.0, 1.0]])
    ds = supervised_noise_directions(m, index, "smile", examples=2)
    trajs = {s: tr for s, tr in zip(seeds, sample(m, seeds, steps=STEPS, eta=1.0, keep_chain=False))}
    pos, neg = [trajs[20], trajs[22]], [trajs[25], trajs[21]]  # top and bottom two by smile
    hx = (pos[0].x_T + pos[1].x_T) / 2 - (neg[0].x_T + neg[1].x_T) / 2
    hz = (pos[0].zs + pos[1].zs) / 2 - (neg[0].zs + neg[1].zs) / 2
    d_xT, d_zs, ts = split_noise_set(ds)
    assert torch.allclose(d_xT[0], hx, atol=1e-6) and torch.allclose(d_zs[0], hz, atol=1e-6)
    assert torch.equal(ts, trajs[20].timesteps)
    mx, mz = noise_mean_difference(pos, neg)
    assert torch.allclose(mx, hx, atol=1e-6) and torch.allclose(mz, hz, atol=1e-6)
    assert ds.params["directions"][0]["positive_seeds"] == [20, 22]


def test_noise_direction_file_round_trip_and_refusals(models, tmp_path):
    from hspace_studio.engine.noise_edits import (check_noise_set, load_noise_directions, noise_direction_set,
                                                  noise_edit, split_noise_set)

    m = models["epsilon"]
    t = sample(m, [11], steps=STEPS, eta=1.0)[0]
    g = torch.Generator().manual_seed(7)
    dx, dz = torch.randn(2, *t.x_T.shape, generator=g), torch.randn(2, *t.zs.shape, generator=g)
    ds = noise_direction_set(dx, dz, t.timesteps, m.weights_fingerprint, labels=["a", "b"])
    ds.save(tmp_path / "n.safetensors")
    back = load_noise_directions(tmp_path / "n.safetensors")
    bx, bz, bts = split_noise_set(back)
    assert torch.equal(bx, dx) and torch.equal(bz, dz) and torch.equal(bts, t.timesteps)
    assert back.labels == ["a", "b"] and back.params["space"] == "noise"
    check_noise_set(back, m.weights_fingerprint, t.x_T.shape)
    e = noise_edit(back, 1, 0.5, t)
    assert torch.equal(e.d_xT, dx[1]) and torch.equal(e.d_zs, dz[1]) and e.scale == 0.5
    # where an h-space direction is expected, the noise file is refused ...
    with pytest.raises(ModelMismatchError, match="noise"):
        DirectionSet.load(tmp_path / "n.safetensors").check_model(m.weights_fingerprint, "after")
    # ... and an h-space file where a noise direction is expected
    DirectionSet(delta_h=torch.randn(1, *t.hs.shape), timesteps=t.timesteps, fingerprint=m.weights_fingerprint,
                 h_space="after").save(tmp_path / "h.safetensors")
    with pytest.raises(ModelMismatchError, match="h-space directions"):
        load_noise_directions(tmp_path / "h.safetensors")
    # a per-step part on other timesteps is refused; an x_T-only one fits any steps
    t3 = sample(m, [11], steps=3, eta=1.0)[0]
    with pytest.raises(ModelMismatchError, match="per-step noise"):
        noise_edit(back, 0, 1.0, t3)
    only_x = noise_direction_set(dx[:1], None, t.timesteps, m.weights_fingerprint)
    assert noise_edit(only_x, 0, 1.0, t3).d_zs is None


# ---------------------------------------------------------------------- interpolation

def _slerp_by_hand(u, v, a):
    u64, v64 = u.double().flatten(), v.double().flatten()
    theta = math.acos(float(u64 @ v64 / (u64.norm() * v64.norm())))
    return ((math.sin((1 - a) * theta) * u64 + math.sin(a * theta) * v64) / math.sin(theta)).view(u.shape).float()


def test_slerp_and_lerp_strips(models):
    from hspace_studio.engine.interpolate import interpolate

    m = models["epsilon"]
    a, b = sample(m, [30, 31], steps=STEPS, eta=1.0)
    res = interpolate(m, a, b, "slerp", frames=3)
    assert res.alphas == [0.0, 0.5, 1.0]
    assert torch.equal(res.x_T[0], a.x_T) and torch.equal(res.x_T[-1], b.x_T)
    assert torch.equal(res.zs[0], a.zs) and torch.equal(res.zs[-1], b.zs)
    assert _close(res.x_0[0], a.x_0) and _close(res.x_0[-1], b.x_0)
    mx, mz = _slerp_by_hand(a.x_T, b.x_T, 0.5), _slerp_by_hand(a.zs, b.zs, 0.5)
    assert torch.allclose(res.x_T[1], mx, atol=1e-5) and torch.allclose(res.zs[1], mz, atol=1e-5)
    assert _close(res.x_0[1], reference_chain(m, mx, mz, a.etas, a.timesteps, "after"))
    # slerp keeps the norm of Gaussian noise; lerp shrinks it
    lin = interpolate(m, a, b, "lerp", frames=3)
    assert _close(lin.x_0[1], reference_chain(m, (a.x_T + b.x_T) / 2, (a.zs + b.zs) / 2, a.etas,
                                              a.timesteps, "after"))
    assert float(lin.x_T[1].norm()) < 0.9 * float(res.x_T[1].norm())


def test_h_interpolation_moves_h_of_a_toward_b(models):
    from hspace_studio.engine.interpolate import interpolate

    m = models["v_prediction"]
    a, b = sample(m, [32, 33], steps=STEPS, eta=1.0)
    res = interpolate(m, a, b, "h", frames=3)
    assert res.x_T is None and _close(res.x_0[0], a.x_0)
    for k, alpha in enumerate(res.alphas[1:], 1):
        ref = reference_chain(m, a.x_T, a.zs, a.etas, a.timesteps, "after", delta=alpha * (b.hs - a.hs))
        assert _close(res.x_0[k], ref)


def test_slerp_falls_back_to_lerp_and_pairs_are_checked(models):
    from hspace_studio.engine.interpolate import interpolate, lerp, slerp

    u = torch.randn(3, 4, 4)
    assert torch.equal(slerp(u, 2 * u, 0.3), lerp(u, 2 * u, 0.3))
    assert torch.equal(slerp(torch.zeros(3), torch.ones(3), 0.5), torch.full((3,), 0.5))
    m = models["epsilon"]
    a = sample(m, [34], steps=STEPS, eta=1.0)[0]
    b = sample(m, [35], steps=STEPS, eta=0.0)[0]
    with pytest.raises(ValueError, match="eta"):
        interpolate(m, a, b, "slerp")
    c = sample(m, [35], steps=STEPS + 1, eta=1.0)[0]
    with pytest.raises(ValueError, match="steps"):
        interpolate(m, a, c, "h")
    with pytest.raises(ValueError, match="mode"):
        interpolate(m, a, a, "cubic")


# ---------------------------------------------------------------------- eta schedules

def test_eta_schedules():
    assert eta_schedule("last:0.3", 10).tolist() == [0.0] * 7 + [1.0] * 3
    assert eta_schedule("first:0.3", 10).tolist() == [1.0] * 3 + [0.0] * 7
    assert eta_schedule("last:0.5:0.25", 4).tolist() == [0.0, 0.0, 0.25, 0.25]
    assert eta_schedule("LAST:1", 3).tolist() == [1.0] * 3 and eta_schedule("last:0", 3).tolist() == [0.0] * 3
    assert int(eta_schedule("last:0.29", 100).sum()) == 29  # floor, but not of 28.999999999999996
    assert eta_schedule("last:0.25", 10).tolist() == [0.0] * 8 + [1.0] * 2  # floor(2.5), as the reference
    assert eta_schedule("0.5", 3).tolist() == [0.5] * 3 and eta_schedule("1,0", 2).tolist() == [1.0, 0.0]
    assert torch.equal(etas_tensor("last:0.4", 5), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    for bad in ("middle:0.3", "last:1.5", "last:x", "last:0.3:-1", "last:0.3:1:2", "a,b", "-1"):
        with pytest.raises(ValueError):
            etas_tensor(bad, 10)


def test_sampling_with_an_eta_schedule_spec_equals_its_list(models):
    m = models["epsilon"]
    a = sample(m, [40], steps=STEPS, eta="last:0.4")[0]
    b = sample(m, [40], steps=STEPS, eta=[0.0, 0.0, 0.0, 1.0, 1.0])[0]
    assert torch.equal(a.x_0, b.x_0) and torch.equal(a.zs, b.zs) and a.origin["eta"] == b.origin["eta"]
    assert a.zs[:3].abs().sum() == 0 and a.zs[3:].abs().sum() > 0


# ---------------------------------------------------------------------- the CLI

def _run(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def files(tiny_model_dir, tmp_path_factory):
    return save_direction_files(tiny_model_dir, tmp_path_factory.mktemp("modes"), STEPS, seed=8)


def _replay(path, again):
    """Replay the recipe of ``path`` through the CLI into ``again``; both PNGs' pixels."""
    from PIL import Image

    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    rec = read_recipe(path)
    assert main(recipe_to_cli_args(rec, str(again))) == 0
    import numpy as np

    return np.asarray(Image.open(path)), np.asarray(Image.open(again)), rec


def test_cli_asymmetric_and_noise_edits_replay_from_their_recipe(tiny_model_dir, files, tmp_path):
    common = ["--seed", 4, "--model", tiny_model_dir, "--steps", STEPS]
    assert _run("edit", *common, "--direction", f"{files}/h.safetensors:1", "--scale", 2, "--asymmetric",
                "--noise-direction", f"{files}/n.safetensors:0", "--noise-scale", 0.5,
                "--out", tmp_path / "a.png") == 0
    a, again, rec = _replay(tmp_path / "a.png", tmp_path / "a2.png")
    assert (a == again).all()
    assert rec["edits"][0]["asymmetric"] is True and rec["edits"][1]["space"] == "noise"
    assert rec["edits"][1]["scale"] == 0.5
    # the same edit without --asymmetric gives another image; the engine agrees with the file
    assert _run("edit", *common, "--direction", f"{files}/h.safetensors:1", "--scale", 2,
                "--noise-direction", f"{files}/n.safetensors:0", "--noise-scale", 0.5,
                "--out", tmp_path / "s.png") == 0
    from PIL import Image
    import numpy as np

    assert not (np.asarray(Image.open(tmp_path / "s.png")) == a).all()
    # a strip of the first edit, a noise one
    assert _run("edit", *common, "--noise-direction", f"{files}/n.safetensors:1", "--strip=-1,0,1",
                "--out", tmp_path / "strip.png") == 0
    s, again, _ = _replay(tmp_path / "strip.png", tmp_path / "strip2.png")
    assert (s == again).all() and s.shape[1] == 3 * 16 + 2 * 2


def test_cli_refuses_a_direction_file_of_the_other_space(tiny_model_dir, files, tmp_path, capsys):
    common = ["--seed", 4, "--model", tiny_model_dir, "--steps", STEPS, "--out", tmp_path / "x.png"]
    assert _run("edit", *common, "--direction", f"{files}/n.safetensors") == 1
    assert "noise-space directions: pass it with --noise-direction" in capsys.readouterr().err
    assert _run("edit", *common, "--noise-direction", f"{files}/h.safetensors") == 1
    assert "h-space directions" in capsys.readouterr().err
    assert _run("edit", *common, "--noise-direction", f"{files}/n.safetensors", "--scale", 2) == 2
    assert "--noise-scale" in capsys.readouterr().err
    assert _run("edit", *common) == 1
    assert "--direction" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["slerp", "h"])
def test_cli_interpolation_strip_replays_from_its_recipe(tiny_model_dir, tmp_path, mode):
    common = ["--seed", 4, "--model", tiny_model_dir, "--steps", STEPS]
    assert _run("edit", *common, "--interpolate-with", 5, "--mode", mode, "--frames", 3,
                "--out", tmp_path / "i.png") == 0
    img, again, rec = _replay(tmp_path / "i.png", tmp_path / "i2.png")
    assert (img == again).all() and img.shape[1] == 3 * 16 + 2 * 2
    assert rec["interpolate"] == {"with": {"seed": 5}, "mode": mode, "frames": 3}
    # the first frame is the image itself, the last (slerp) the other one
    assert _run("sample", "--seed", 4, "--model", tiny_model_dir, "--steps", STEPS, "--out", tmp_path / "a.png",
                "--trajectory", tmp_path / "a.safetensors") == 0
    assert _run("sample", "--seed", 5, "--model", tiny_model_dir, "--steps", STEPS, "--out", tmp_path / "b.png",
                "--trajectory", tmp_path / "b.safetensors") == 0
    from PIL import Image
    import numpy as np

    first = img[:, :16]
    last = img[:, -16:]
    assert np.abs(first.astype(int) - np.asarray(Image.open(tmp_path / "a.png")).astype(int)).max() <= 1
    if mode == "slerp":
        assert np.abs(last.astype(int) - np.asarray(Image.open(tmp_path / "b.png")).astype(int)).max() <= 1
    # with a saved trajectory as the other image: the same strip
    assert _run("edit", "--trajectory", tmp_path / "a.safetensors", "--model", tiny_model_dir,
                "--interpolate-with", tmp_path / "b.safetensors", "--mode", mode, "--frames", 3,
                "--out", tmp_path / "t.png") == 0
    t_img, t_again, t_rec = _replay(tmp_path / "t.png", tmp_path / "t2.png")
    assert (t_img == t_again).all() and t_rec["interpolate"]["with"] == {"trajectory": str(tmp_path / "b.safetensors")}
    assert np.abs(t_img.astype(int) - img.astype(int)).max() <= 1


def test_recipe_args_for_the_new_modes():
    from hspace_studio.core.recipe import recipe_to_cli_args

    rec = {"source": {"seed": 1, "steps": 5, "eta": "last:0.4"},
           "edits": [{"direction": "d.st", "index": 1, "scale": 2.0, "window": None, "at_step": None,
                      "asymmetric": True},
                     {"space": "noise", "direction": "n.st", "index": 0, "scale": -1.5}]}
    args = recipe_to_cli_args(rec, "o.png")
    assert args[0] == "edit" and "--eta=last:0.4" in args
    i = args.index("--direction=d.st:1")
    assert args[i + 1:i + 5] == ["--scale=2.0", "--asymmetric", "--noise-direction=n.st:0", "--noise-scale=-1.5"]
    rec = {"source": {"seed": 1, "steps": 5, "eta": 1.0}, "edits": [],
           "interpolate": {"with": {"seed": 9}, "mode": "h", "frames": 4}}
    args = recipe_to_cli_args(rec)
    assert args[0] == "edit" and args[-3:] == ["--interpolate-with=9", "--mode=h", "--frames=4"]
    assert "--asymmetric" not in recipe_to_cli_args(
        {"source": {"seed": 1}, "edits": [{"direction": "d", "scale": 1.0}]})
