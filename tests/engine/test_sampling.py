"""Sampling and editing against diffusers' own pipeline and the edit contract."""
import pytest
import torch
from diffusers import DDIMPipeline

from hspace_studio.core.errors import Cancelled
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine import EditSpec, edit, edit_batch, load_model, sample, strip
from hspace_studio.engine.sampler import decode, run_chain

SEEDS = [11, 12, 13]


def _pipeline_images(model, seeds, eta, steps):
    pipe = DDIMPipeline(unet=model.net, scheduler=model.scheduler)
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = pipe(batch_size=len(seeds), generator=gens, eta=eta, num_inference_steps=steps,
               output_type="np").images
    return torch.from_numpy(out).permute(0, 3, 1, 2)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("which", ["tiny_model_dir", "tiny_model_b_dir"])
def test_sampling_equals_ddim_pipeline(request, which, eta):
    model = load_model(str(request.getfixturevalue(which)), device="cpu")
    trajs = sample(model, SEEDS, steps=8, eta=eta, batch_size=len(SEEDS))
    mine = torch.stack([t.x_0 for t in trajs])
    ref = _pipeline_images(model, SEEDS, eta, 8)
    assert (((mine / 2 + 0.5).clamp(0, 1)) - ref).abs().max().item() < 1e-5


def test_sampling_is_deterministic_per_seed_and_batch_independent(tiny_model):
    a = sample(tiny_model, [5, 6, 7], steps=5, eta=1.0, batch_size=3)
    b = sample(tiny_model, [7], steps=5, eta=1.0)
    assert torch.equal(a[2].x_T, b[0].x_T) and torch.equal(a[2].zs, b[0].zs)
    assert (a[2].x_0 - b[0].x_0).abs().max() < 1e-4
    c = sample(tiny_model, [7], steps=5, eta=1.0)
    assert torch.equal(b[0].x_0, c[0].x_0)
    assert not torch.equal(a[0].x_T, a[1].x_T)


def test_trajectory_record_shapes_and_eta_schedule(tiny_model):
    sched = [1.0, 0.0, 0.5, 0.0, 1.0]
    t = sample(tiny_model, [3], steps=5, eta=sched)[0]
    C, H, W = tiny_model.sample_shape
    assert t.x_T.shape == (C, H, W) and t.x_0.shape == (C, H, W)
    assert t.zs.shape == (5, C, H, W) and t.hs.shape[0] == 5 and t.timesteps.shape == (5,)
    assert torch.equal(t.etas, torch.tensor(sched))
    assert t.zs[1].abs().sum() == 0 and t.zs[3].abs().sum() == 0 and t.zs[0].abs().sum() > 0
    with pytest.raises(ValueError):
        sample(tiny_model, [3], steps=5, eta=[1.0, 0.0])


def test_replay_reproduces_x0(tiny_model):
    t = sample(tiny_model, [21], steps=6, eta=1.0)[0]
    t2 = t.copy()
    t2.xs = None
    decode(tiny_model, t2)
    assert (t2.x_0 - t.x_0).abs().max() < 1e-5


def test_zero_direction_reproduces_image_exactly(tiny_model):
    t = sample(tiny_model, [4], steps=6, eta=1.0)[0]
    x = edit(tiny_model, t, [EditSpec(torch.zeros_like(t.hs), 5.0)])
    assert torch.equal(x, t.x_0)
    x = edit(tiny_model, t, [EditSpec(torch.randn_like(t.hs), 0.0)])
    assert torch.equal(x, t.x_0)


def test_edit_changes_h_only_inside_window(tiny_model):
    t = sample(tiny_model, [8], steps=10, eta=1.0)[0]
    d = torch.randn_like(t.hs)
    window = (700, 300)
    res = edit_batch(tiny_model, t, [[EditSpec(d, 2.0, window)]], keep_pre_edit=True)
    inside = (t.timesteps >= 300) & (t.timesteps <= 700)
    start = int(inside.nonzero()[0])
    injected = res.hs[0] - res.hs_before_edit[0]  # what the hooks added, per recomputed step
    for j, i in enumerate(range(start, t.steps)):
        if inside[i]:
            assert torch.allclose(injected[j], 2.0 * d[i], atol=1e-5)
        else:
            assert injected[j].abs().max() == 0
    # steps before the window are not recomputed; their h and x are the cached ones
    assert res.hs.shape[1] == t.steps - start
    assert not torch.allclose(res.x_0[0], t.x_0)


def test_edit_reusing_cached_prefix_equals_full_recompute(tiny_model):
    t = sample(tiny_model, [9], steps=10, eta=1.0, batch_size=1)[0]
    d = torch.randn_like(t.hs)
    spec = EditSpec(d, 1.5, (500, 0))
    fast = edit(tiny_model, t, [spec])
    on = spec.active_steps(t.timesteps).view(-1, 1, 1, 1)
    full = run_chain(tiny_model, t.x_T[None], t.zs, t.etas, t.timesteps, "after",
                     delta_at=lambda i: (1.5 * d[i] * on[i])[None])
    assert (fast - full.x_0[0]).abs().max() < 1e-5


def test_several_directions_add_and_strips_batch(tiny_model):
    t = sample(tiny_model, [10], steps=6, eta=1.0)[0]
    d1, d2 = torch.randn_like(t.hs), torch.randn_like(t.hs)
    both = edit(tiny_model, t, [EditSpec(d1, 1.0), EditSpec(d2, -0.5)])
    summed = edit(tiny_model, t, [EditSpec(d1 - 0.5 * d2, 1.0)])
    assert (both - summed).abs().max() < 1e-5
    xs = strip(tiny_model, t, d1, [-1.0, 0.0, 1.0])
    assert xs.shape[0] == 3
    assert (xs[1] - t.x_0).abs().max() < 1e-4
    assert (xs[2] - edit(tiny_model, t, [EditSpec(d1, 1.0)])).abs().max() < 1e-4
    # the strip of an edit (whose scale each scale replaces) is the strip of its delta
    assert torch.equal(strip(tiny_model, t, EditSpec(d1, 7.0), [-1.0, 0.0, 1.0]), xs)
    with pytest.raises(TypeError):
        strip(tiny_model, t, EditSpec(d1, 1.0), [1.0], window=(999, 0))


def test_progress_and_cancel(tiny_model):
    calls = []
    sample(tiny_model, [1, 2], steps=4, batch_size=1, progress=lambda d, n, m: calls.append((d, n)))
    assert calls[-1] == (8, 8) and len(calls) == 8
    calls.clear()
    sample(tiny_model, [1, 2, 3], steps=4, batch_size=2, progress=lambda d, n, m: calls.append((d, n)))
    assert calls[-1] == (8, 8)  # two batches of 4 steps: the bar ends full
    token = CancelToken()
    seen = []

    def prog(done, total, msg):
        seen.append(done)
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        sample(tiny_model, [1], steps=10, progress=prog, cancel=token)
    assert seen == [1, 2]


def test_preview_callback_gets_predicted_x0(tiny_model):
    got = []
    sample(tiny_model, [1], steps=3, preview=lambda i, T, x0: got.append((i, T, x0.shape)))
    assert [g[0] for g in got] == [0, 1, 2] and got[0][2][1:] == tiny_model.sample_shape


def _half_mask(shape):
    m = torch.zeros(shape)
    m[:, : shape[1] // 2] = 1.0
    return m


def test_region_with_no_free_steps_leaves_outside_unchanged(tiny_model):
    from hspace_studio.engine.sampler import Region, region_weights

    t = sample(tiny_model, [11], steps=8, eta=1.0)[0]
    d = torch.randn_like(t.hs)
    mask = _half_mask(tiny_model.image_size)
    w = region_weights(tiny_model, mask.numpy())
    x = edit(tiny_model, t, [EditSpec(d, 3.0)], region=Region(w, free_steps=0))
    free = edit(tiny_model, t, [EditSpec(d, 3.0)])
    inside, outside = mask.bool(), ~mask.bool()
    assert torch.equal(x[:, outside], t.x_0[:, outside])
    assert (x[:, inside] - t.x_0[:, inside]).abs().max() > 1e-3
    # a region covering the whole image changes nothing
    whole = edit(tiny_model, t, [EditSpec(d, 3.0)], region=Region(torch.ones(1, 1, *w.shape[-2:]), 0))
    assert (whole - free).abs().max() < 1e-5


def test_region_free_steps_match_a_hand_blended_chain(tiny_model):
    from hspace_studio.engine.sampler import Region, region_weights

    t = sample(tiny_model, [12], steps=6, eta=1.0, batch_size=1)[0]
    d = torch.randn_like(t.hs)
    w = region_weights(tiny_model, _half_mask(tiny_model.image_size).numpy())
    got = edit(tiny_model, t, [EditSpec(d, 2.0)], region=Region(w, free_steps=2))
    orig = list(t.xs[1:]) + [t.x_0]

    def blend(i, x):  # steps 0..3 blended, 4 and 5 free
        return w * x + (1 - w) * orig[i][None] if i < 4 else x

    want = run_chain(tiny_model, t.x_T[None], t.zs, t.etas, t.timesteps, "after",
                     delta_at=lambda i: (2.0 * d[i])[None], after_step=blend).x_0[0]
    assert (got - want).abs().max() < 1e-5
    outside = ~_half_mask(tiny_model.image_size).bool()
    assert not torch.allclose(got[:, outside], t.x_0[:, outside])  # the free steps blend the border


def test_region_rejects_an_empty_mask(tiny_model):
    from hspace_studio.engine.sampler import region_weights

    with pytest.raises(ValueError, match="empty"):
        region_weights(tiny_model, torch.zeros(tiny_model.image_size).numpy())


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_is_the_schedulers_step(prediction, eta):
    from diffusers import DDIMScheduler

    from hspace_studio.engine.ddim import ddim_step

    s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction,
                      clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")
    s.set_timesteps(7)
    g = torch.Generator().manual_seed(0)
    x, out, z = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    for t in s.timesteps:
        ref = s.step(out, t, x, eta=eta, variance_noise=z if eta > 0 else None)
        prev, x0 = ddim_step(s, out, t, x, eta, z if eta > 0 else None)
        assert torch.equal(prev, ref.prev_sample) and torch.equal(x0, ref.pred_original_sample)


def test_a_pure_noise_first_step_stays_finite():
    """Cosine schedule, trailing spacing, eta 1: the first step's noise-direction coefficient
    is zero in exact arithmetic; rounded below zero it made the scheduler's step NaN (the
    default model sampled NaN at 5 steps)."""
    from diffusers import DDIMScheduler

    from hspace_studio.engine.ddim import ddim_step

    s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                      prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                      timestep_spacing="trailing")
    g = torch.Generator().manual_seed(0)
    x, out, z = (torch.randn(1, 3, 8, 8, generator=g) for _ in range(3))
    for steps in range(2, 60):
        s.set_timesteps(steps)
        prev, x0 = ddim_step(s, out, s.timesteps[0], x, 1.0, z)
        assert torch.isfinite(prev).all(), steps
        # the noise direction's coefficient is about zero here: x_prev is the x_0 term + sigma z
        t, prev_t = int(s.timesteps[0]), int(s.timesteps[0]) - 1000 // steps
        ab_prev = s.alphas_cumprod[prev_t]
        sigma = s._get_variance(t, prev_t) ** 0.5
        assert torch.allclose(prev, ab_prev ** 0.5 * x0 + sigma * z, atol=1e-2)


@pytest.mark.skipif(not __import__("hspace_studio.engine.model", fromlist=["x"]).DEFAULT_MODEL_DIR.is_dir(),
                    reason="default model not trained yet")
def test_default_model_samples_finite_images_at_few_steps():
    m = load_model("default", device="cpu")
    for steps in (4, 5, 6):
        trajs = sample(m, [100_000, 100_001], steps=steps, eta=1.0, keep_chain=False)
        assert all(torch.isfinite(t.x_0).all() for t in trajs), steps


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("alpha_to_one", [True, False])
def test_sampling_equals_ddim_pipeline_built_from_the_folders_own_config(tmp_path, alpha_to_one, eta):
    """The engine follows the checkpoint's ``set_alpha_to_one`` (diffusers' DDIM default is
    true): the pipeline here is built from the folder's config, not from the engine's."""
    from diffusers import DDIMScheduler, UNet2DModel

    from tests.tiny_models import tiny_unet

    tiny_unet("a").save_pretrained(tmp_path / "unet")
    DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=alpha_to_one,
                  steps_offset=1).save_pretrained(tmp_path / "scheduler")
    model = load_model(str(tmp_path), device="cpu")
    trajs = sample(model, SEEDS, steps=8, eta=eta, batch_size=len(SEEDS))
    mine = torch.stack([t.x_0 for t in trajs])
    pipe = DDIMPipeline(unet=UNet2DModel.from_pretrained(tmp_path / "unet"),
                        scheduler=DDIMScheduler.from_pretrained(tmp_path / "scheduler"))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=len(SEEDS), generator=[torch.Generator().manual_seed(s) for s in SEEDS],
               eta=eta, num_inference_steps=8, output_type="np").images
    ref = torch.from_numpy(out).permute(0, 3, 1, 2)
    assert (((mine / 2 + 0.5).clamp(0, 1)) - ref).abs().max().item() < 1e-5
    # and an edit-friendly inversion of the result replays exactly on this schedule
    from hspace_studio.engine.inversion import invert

    inv = invert(model, trajs[0].x_0.clamp(-1, 1), steps=8, eta=1.0)
    assert inv.max_error < 1e-4


def test_an_edit_from_a_trajectory_file_costs_one_chain(tiny_model, tmp_path):
    """Without a cached chain, an edit runs the unedited steps before its window once and the
    edited ones once: T network calls in all, and the image of an edit from the cache."""
    from hspace_studio.engine import Trajectory

    t = sample(tiny_model, [4], steps=8, eta=1.0)[0]
    t.save(tmp_path / "t.safetensors")
    g = torch.Generator().manual_seed(1)
    spec = EditSpec(torch.randn(t.hs.shape, generator=g) * t.hs.std(), 1.5, (t.timesteps[3].item(), 0))
    cached = edit(tiny_model, t, [spec])
    loaded = Trajectory.load(tmp_path / "t.safetensors")
    assert loaded.xs is None
    calls = []
    hook = tiny_model.net.register_forward_hook(lambda *a: calls.append(1))
    try:
        fresh = edit(tiny_model, loaded, [spec])
    finally:
        hook.remove()
    assert len(calls) == 8 and (fresh - cached).abs().max() < 1e-5
    calls.clear()
    hook = tiny_model.net.register_forward_hook(lambda *a: calls.append(1))
    try:  # an edit at every step needs no prefix at all
        edit(tiny_model, Trajectory.load(tmp_path / "t.safetensors"), [EditSpec(spec.delta, 1.0)])
    finally:
        hook.remove()
    assert len(calls) == 8


def test_a_trajectory_from_before_set_alpha_to_one_is_refused_where_it_would_not_replay(tiny_model, tmp_path):
    """A file saved as format 1 (every chain ended at alpha-bar_0) is refused, with a clear
    error, by a model whose scheduler ends at alpha-bar 1; format 2 files replay."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from hspace_studio.core.errors import ModelMismatchError
    from hspace_studio.engine import Trajectory

    t = sample(tiny_model, [2], steps=4, eta=1.0)[0]
    t.save(tmp_path / "new.safetensors")
    with safe_open(str(tmp_path / "new.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["format"] == "2"
    save_file(tensors, str(tmp_path / "old.safetensors"), {**meta, "format": "1"})
    assert tiny_model.scheduler.config.set_alpha_to_one  # the tiny model's config names none: true
    assert torch.equal(decode(tiny_model, Trajectory.load(tmp_path / "new.safetensors")).x_0, t.x_0)
    old = Trajectory.load(tmp_path / "old.safetensors")
    assert old.schedule == 1
    with pytest.raises(ModelMismatchError, match="older hspace-studio"):
        edit(tiny_model, old, [EditSpec(torch.zeros_like(old.hs))])
