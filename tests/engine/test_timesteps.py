"""Power-spaced timesteps (--timesteps power:P) against diffusers' own schedulers."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from PIL import Image

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.core.recipe import recipe_to_cli_args, with_model_settings
from hspace_studio.core.spacing import parse_spacing
from hspace_studio.engine import decode, load_model, sample
from hspace_studio.engine.inversion import invert
from hspace_studio.engine.timesteps import power_timesteps


def test_power_timesteps_place_the_steps_and_stay_distinct():
    assert power_timesteps(1000, 10, 0.8).tolist() == [999, 918, 836, 751, 664, 574, 480, 381, 276, 158]
    assert power_timesteps(1000, 4, 1.0).tolist() == [999, 749, 500, 250]
    for n, p in [(1000, 0.5), (1000, 2.0), (999, 0.25), (1, 0.8), (37, 3.0)]:
        ts = power_timesteps(1000, n, p)
        assert len(ts) == n and ts.unique().numel() == n
        assert (ts[:-1] > ts[1:]).all() and int(ts.min()) >= 0 and int(ts.max()) <= 999
    with pytest.raises(ValueError):
        power_timesteps(1000, 0, 0.8)


@pytest.mark.parametrize("spec", ["power", "power:", "power:x", "power:nan", "power:0.1", "power:9", "karras:1"])
def test_bad_spacings_are_refused(spec, tiny_model_b_dir):
    with pytest.raises(ValueError):
        parse_spacing(spec)
    with pytest.raises(ModelLoadError, match="spacing"):
        load_model(str(tiny_model_b_dir), device="cpu", timesteps=spec)
    assert parse_spacing("scheduler") is None and parse_spacing(None) is None
    assert parse_spacing(" power:0.8 ") == 0.8


def _reference_chain(model, sched, seed, ts):
    """x_t at each step and the final x from a diffusers scheduler set to ``ts``."""
    sched.set_timesteps(timesteps=ts)
    assert sched.timesteps.tolist() == ts
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *model.sample_shape), generator=g)
    xs = []
    for t in sched.timesteps:
        xs.append(x[0])
        with torch.no_grad():
            out = model.denoiser(x, t)
        x = sched.step(out, t, x, generator=g).prev_sample
    return torch.stack(xs), x[0]


def test_power_spaced_ddim_equals_first_order_dpm_solver(tiny_model_b_dir):
    """eta 0: DDIM between uneven timesteps is first-order DPM-Solver++ in diffusers."""
    model = load_model(str(tiny_model_b_dir), device="cpu", timesteps="power:0.8")
    tr = sample(model, [5, 6], steps=8, eta=0.0)
    ts = tr[0].timesteps.tolist()
    assert ts == power_timesteps(1000, 8, 0.8).tolist() and ts != list(range(999, 0, -125))
    # the last step goes where the model's set_alpha_to_one says: alpha-bar 1 (sigma 0) or alpha-bar_0
    final = "zero" if model.scheduler.config.set_alpha_to_one else "sigma_min"
    ref = DPMSolverMultistepScheduler.from_config(dict(model.scheduler.config), solver_order=1,
                                                  algorithm_type="dpmsolver++", final_sigmas_type=final)
    for t, seed in zip(tr, (5, 6)):
        xs, x0 = _reference_chain(model, ref, seed, ts)
        assert (xs - t.xs).abs().max() < 1e-5
        assert (x0 - t.x_0).abs().max() < 1e-5


def test_power_spaced_eta_one_follows_the_ddpm_posterior(tiny_model_b_dir):
    """eta 1 with the same noise: every step's x_t equals diffusers' DDPM scheduler stepped
    on the same custom timesteps (every step's input; the last step's output is not compared)."""
    model = load_model(str(tiny_model_b_dir), device="cpu", timesteps="power:0.8")
    t = sample(model, [5], steps=8, eta=1.0)[0]
    ref = DDPMScheduler.from_config(dict(model.scheduler.config), variance_type="fixed_small")
    xs, _ = _reference_chain(model, ref, 5, t.timesteps.tolist())
    assert (xs - t.xs).abs().max() < 1e-3
    plain = sample(load_model(str(tiny_model_b_dir), device="cpu"), [5], steps=8, eta=1.0)[0]
    assert (plain.x_0 - t.x_0).abs().max() > 1e-2  # the spacing changes the image


def test_inversion_is_exact_and_other_spacings_are_refused(tiny_model_b_dir):
    model = load_model(str(tiny_model_b_dir), device="cpu", timesteps="power:0.8")
    img = sample(model, [9], steps=6, eta=0.0)[0].x_0.clamp(-1, 1)
    inv = invert(model, img, steps=6, eta=1.0)
    assert inv.max_error < 1e-4
    t = inv.trajectory.copy()
    t.xs = None
    decode(model, t)
    assert (t.x_0 - img).abs().max() < 1e-4
    plain = load_model(str(tiny_model_b_dir), device="cpu")
    with pytest.raises(ValueError, match="timestep spacing"):
        decode(plain, inv.trajectory.copy())


def test_cli_samples_with_the_spacing_and_its_recipe_replays(tiny_model_b_dir, tmp_path):
    exe = [sys.executable, "-m", "hspace_studio"]
    out = tmp_path / "a.png"
    r = subprocess.run(exe + ["sample", "--model", str(tiny_model_b_dir), "--seed", "4", "--steps", "7",
                              "--eta", "0", "--timesteps", "power:0.8", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = load_model(str(tiny_model_b_dir), device="cpu", timesteps="power:0.8")
    mine = sample(model, [4], steps=7, eta=0.0)[0].x_0.clamp(-1, 1)
    png = np.asarray(Image.open(out).convert("RGB")).astype(np.float32) / 127.5 - 1
    assert np.abs(png - mine.permute(1, 2, 0).numpy()).max() <= 1.5 / 127.5
    rec = with_model_settings({"model": str(tiny_model_b_dir), "source": {"seed": 4, "steps": 7, "eta": 0.0}},
                              model)
    args = recipe_to_cli_args(rec, str(tmp_path / "b.png"))
    assert "--timesteps=power:0.8" in args
    r = subprocess.run(exe + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(tmp_path / "b.png")))
    r = subprocess.run(exe + ["sample", "--model", str(tiny_model_b_dir), "--seed", "1", "--timesteps", "power:zero",
                              "--out", str(tmp_path / "c.png")], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "spacing" in r.stderr
