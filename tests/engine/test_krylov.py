"""The block Krylov solver against dense SVDs: values, vectors and its accuracy guarantee."""
import math

import pytest
import torch

from hspace_studio.engine.discover.krylov import krylov_svd


def _matrix(values, rows=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = len(values)
    U = torch.linalg.qr(torch.randn(rows or d + 10, d, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    return (U * torch.as_tensor(values, dtype=torch.float64)) @ V.T


def _ops(A):
    return (lambda X: X.double() @ A.T), (lambda W: W.double() @ A)


def test_values_and_vectors_equal_a_dense_svd():
    A = _matrix(torch.linspace(3, 0.1, 30))
    r = krylov_svd(*_ops(A), 30, 4, block=3, tol=1e-10, max_iter=200)
    U, S, Vh = torch.linalg.svd(A)
    assert r.converged and r.stopped_by == "residual"
    assert torch.allclose(r.values, S[:4], rtol=1e-8)
    assert torch.allclose((r.vectors.T @ Vh[:4].T).abs().diagonal(), torch.ones(4, dtype=torch.float64),
                          atol=1e-8)


def test_fewer_products_than_subspace_iteration_on_a_flat_spectrum():
    values = torch.cat([torch.tensor([1.0, 0.99, 0.98]), torch.linspace(0.97, 0.01, 397)])
    A = _matrix(values, seed=1)
    r = krylov_svd(*_ops(A), 400, 3, block=4, tol=1e-6, max_iter=500, generator=torch.Generator().manual_seed(0))
    # plain subspace iteration converges by (s_4 / s_3)^2 ~ 0.98 per 4 products: ~ 2,700 products
    assert r.converged and r.products < 400
    S = torch.linalg.svdvals(A)
    assert torch.allclose(r.values, S[:3], rtol=1e-6)


@pytest.mark.parametrize("case", ["separated", "nearly equal", "equal beyond k"])
def test_the_angle_bound_holds_against_the_dense_svd(case):
    """The reported per-direction (or per-cluster) angle bounds are never below the true
    angles, at every iteration's stop (several tolerances), including a pair of nearly
    equal singular values whose single vectors are ill-defined."""
    top = {"separated": [2.0, 1.5, 1.2], "nearly equal": [2.0, 1.9999, 1.2],
           "equal beyond k": [2.0, 1.5, 1.20001, 1.2]}[case]
    values = torch.cat([torch.tensor(top), torch.linspace(1.0, 0.01, 200 - len(top))])
    A = _matrix(values, seed=2)
    _, S, Vh = torch.linalg.svd(A)
    V = Vh.T
    seen_cluster = False
    for tol in (1e-2, 1e-3, 1e-5, 1e-8):
        r = krylov_svd(*_ops(A), 200, 3, block=3, tol=tol, equal_rel=1e-3, max_iter=300,
                       generator=torch.Generator().manual_seed(3))
        assert r.converged
        for c in r.clusters:
            kept = [j for j in c if j < 3]
            true = V[:, list(c)]
            # the kept vectors lie in the cluster's true span to within the bound
            if len(c) == 1:
                j = c[0]
                v, u = r.vectors[:, j], V[:, j]
                sin = float((v - (v @ u) * u).norm())
            else:
                seen_cluster = True
                P = true @ true.T
                resid = r.vectors[:, kept] - P @ r.vectors[:, kept]
                sin = float(torch.linalg.matrix_norm(resid, ord=2))
            assert sin <= math.sin(r.angles[c[0]]) + 1e-9, (case, tol, c, sin, r.angles)
    assert seen_cluster == (case != "separated")
    if case == "nearly equal":
        assert "not determined" in r.accuracy_text()


def test_angle_rule_stops_earlier_than_a_tight_residual_and_keeps_its_promise():
    values = torch.cat([torch.tensor([3.0, 2.0, 1.0]), torch.linspace(0.9, 0.01, 297)])
    A = _matrix(values, seed=4)
    V = torch.linalg.svd(A)[2].T
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    by_angle = krylov_svd(*_ops(A), 300, 3, block=3, tol=1e-12, angle_tol=math.radians(0.5), generator=g())
    by_res = krylov_svd(*_ops(A), 300, 3, block=3, tol=1e-12, generator=g())
    assert by_angle.stopped_by == "angle" and by_angle.products < by_res.products
    cos = (by_angle.vectors.T @ V[:, :3]).abs().diagonal()
    assert float(cos.min()) >= math.cos(math.radians(0.5))


def test_zero_operator_warm_start_restarts_and_errors():
    A = _matrix(torch.linspace(3, 0.1, 30))
    zero = krylov_svd(*_ops(0 * A), 30, 3)
    assert torch.equal(zero.values, torch.zeros(3, dtype=torch.float64)) and zero.converged
    # a small memory cap forces thick restarts; the answer is the same
    r = krylov_svd(*_ops(A), 30, 2, block=2, tol=1e-9, max_basis=6, max_iter=500)
    assert r.converged and torch.allclose(r.values, torch.linalg.svdvals(A)[:2], rtol=1e-8)
    # warm start from the answer: converged at once
    again = krylov_svd(*_ops(A), 30, 2, block=2, tol=1e-8, init=r.basis)
    assert again.iterations == 1 and again.products == 4  # its k + 2 starting vectors
    with pytest.raises(ValueError):
        krylov_svd(*_ops(A), 3, 4)
    with pytest.raises(FloatingPointError):
        krylov_svd(lambda X: X * float("nan"), lambda W: W, 30, 2)
