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
