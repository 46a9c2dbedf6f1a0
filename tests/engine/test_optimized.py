"""Classifier-optimised directions: the differentiable chain is the engine's edit, its
gradient is the objective's, and fitting lowers the objective on a tiny model."""
import pytest
import torch

from hspace_studio.core.errors import Cancelled
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.annotate import CallableClassifier
from hspace_studio.engine.discover.optimized import _edited_x0, objective, optimized_direction, region_cells
from hspace_studio.engine.sampler import EditSpec, Region, edit_batch

STEPS = 3


@pytest.fixture(scope="module")
def model_b(tiny_model_b_dir):
    return load_model(str(tiny_model_b_dir), device="cpu")


def pixels_of(model, trajs):
    with torch.no_grad():
        return model.to_pixels(torch.stack([t.x_0 for t in trajs]))


def pixel_classifier(images):
    """Two probability scores that are smooth functions of the pixels, centred on ``images``:
    'bright' (mean pixel) and 'red' (red minus blue)."""
    x = images.clamp(-1, 1)
    b, r = x.mean((1, 2, 3)), x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))

    def fn(img):
        return torch.sigmoid(torch.stack([(img.mean((1, 2, 3)) - b.median()) / b.std() * 4,
                                          (img[:, 0].mean((1, 2)) - img[:, 2].mean((1, 2)) - r.median())
                                          / r.std() * 4], 1))

    return CallableClassifier(fn, ["bright", "red"])


@pytest.mark.parametrize("which,eta", [("a", 1.0), ("a", 0.0), ("b", 1.0)])
def test_chain_is_the_engines_edit(which, eta, tiny_model, model_b):
    model = tiny_model if which == "a" else model_b
    trajs = sample(model, [0, 1, 2], steps=STEPS, eta=eta)
    g = torch.Generator().manual_seed(1)
    D = torch.randn(trajs[0].hs.shape, generator=g) * trajs[0].hs.pow(2).mean().sqrt()
    signs = torch.tensor([1.0, -1.0, 0.5])
    with torch.no_grad():
        x = _edited_x0(model, trajs, signs, D)
        zero = _edited_x0(model, trajs, signs, torch.zeros_like(D))
    ref = torch.stack([edit_batch(model, t, [[EditSpec(D, float(s))]]).x_0[0] for t, s in zip(trajs, signs)])
    tol = 1e-6 * max(1.0, float(ref.abs().max()))  # float error of another batch layout
    assert (x - ref).abs().max() < tol
    assert (zero - torch.stack([t.x_0 for t in trajs])).abs().max() < tol
    assert (x - zero).abs().max() > 1e-3  # the edit does something


@pytest.mark.parametrize("still", [0.0, 50.0])
def test_gradient_matches_finite_differences(model_b, still):
    model = model_b
    trajs = sample(model, [3, 4], steps=STEPS, eta=1.0)
    clf = pixel_classifier(pixels_of(model, sample(model, list(range(8)), steps=STEPS, eta=1.0)))
    with torch.no_grad():
        p0 = clf.differentiable_scores(pixels_of(model, trajs))
    signs = torch.where(p0[:, 0] < 0.5, 1.0, -1.0)
    g = torch.Generator().manual_seed(2)
    rms = float(trajs[0].hs.pow(2).mean().sqrt())
    D = (torch.randn(trajs[0].hs.shape, generator=g) * rms).requires_grad_(True)
    V = torch.randn(trajs[0].hs.shape, generator=g) * rms
    loss, stats = objective(model, clf, trajs, signs, p0, D, 0, keep=30.0, margin=2.0, still=still)
    moved = (pixels_of(model, trajs) - model.to_pixels(_edited_x0(model, trajs, signs, D.detach())))
    assert stats["moved"] == pytest.approx(float(moved.pow(2).flatten(1).mean(1).sum()), rel=1e-5)
    plain, _ = objective(model, clf, trajs, signs, p0, D.detach(), 0, keep=30.0, margin=2.0)
    assert float(loss.detach() - plain) == pytest.approx(still * stats["moved"], rel=1e-4, abs=1e-6)
    # a free attribute leaves the keep term: with 'red' free, the loss is the target's alone
    free, free_stats = objective(model, clf, trajs, signs, p0, D.detach(), 0, keep=30.0, margin=2.0, free=[1])
    assert float(free) == pytest.approx(free_stats["target"], rel=1e-6)
    assert float(plain) > free_stats["target"] + 1e-3 and free_stats["off_target"] == pytest.approx(stats["off_target"])
    (grad,) = torch.autograd.grad(loss, D)
    eps = 1e-2
    with torch.no_grad():
        up, _ = objective(model, clf, trajs, signs, p0, D + eps * V, 0, 30.0, 2.0, still=still)
        down, _ = objective(model, clf, trajs, signs, p0, D - eps * V, 0, 30.0, 2.0, still=still)
    fd = (up - down) / (2 * eps)
    an = (grad * V).sum()
    assert abs(float(fd)) > 1e-4
    assert abs(float(an - fd)) <= 0.02 * abs(float(fd))


def test_gradient_reaches_the_direction_through_a_latent_decoder(latent_model_dir):
    """Latent models: the objective's gradient goes through the VAE decoder (straight
    through the VQ quantizer) to D; a decoder run without a graph would cut it."""
    model = load_model(str(latent_model_dir), device="cpu")
    trajs = sample(model, [3, 4], steps=STEPS, eta=1.0)
    x0 = torch.stack([t.x_0 for t in trajs]).requires_grad_(True)
    assert not model.to_pixels(x0).requires_grad and model.to_pixels(x0, grad=True).requires_grad
    clf = pixel_classifier(pixels_of(model, sample(model, list(range(8)), steps=STEPS, eta=1.0)))
    with torch.no_grad():
        p0 = clf.differentiable_scores(pixels_of(model, trajs))
    D = torch.zeros(trajs[0].hs.shape, requires_grad=True)
    loss, _ = objective(model, clf, trajs, torch.tensor([1.0, -1.0]), p0, D, 0, keep=30.0, margin=2.0)
    (grad,) = torch.autograd.grad(loss, D)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


def test_fitting_lowers_the_objective_and_records_its_recipe(model_b):
    seeds = list(range(8))
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, seeds, steps=STEPS, eta=1.0)))
    seen = []
    before = [p.requires_grad for p in model_b.net.parameters()]
    res = optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, eta=1.0, iters=6, lr=3.0,
                              batch=4, progress=lambda d, t, m: seen.append((d, t)))
    h = res.history
    assert len(h) == 6 and h[-1]["loss"] < 0.95 * h[0]["loss"]
    assert h[0]["flipped"] == 0.0  # D starts at zero
    ds = res.directions
    assert ds.method == "supervised" and ds.params["source"] == "optimized"
    assert tuple(ds.delta_h.shape) == (1, STEPS, *sample(model_b, [0], steps=STEPS)[0].hs.shape[1:])
    assert ds.params["seeds"] == {"start": 0, "count": 8} and ds.params["iterations"] == 6
    assert ds.params["batch"] == 4 and ds.params["samples_seen"] == 24
    assert ds.params["score_change"] > 0
    assert seen[-1][0] == seen[-1][1]  # progress reaches its total
    assert [p.requires_grad for p in model_b.net.parameters()] == before  # weights left as they were


def test_a_falling_learning_rate_settles_the_last_steps(model_b):
    """With ``lr_end`` the step falls along a cosine to that fraction of ``lr``: a two-step fit
    whose second step is at 1/1000 of the rate ends where the one-step fit ended (Adam's
    first steps are about the rate in size, per element), while at a constant rate the second
    step moves the change by about the rate again."""
    seeds = list(range(8))
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, seeds, steps=STEPS, eta=1.0)))
    rms = float(sample(model_b, seeds[:4], steps=STEPS, eta=1.0)[0].hs.pow(2).mean().sqrt())
    kw = dict(steps=STEPS, eta=1.0, lr=0.5, batch=4)
    one = optimized_direction(model_b, clf, "bright", seeds, iters=1, **kw).directions
    settled = optimized_direction(model_b, clf, "bright", seeds, iters=2, lr_end=1e-3, **kw).directions
    constant = optimized_direction(model_b, clf, "bright", seeds, iters=2, **kw).directions
    step = 0.5 * rms
    assert float(one.delta_h.abs().max()) == pytest.approx(step, rel=0.05)  # the first step: the rate
    assert float((settled.delta_h - one.delta_h).abs().max()) < 2e-3 * step
    assert float((constant.delta_h - one.delta_h).abs().max()) > 0.5 * step
    assert settled.params["lr_end"] == 1e-3 and constant.params["lr_end"] == 1.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="learning-rate fraction"):
            optimized_direction(model_b, clf, "bright", seeds, iters=1, lr_end=bad, **kw)


def test_window_and_shared_change(model_b):
    """A window leaves the steps outside it unedited (the chain is the engine's windowed
    edit), and a shared fit is one change of h, the same at every step of its window."""
    trajs = sample(model_b, [0, 1], steps=STEPS, eta=1.0)
    ts = trajs[0].timesteps
    window = (int(ts[1]), int(ts[-1]))  # every step but the first
    active = (ts >= window[1]) & (ts <= window[0])
    D = torch.randn(trajs[0].hs.shape, generator=torch.Generator().manual_seed(2))
    D = D * trajs[0].hs.pow(2).mean().sqrt()
    with torch.no_grad():
        x = _edited_x0(model_b, trajs, torch.ones(2), D, active)
    ref = torch.stack([edit_batch(model_b, t, [[EditSpec(D, 1.0, window)]]).x_0[0] for t in trajs])
    assert (x - ref).abs().max() < 1e-6 * max(1.0, float(ref.abs().max()))

    seeds = list(range(8))
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, seeds, steps=STEPS, eta=1.0)))
    res = optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, eta=1.0, iters=4, lr=3.0,
                              batch=4, window=window, shared=True)
    d = res.directions.delta_h[0]
    assert d[0].abs().max() == 0  # outside the window
    assert d[1].abs().max() > 0 and torch.equal(d[1], d[2])  # one change at every step inside
    assert res.directions.params["window"] == list(window) and res.directions.params["shared"]
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    res = optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, eta=1.0, iters=2, lr=3.0,
                              batch=4, per_channel=True)
    d = res.directions.delta_h[0]
    assert d.abs().max() > 0 and torch.equal(d, d[..., :1, :1].expand_as(d))  # the same at every position
    assert not torch.equal(d[0], d[1]) and res.directions.params["per_channel"]
    with pytest.raises(ValueError, match="no step"):
        optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, iters=1, window=(1001, 1002))


def test_a_part_term_adds_to_the_objective_and_steers_the_fit(model_b):
    """``part_term`` adds ``part_weight`` times its per-sample sum on the edited pixels, and a
    fit with a heavy term on the left half's change brightens the image with less of it there."""
    seeds = list(range(8))
    trajs = sample(model_b, seeds[:2], steps=STEPS, eta=1.0)
    before = pixels_of(model_b, trajs)
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, seeds, steps=STEPS, eta=1.0)))
    p0 = clf.differentiable_scores(before).float()
    signs = torch.tensor([1.0, -1.0])
    D = torch.randn(trajs[0].hs.shape, generator=torch.Generator().manual_seed(4)) * trajs[0].hs.std()

    def left(after, unedited, s):  # the left half's mean squared change, per sample
        w = after.shape[-1] // 2
        return (after[..., :w] - unedited[..., :w]).pow(2).mean((1, 2, 3)) * 100

    plain, stats = objective(model_b, clf, trajs, signs, p0, D, 0, keep=30.0, margin=2.0)
    loss, pstats = objective(model_b, clf, trajs, signs, p0, D, 0, keep=30.0, margin=2.0,
                             part_term=left, part_weight=2.5)
    with torch.no_grad():
        after = model_b.to_pixels(_edited_x0(model_b, trajs, signs, D))
    expected = float(left(after, before, signs).sum())
    assert expected > 0 and "part" not in stats and pstats["part"] == pytest.approx(expected, rel=1e-5)
    assert float(loss - plain) == pytest.approx(2.5 * expected, rel=1e-4)

    def left_share(res):  # the left half's share of the squared pixel change
        d = res.directions.delta_h[0]
        out = [edit_batch(model_b, t, [[EditSpec(d, 1.0)]]).x_0[0] for t in sample(model_b, [20, 21, 22], steps=STEPS)]
        ref = [t.x_0 for t in sample(model_b, [20, 21, 22], steps=STEPS)]
        with torch.no_grad():
            a, b = model_b.to_pixels(torch.stack(out)), model_b.to_pixels(torch.stack(ref))
        return float(left(a, b, None).mean()) / 2 / float((a - b).pow(2).mean() * 100)

    kw = dict(steps=STEPS, eta=1.0, iters=6, lr=3.0, batch=4)
    free = optimized_direction(model_b, clf, "bright", seeds, **kw)
    held = optimized_direction(model_b, clf, "bright", seeds, part_term=left, part_weight=50.0, part_name="left", **kw)
    assert held.directions.params["part_term"] == {"name": "left", "weight": 50.0}
    assert free.directions.params["part_term"] is None and "part" in held.history[-1]
    # (ignored, the term would leave the fit as it is: same seeds, same steps)
    assert left_share(held) < 0.85 * left_share(free)


def test_skip_leaves_out_the_samples_read_with_an_attribute(model_b):
    """``skip`` fits on the samples the classifier reads without the named attribute only:
    the same change as a fit given just those seeds."""
    seeds = list(range(10))
    trajs = sample(model_b, seeds, steps=STEPS, eta=1.0)
    clf = pixel_classifier(pixels_of(model_b, trajs))
    with torch.no_grad():
        red = clf.differentiable_scores(pixels_of(model_b, trajs))[:, 1] >= clf.threshold
    rest = [s for s, r in zip(seeds, red.tolist()) if not r]
    assert 0 < len(rest) < len(seeds)
    kw = dict(steps=STEPS, eta=1.0, iters=3, lr=3.0)
    skipped = optimized_direction(model_b, clf, "bright", seeds, batch=len(seeds), skip=["red"], **kw)
    subset = optimized_direction(model_b, clf, "bright", rest, batch=len(rest), **kw)
    a, b = skipped.directions.delta_h, subset.directions.delta_h
    assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max()) and float(b.abs().max()) > 0
    assert skipped.directions.params["skip"] == ["red"] and subset.directions.params["skip"] == []
    with pytest.raises(ValueError, match="attribute it fits"):
        optimized_direction(model_b, clf, "bright", seeds, skip=["bright"], **kw)
    only_red = [s for s, r in zip(seeds, red.tolist()) if r]
    with pytest.raises(ValueError, match="nothing left to fit on"):
        optimized_direction(model_b, clf, "bright", only_red, batch=len(only_red), skip=["red"], **kw)


def test_region_limits_the_change_to_the_positions_it_meets(model_b):
    """h positions whose part of the image meets the mask may change; the rest stay zero."""
    seeds = list(range(8))
    trajs = sample(model_b, seeds, steps=STEPS, eta=1.0)
    clf = pixel_classifier(pixels_of(model_b, trajs))
    H, W = trajs[0].x_0.shape[-2:]
    hh, hw = trajs[0].hs.shape[-2:]
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[0, W - 1] = True  # one pixel in the top right corner: only h's top right position
    expected = torch.zeros(hh, hw)
    expected[0, hw - 1] = 1
    assert torch.equal(region_cells(mask, (hh, hw)), expected)
    assert torch.equal(region_cells(mask.numpy(), (H, W)), mask.float())  # same grid: the mask itself
    res = optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, eta=1.0, iters=3, lr=3.0,
                              batch=4, region=mask)
    d = res.directions.delta_h[0]
    assert d[..., 0, hw - 1].abs().min() > 0  # every step and channel there
    d[..., 0, hw - 1] = 0
    assert d.abs().max() == 0
    assert res.directions.params["region_cells"] == 1
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    with pytest.raises(ValueError, match="empty"):
        optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, iters=1, region=torch.zeros(H, W))
    with pytest.raises(ValueError, match="one mask"):
        region_cells(torch.ones(1, H, W), (hh, hw))


@pytest.mark.parametrize("free_steps", [0, 1])
def test_kept_in_chain_is_the_engines_region_edit(model_b, free_steps):
    """With ``keep_in`` the fit decodes its edits as the engine's region edit does: outside
    the region every blended step returns to the unedited chain."""
    trajs = sample(model_b, [0, 1], steps=STEPS, eta=1.0)
    H, W = trajs[0].x_0.shape[-2:]
    w = torch.zeros(H, W)
    w[: H // 2, : W // 2] = 1.0
    w[H // 2, : W // 2] = 0.5  # a soft edge
    region = Region(w, free_steps)
    D = torch.randn(trajs[0].hs.shape, generator=torch.Generator().manual_seed(3))
    D = D * trajs[0].hs.pow(2).mean().sqrt()
    signs = torch.tensor([1.0, -1.0])
    with torch.no_grad():
        x = _edited_x0(model_b, trajs, signs, D, keep_in=region)
    ref = torch.stack([edit_batch(model_b, t, [[EditSpec(D, float(s))]], region=region).x_0[0]
                       for t, s in zip(trajs, signs)])
    assert (x - ref).abs().max() < 1e-6 * max(1.0, float(ref.abs().max()))
    outside = (w == 0)
    moved = (x - torch.stack([t.x_0 for t in trajs])).abs()
    assert moved[..., ~outside].max() > 1e-3
    if free_steps == 0:
        assert moved[..., outside].max() == 0  # blended at every step, the last too
    else:
        assert moved[..., outside].max() > 0  # the free last step spreads the edit
    with pytest.raises(ValueError, match="chains"):
        _edited_x0(model_b, sample(model_b, [0], steps=STEPS, keep_chain=False), signs[:1], D, keep_in=region)

    seeds = list(range(8))
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, seeds, steps=STEPS, eta=1.0)))
    res = optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, eta=1.0, iters=3, lr=3.0,
                              batch=4, keep_in=region)
    assert res.directions.params["kept_in"] == {"pixels": int((w > 0).sum()), "free_steps": free_steps}
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_a_region_per_sample_keeps_each_edit_in_its_own(model_b):
    """Weights (N, 1, h, w) keep each chain's edit inside its own region (the engine's region
    edit with that sample's region), and a fit whose ``keep_in`` is a function of the batch's
    pixels decodes every batch with the regions it returns."""
    trajs = sample(model_b, [0, 1], steps=STEPS, eta=1.0)
    H, W = trajs[0].x_0.shape[-2:]
    masks = torch.zeros(2, 1, H, W)
    masks[0, 0, : H // 2] = 1.0  # the top half for the first sample, the left half for the second
    masks[1, 0, :, : W // 2] = 1.0
    D = torch.randn(trajs[0].hs.shape, generator=torch.Generator().manual_seed(4))
    D = D * trajs[0].hs.pow(2).mean().sqrt()
    signs = torch.tensor([1.0, 1.0])
    with torch.no_grad():
        x = _edited_x0(model_b, trajs, signs, D, keep_in=Region(masks, 0))
    for i, t in enumerate(trajs):
        ref = edit_batch(model_b, t, [[EditSpec(D, 1.0)]], region=Region(masks[i, 0], 0)).x_0[0]
        assert (x[i] - ref).abs().max() < 1e-6 * max(1.0, float(ref.abs().max()))
        moved = (x[i] - t.x_0).abs()
        assert moved[..., masks[i, 0] == 0].max() == 0 and moved[..., masks[i, 0] > 0].max() > 1e-3

    seeds = list(range(8))
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, seeds, steps=STEPS, eta=1.0)))
    seen = []

    def own(pixels):  # each sample's brighter half
        seen.append(pixels.shape[0])
        top = pixels[:, :, : H // 2].mean((1, 2, 3)) > pixels[:, :, H // 2:].mean((1, 2, 3))
        w = torch.zeros(pixels.shape[0], 1, H, W)
        w[top, :, : H // 2] = 1.0
        w[~top, :, H // 2:] = 1.0
        return Region(w, 1)

    res = optimized_direction(model_b, clf, "bright", seeds, steps=STEPS, eta=1.0, iters=3, lr=3.0,
                              batch=4, keep_in=own)
    assert seen == [4, 4, 4]  # one region per sample of each batch
    assert res.directions.params["kept_in"] == {"per_sample": True, "free_steps": 1}
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_cancel_stops_the_fit(model_b):
    token = CancelToken()
    model_b.net.requires_grad_(True)
    clf = pixel_classifier(pixels_of(model_b, sample(model_b, list(range(4)), steps=STEPS, eta=1.0)))

    def progress(d, t, m):
        if d > 2 * STEPS:
            token.cancel()

    with pytest.raises(Cancelled):
        optimized_direction(model_b, clf, "bright", list(range(4)), steps=STEPS, iters=5, batch=2,
                            progress=progress, cancel=token)
    assert all(p.requires_grad for p in model_b.net.parameters())  # given back after the cancel
    model_b.net.requires_grad_(False)


def test_bad_arguments(model_b):
    clf = CallableClassifier(lambda x: torch.sigmoid(x.mean((1, 2, 3)))[:, None], ["bright"])
    with pytest.raises(ValueError, match="unknown attribute"):
        optimized_direction(model_b, clf, "smiling", [0], steps=STEPS, iters=1)
    with pytest.raises(ValueError, match="at least one"):
        optimized_direction(model_b, clf, "bright", [], steps=STEPS, iters=1)


def test_differentiable_scores_are_checked_like_scores():
    from hspace_studio.engine.annotate import ClassifierError

    img = torch.zeros(2, 3, 8, 8, requires_grad=True)
    good = CallableClassifier(lambda x: torch.sigmoid(x.mean((1, 2, 3)))[:, None], ["bright"])
    s = good.differentiable_scores(img)
    assert torch.equal(s.detach(), good.scores(img))
    s.sum().backward()
    assert img.grad is not None and float(img.grad.abs().sum()) > 0  # the graph reaches the images
    for fn, what in ((lambda x: x.mean((1, 2, 3))[:, None] * float("nan"), "NaN"),
                     (lambda x: torch.zeros(x.shape[0], 2), "shape")):
        bad = CallableClassifier(fn, ["bright"])
        for call in (bad.scores, bad.differentiable_scores):
            with pytest.raises(ClassifierError, match=what):
                call(img)
