"""GroupNorm's short JVP/VJP equal torch's own derivatives (and finite differences)."""
import torch
import torch.nn.functional as F

from hspace_studio.engine.group_norm_ad import fast_group_norm_ad, group_norm_ad


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(8, generator=g, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    V = torch.randn(3, *x.shape, generator=g, dtype=torch.float64)
    return x, w, b, V


def test_values_jvp_and_vjp_equal_torch_under_vmap():
    x, w, b, V = _data()
    ref = lambda x: F.group_norm(x, 4, w, b, 1e-5)  # noqa: E731
    ours = lambda x: group_norm_ad(x, 4, w, b, 1e-5)  # noqa: E731
    assert torch.allclose(ours(x), ref(x), atol=1e-12)
    jv = lambda f: torch.func.vmap(lambda v: torch.func.jvp(f, (x,), (v,))[1])(V)  # noqa: E731
    assert torch.allclose(jv(ours), jv(ref), atol=1e-12)
    g_ref, g_ours = torch.func.vjp(ref, x)[1], torch.func.vjp(ours, x)[1]
    assert torch.allclose(torch.func.vmap(lambda u: g_ours(u)[0])(V), torch.func.vmap(lambda u: g_ref(u)[0])(V),
                          atol=1e-12)


def test_gradients_of_input_weight_and_bias_against_finite_differences():
    x, w, b, _ = _data(1)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: group_norm_ad(x, 4, w, b), args)
    assert torch.autograd.gradcheck(lambda x, w, b: group_norm_ad(x, 4, w, b), args, check_forward_ad=True,
                                    check_backward_ad=False, check_undefined_grad=False, check_batched_grad=False)


def test_the_context_routes_group_norm_modules_and_leaves_them_alone():
    x, _, _, V = _data(2)
    m = torch.nn.GroupNorm(4, 8).double()
    with torch.no_grad():
        m.weight.normal_()
    plain = torch.func.jvp(m, (x,), (V[0],))[1]
    calls = []
    with fast_group_norm_ad():
        out = torch.func.jvp(lambda x: m(x), (x,), (V[0],))[1]
        calls.append(type(m(x).grad_fn).__name__ if m(x).grad_fn is not None else None)
    assert torch.allclose(out, plain, atol=1e-12)
    assert calls == ["GroupNormADBackward"]
    assert m(x).grad_fn is None or "GroupNormAD" not in type(m(x).grad_fn).__name__
