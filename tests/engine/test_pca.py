"""PCA directions: agreement with scikit-learn, sigma units, signs, and bounded memory."""
import tracemalloc

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from hspace_studio.core.errors import Cancelled
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.directions import DirectionSet
from hspace_studio.engine.discover.pca import (CovarianceAccumulator, GramAccumulator,
                                               IncrementalAccumulator,
                                               align_component_signs, pca_directions, plan_pca)

STEPS = 3
N = 60
K = 4


@pytest.fixture(scope="module")
def model(tiny_model_8_dir):
    """A pixel model at 8x8: h is 32x4x4 (D = 512)."""
    return load_model(str(tiny_model_8_dir), device="cpu")


@pytest.fixture(scope="module")
def reference_h(model):
    """(N, T, D) float64: the h of the same seeds, sampled independently."""
    trajs = sample(model, list(range(N)), steps=STEPS, eta=1.0, batch_size=16, keep_chain=False)
    return torch.stack([t.hs for t in trajs]).reshape(N, STEPS, -1).double().numpy()


def _check(mine, ref_X, k=K, ratio=None):
    """mine: (K, D) directions at one sigma; ref_X: (N, D) data."""
    p = PCA(k, svd_solver="full").fit(ref_X)
    ang = subspace_angles(p.components_.T, mine.T)
    assert ang.max() < 1e-3, ang
    assert np.allclose(np.linalg.norm(mine, axis=1) ** 2, p.explained_variance_, rtol=1e-4)
    if ratio is not None:
        assert np.allclose(ratio, p.explained_variance_ratio_, atol=1e-4, rtol=0)
    for j in range(k):  # each direction is one component (not just the span)
        c = abs(np.dot(mine[j] / np.linalg.norm(mine[j]), p.components_[j]))
        assert c > 1 - 1e-6


@pytest.mark.parametrize("solver", ["gram", "covariance", "incremental"])
def test_per_step_matches_sklearn(model, reference_h, solver):
    res = pca_directions(model, N, components=K, steps=STEPS, eta=1.0, batch=16, solver=solver)
    ds = res.directions
    assert res.plan.solver == solver and ds.delta_h.shape == (K, STEPS, 32, 4, 4)
    vals = np.array(ds.values)
    assert vals.shape == (K, STEPS)
    for t in range(STEPS):
        _check(ds.delta_h[:, t].reshape(K, -1).double().numpy(), reference_h[:, t], ratio=vals[:, t])
    # signs are aligned: every step's vector points the way of the earlier ones
    for k in range(K):
        v = ds.delta_h[k].reshape(STEPS, -1)
        v = v / v.norm(dim=1, keepdim=True)
        for t in range(1, STEPS):
            assert float(v[t] @ v[:t].sum(0)) >= 0
    p = ds.params
    assert p["method"] == "pca" and p["samples"] == N and p["seeds"] == {"start": 0, "count": N}
    assert p["steps"] == STEPS and p["eta"] == 1.0 and p["mode"] == "per-step" and p["solver"] == solver


def test_global_matches_sklearn(model, reference_h, tmp_path):
    res = pca_directions(model, N, components=K, mode="global", steps=STEPS, batch=16)
    ds = res.directions
    mine = ds.delta_h.reshape(K, -1).double().numpy()
    ratio = np.array(ds.values)
    assert np.allclose(ratio, ratio[:, :1])  # one ratio per direction, repeated over T
    _check(mine, reference_h.reshape(N, -1), ratio=ratio[:, 0])
    ds.save(tmp_path / "g.safetensors")
    back = DirectionSet.load(tmp_path / "g.safetensors")
    assert back.method == "pca" and back.params["mode"] == "global" and back.labels[0].startswith("PC 0")


def _sample_h(model, n, steps):
    trajs = sample(model, list(range(n)), steps=steps, batch_size=64, keep_chain=False)
    return torch.stack([t.hs for t in trajs]).reshape(n, steps, -1).double().numpy()


def _traced_pca(model, n, **kw):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        res = pca_directions(model, n, **kw)
        return res, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_within_budget_as_n_grows(model):
    """Streaming, incremental solver: the accumulators' peak (numpy arrays, traced by
    tracemalloc) stays under the budget although all samples' h would not fit in it, and
    does not grow with N. The torch side (one sampling batch) is bounded by the batch size
    and counted in the plan's estimate, which also stays under the budget."""
    steps, budget_mb, D = 2, 2.0, 512
    peaks, results = {}, {}
    for n in (400, 1200):
        res, peaks[n] = _traced_pca(model, n, components=3, steps=steps, batch=32, memory_mb=budget_mb)
        results[n] = res
        assert res.plan.solver == "incremental" and res.plan.est_bytes <= budget_mb * 2**20
        assert peaks[n] < budget_mb * 2**20, (n, peaks[n])
    assert 1200 * steps * D * 4 > 2 * budget_mb * 2**20  # all h would need over twice the budget
    assert peaks[1200] < 1.1 * peaks[400]  # not growing with N
    # the streamed approximation (16 kept components here) captures nearly the optimal variance
    H = _sample_h(model, 400, steps)
    for t in range(steps):
        X = H[:, t] - H[:, t].mean(0)
        p = PCA(3, svd_solver="full").fit(H[:, t])
        mine = np.linalg.qr(results[400].directions.delta_h[:, t].reshape(3, -1).double().numpy().T)[0]
        best = np.linalg.norm(X @ p.components_.T) ** 2
        assert np.linalg.norm(X @ mine) ** 2 > 0.97 * best
        assert np.allclose(results[400].directions.values[0][t], p.explained_variance_ratio_[0], rtol=0.1)


def test_exact_pca_within_budget_for_n_that_does_not_fit(model):
    """Covariance solver: exact (matches scikit-learn on all the data) while the budget is
    smaller than the h of all N samples."""
    steps, budget_mb, n, D = 2, 9.0, 2400, 512
    assert n * steps * D * 4 > budget_mb * 2**20
    res, peak = _traced_pca(model, n, components=3, steps=steps, batch=32, memory_mb=budget_mb)
    assert res.plan.solver == "covariance" and res.plan.est_bytes <= budget_mb * 2**20
    assert peak < budget_mb * 2**20, peak
    H = _sample_h(model, n, steps)
    for t in range(steps):
        _check(res.directions.delta_h[:, t].reshape(3, -1).double().numpy(), H[:, t], k=3,
               ratio=np.array(res.directions.values)[:, t])


def test_plan_choice_and_errors():
    assert plan_pca(512, 3, 4, 100, 16, 64).solver == "gram"  # N <= D and the rows fit
    small = plan_pca(512, 3, 4, 1000, 16, 64)
    assert small.solver == "covariance"
    big = plan_pca(8192, 10, 8, 1000, 16, 256)
    assert big.solver == "incremental" and 8 <= big.kept <= 128 and big.est_bytes <= 256 * 2**20
    glob = plan_pca(8192, 10, 8, 1000, 16, 512, mode="global")
    assert glob.solver == "incremental" and glob.dim == 81920
    with pytest.raises(ValueError, match="does not fit"):
        plan_pca(8192, 10, 8, 1000, 16, 1)
    with pytest.raises(ValueError):
        plan_pca(512, 3, 200, 100, 16, 64)  # more components than samples
    with pytest.raises(ValueError):
        plan_pca(512, 3, 4, 100, 16, 64, mode="sideways")


def test_accumulators_against_numpy(monkeypatch):
    monkeypatch.setattr(GramAccumulator, "CHUNK_BYTES", 8 * 300 * 7)  # 7 columns per chunk
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)) @ np.diag(np.linspace(5, 0.1, 20)) + 100.0  # large offset
    cov = CovarianceAccumulator(20)
    inc = IncrementalAccumulator(20, 20, 25)
    gram = GramAccumulator(20)
    for b in range(0, 300, 37):
        for acc in (cov, inc, gram):
            acc.update(X[b:b + 37])
    p = PCA(5, svd_solver="full").fit(X)
    for acc, tol in ((cov, 1e-10), (inc, 1e-5), (gram, 1e-5)):  # the rows are kept in float32
        comps, ev, ratio, mean = acc.result(5)
        assert subspace_angles(p.components_.T, comps.T).max() < tol
        assert np.allclose(ev, p.explained_variance_, rtol=tol)
        assert np.allclose(ratio, p.explained_variance_ratio_, rtol=tol)
        assert np.allclose(mean, X.mean(0))
    flipped = align_component_signs(np.stack([comps, -comps]))
    assert np.allclose(flipped[0], flipped[1])


def test_cancel(model):
    tok = CancelToken()
    seen = []

    def prog(done, total, msg):
        seen.append(done)
        if done >= 3:
            tok.cancel()

    with pytest.raises(Cancelled):
        pca_directions(model, 40, components=2, steps=2, batch=8, progress=prog, cancel=tok)
    assert max(seen) < 40 * 2


def test_an_eta_spec_given_through_the_api_is_sampled_and_recorded_per_step(model):
    """A text eta schedule (``last:0.5``) reaches PCA as it reaches sampling, and the file
    records its per-step etas, as the command line does."""
    from hspace_studio.engine.etas import eta_schedule

    res = pca_directions(model, n_samples=4, components=1, steps=4, eta="last:0.5")
    want = eta_schedule("last:0.5", 4).tolist()
    assert want == [0.0, 0.0, 1.0, 1.0]
    assert res.directions.params["eta"] == want
    same = pca_directions(model, n_samples=4, components=1, steps=4, eta=want)
    assert torch.equal(res.directions.delta_h, same.directions.delta_h)
    other = pca_directions(model, n_samples=4, components=1, steps=4, eta=1.0)
    assert not torch.allclose(res.directions.delta_h, other.directions.delta_h)
