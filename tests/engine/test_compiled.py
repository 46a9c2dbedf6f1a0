"""engine.compiled: a compiled model gives the eager model's images; grad still flows eagerly."""
import pytest
import torch

from hspace_studio.engine import load_model, sample
from hspace_studio.engine.compiled import accelerate, accelerated, compiler_available, restore
from hspace_studio.engine.denoiser import forward_ad_safe
from hspace_studio.engine.discover.jacobian import jacobian_directions
from hspace_studio.engine.sampler import EditSpec, edit, strip

pytestmark = pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")


@pytest.fixture(scope="module")
def pair(tiny_model_8_dir):
    """The same 8x8 pixel model loaded twice: one eager, one accelerated."""
    eager = load_model(str(tiny_model_8_dir), device="cpu")
    fast = load_model(str(tiny_model_8_dir), device="cpu")
    accelerate(fast, compile=True)
    return eager, fast


def _direction(traj, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(traj.hs.shape, generator=g) * 0.3


def test_compiled_edits_and_strips_equal_the_eager_model(pair):
    eager, fast = pair
    assert accelerated(fast) and not accelerated(eager)
    traj = sample(eager, [3], steps=4, eta=1.0)[0]
    traj_fast = sample(fast, [3], steps=4, eta=1.0)[0]
    assert torch.allclose(traj_fast.x_0, traj.x_0, atol=1e-5)
    assert torch.allclose(traj_fast.hs, traj.hs, atol=1e-5)
    d = _direction(traj)
    for scale in (-2.0, 0.5, 3.0):  # new scales reuse the built code; each equals the eager edit
        want = edit(eager, traj, [EditSpec(d, scale)])
        got = edit(fast, traj, [EditSpec(d, scale)])
        assert not torch.equal(want, traj.x_0)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_a_new_direction_or_scale_reuses_the_built_code(pair):
    """The edit's tensors are inputs of the compiled code, not constants built into it (the
    weights are): a new direction and new scales neither build again nor give stale images."""
    from torch._dynamo.utils import counters

    eager, fast = pair
    traj = sample(eager, [4], steps=3, eta=1.0)[0]
    edit(fast, traj, [EditSpec(_direction(traj, 1), 1.0)])
    built = dict(counters["stats"])
    for seed, scale in ((2, 0.7), (3, -1.5)):
        d = _direction(traj, seed)
        got = edit(fast, traj, [EditSpec(d, scale)])
        assert torch.allclose(got, edit(eager, traj, [EditSpec(d, scale)]), atol=1e-5)
    assert dict(counters["stats"]) == built


def test_after_warm_up_a_slider_edit_builds_nothing(tiny_model_8_dir):
    """warm_up builds on a one-step chain; an edit of a longer chain (its per-step deltas are
    views with other strides) and a new sample must reuse that code. A fresh model, as in
    the app: once code has been built again for new strides, dynamo keeps strides free and
    the test could no longer see it."""
    from torch._dynamo.utils import counters

    from hspace_studio.engine.compiled import warm_up

    fast = load_model(str(tiny_model_8_dir), device="cpu")
    accelerate(fast, compile=True)
    warm_up(fast, strip_size=1)
    built = dict(counters["stats"])
    traj = sample(fast, [6], steps=7, eta=1.0)[0]
    edit(fast, traj, [EditSpec(_direction(traj), 1.5)])
    assert dict(counters["stats"]) == built


@pytest.mark.slow
def test_a_batch_of_another_size_builds_once_more_and_agrees(pair):
    eager, fast = pair
    traj = sample(eager, [3], steps=4, eta=1.0)[0]
    d = _direction(traj)
    want = strip(eager, traj, d, [-1.0, 0.0, 1.0])
    got = strip(fast, traj, d, [-1.0, 0.0, 1.0])
    assert torch.allclose(got, want, atol=1e-5)


def test_grad_runs_the_eager_forward(pair):
    """With grad on (the Jacobian's autograd and forward-mode AD), the eager forward runs:
    d eps / d h and its product with a vector equal the eager model's."""
    eager, fast = pair
    traj = sample(eager, [5], steps=2, eta=1.0)[0]
    x, t, h0 = traj.xs[0][None], traj.timesteps[0], traj.hs[0][None]
    v = _direction(traj)[0][None]

    def eps(model):
        def f(h):
            with model.denoiser.hook(traj.h_space, edit=lambda _h: h):
                return model.denoiser(x, t)
        return f

    for model in (eager, fast):
        h = h0.clone().requires_grad_(True)
        (eps(model)(h) * x).sum().backward()
        model.grad = h.grad
    assert torch.allclose(fast.grad, eager.grad, atol=1e-6)
    with forward_ad_safe(eager.net):
        _, jv_eager = torch.func.jvp(eps(eager), (h0,), (v,))
    with forward_ad_safe(fast.net):
        _, jv_fast = torch.func.jvp(eps(fast), (h0,), (v,))
    assert torch.allclose(jv_fast, jv_eager, atol=1e-6)


def test_restore_gives_the_eager_forward_back(tiny_model_8_dir):
    m = load_model(str(tiny_model_8_dir), device="cpu")
    before = m.net.forward
    accelerate(m, compile=False, bf16=True)
    assert accelerated(m) and m.info["accelerated"] == {"compile": False, "bf16": True}
    restore(m)
    assert not accelerated(m) and "accelerated" not in m.info
    assert m.net.forward == before


def test_jacobian_directions_of_a_compiled_model(pair):
    """The Jacobian's upstream pass (hooks, then stubbed blocks, forward-mode AD) runs eagerly
    where it must: its directions equal the eager model's."""
    eager, fast = pair
    traj = sample(eager, [5], steps=2, eta=1.0)[0]
    a = jacobian_directions(eager, traj, k=1, steps_subset=[1])
    b = jacobian_directions(fast, traj, k=1, steps_subset=[1])
    assert torch.allclose(a.singular_values[0], b.singular_values[0], rtol=1e-4)
    cos = (a.directions.delta_h.flatten() * b.directions.delta_h.flatten()).sum().abs()
    assert cos > 0.9999, cos


def test_jacobian_of_a_bf16_model_runs_in_float32(tiny_model_8_dir):
    """bf16 applies to grad-free, unhooked calls only: the Jacobian (a hooked upstream pass,
    then stubs and AD) runs in float32 and gives the plain model's directions."""
    plain = load_model(str(tiny_model_8_dir), device="cpu")
    fast = load_model(str(tiny_model_8_dir), device="cpu")
    accelerate(fast, compile=False, bf16=True)
    traj = sample(plain, [5], steps=2, eta=1.0)[0]
    a = jacobian_directions(plain, traj, k=1, steps_subset=[1])
    b = jacobian_directions(fast, traj, k=1, steps_subset=[1])
    assert torch.equal(a.singular_values, b.singular_values)
    assert torch.equal(a.directions.delta_h, b.directions.delta_h)


def test_each_model_runs_its_own_weights(pair, tiny_model_8_dir):
    """Frozen code has the weights built in and does not check them on each call: a second
    model of the same architecture, and a model whose weights changed before ``accelerate``
    was called again, still get images from their own weights."""
    eager, fast = pair
    other = load_model(str(tiny_model_8_dir), device="cpu")
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in other.net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    want = sample(other, [2], steps=2, eta=0.0)[0].x_0
    assert not torch.allclose(sample(eager, [2], steps=2, eta=0.0)[0].x_0, want, atol=1e-3)
    sample(fast, [2], steps=2, eta=0.0)  # code built for the first model
    accelerate(other, compile=True)
    assert torch.allclose(sample(other, [2], steps=2, eta=0.0)[0].x_0, want, atol=1e-5)
    with torch.no_grad():
        for p in other.net.parameters():
            p.mul_(0.9)
    restore(other)
    changed = sample(other, [2], steps=2, eta=0.0)[0].x_0
    accelerate(other, compile=True)
    assert torch.allclose(sample(other, [2], steps=2, eta=0.0)[0].x_0, changed, atol=1e-5)
