"""PCA and the annotation index on 2 gloo processes (torchrun) match one process.

The test launches ``python -m torch.distributed.run --nproc_per_node 2`` on this file
(its ``__main__`` part is the per-rank worker) and on the ``pca`` command, then compares
their outputs with the same computations run here, in one process. The worker also
resumes an index from a shard file left by an "interrupted" 3-process run.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
N, K, STEPS, BATCH = 12, 3, 2, 4
SENTINEL = {5: [9.0, -9.0], 6: [8.0, -8.0], 0: [7.0, -7.0]}  # seeds "annotated" by interrupted runs


def classifier():
    from hspace_studio.engine.annotate import CallableClassifier

    return CallableClassifier(lambda x: torch.stack([x[:, 0].mean((1, 2)), x[:, 2].mean((1, 2))], 1),
                              ["red", "blue"], name="test-rgb")


def pca_runs(model):
    """name -> PCAResult of the PCA variants compared (same code on 1 or N processes)."""
    from hspace_studio.engine.discover.pca import pca_directions

    common = dict(n_samples=N, components=K, steps=STEPS, batch=BATCH)
    return {"cov": pca_directions(model, solver="covariance", mode="per-step", **common),
            "gram": pca_directions(model, solver="gram", mode="global", keep_mean=True, **common)}


def worker(model_dir, out):
    """One rank: PCA, the resumable index, a supervised direction; rank 0 writes them."""
    from hspace_studio.engine import distributed as dist
    from hspace_studio.engine.discover.pca import pca_directions
    from hspace_studio.engine.discover.supervised import build_index, supervised_directions
    from hspace_studio.engine.model import load_model

    torch.set_num_threads(1)
    model = load_model(model_dir, device="cpu")
    assert dist.init(model.device) and dist.world_size() == 2
    out = Path(out)
    res = pca_runs(model)
    try:
        pca_runs_incremental = pca_directions(model, N, components=K, steps=STEPS, solver="incremental")
    except ValueError as e:
        assert "does not run on several processes" in str(e)
    else:
        raise AssertionError(f"incremental PCA ran on 2 processes: {pca_runs_incremental}")
    index = build_index(model, classifier(), N, out / "idx.json", steps=STEPS, batch=BATCH)
    sup = supervised_directions(model, index, "red", examples=3, against=["blue"], batch=BATCH)
    if dist.is_main():
        for name, r in res.items():
            r.directions.save(out / f"pca_{name}.safetensors")
        np.save(out / "gram_mean.npy", res["gram"].mean)
        sup.directions.save(out / "sup.safetensors")
        (out / "notes.json").write_text(json.dumps(res["cov"].notes))
    dist.shutdown()


# ---------------------------------------------------------------------------- tests

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *map(str, args)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p


def close(a, b, tol=1e-4):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return a.shape == b.shape and float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


@pytest.mark.slow  # minutes on a 2-core CPU: run with -m slow
def test_two_processes_match_one(tiny_model_dir, tmp_path):
    from hspace_studio.engine.directions import DirectionSet
    from hspace_studio.engine.discover.supervised import (AnnotationIndex, build_index, shard_path,
                                                          supervised_directions)
    from hspace_studio.engine.model import load_model

    model = load_model(str(tiny_model_dir), device="cpu")
    ref_index = build_index(model, classifier(), N, tmp_path / "ref.json", steps=STEPS, batch=BATCH)
    # interrupted runs left shards with recognisable scores: a 3-process run rank 1's
    # (seeds 5 and 6), a 2-process run rank 0's (seed 0, resumed and extended by rank 0)
    out = tmp_path / "dist"
    out.mkdir()
    for (r, n), seeds in (((1, 3), [5, 6]), ((0, 2), [0])):
        AnnotationIndex(ref_index.recipe, seeds, [SENTINEL[s] for s in seeds]).save(
            shard_path(out / "idx.json", r, n))
    pcs_cli = tmp_path / "cli.safetensors"
    torchrun([Path(__file__), "worker", tiny_model_dir, out])
    p = torchrun(["-m", "hspace_studio", "pca", "--model", tiny_model_dir, "--samples", N,
                  "--components", K, "--steps", STEPS, "--batch", BATCH, "--device", "cpu",
                  "--solver", "covariance",
                  "--out", pcs_cli])
    assert p.stderr.count("wrote ") == 1  # rank 0 alone writes

    # PCA: the same directions, variances and mean as one process
    ref = pca_runs(model)
    assert json.loads((out / "notes.json").read_text()) == ["sampled on 2 processes"]
    for name, r in ref.items():
        got = DirectionSet.load(out / f"pca_{name}.safetensors")
        assert close(got.delta_h, r.directions.delta_h), name
        assert close(got.values, r.directions.values), name
        assert got.params == r.directions.params, name
    assert close(np.load(out / "gram_mean.npy"), ref["gram"].mean)
    cli = DirectionSet.load(pcs_cli)
    assert cli.params["solver"] == "covariance"
    assert close(cli.delta_h, ref["cov"].directions.delta_h)

    # the index: merged from the shards in seed order, resumed seeds kept, shards removed
    got = AnnotationIndex.load(out / "idx.json")
    assert got.recipe == ref_index.recipe and got.seeds == list(range(N))
    for s, row, want in zip(got.seeds, got.scores, ref_index.scores):
        assert close(row, SENTINEL.get(s, want), 1e-5), s
    assert list(out.glob("idx.json.rank*")) == []

    # supervised directions from that index: the same as one process computes
    sup = supervised_directions(model, got, "red", examples=3, against=["blue"], batch=BATCH)
    dsup = DirectionSet.load(out / "sup.safetensors")
    assert sup.examples[0].positive[:2] == [5, 6]
    assert close(dsup.delta_h, sup.directions.delta_h)
    assert dsup.labels == sup.directions.labels


def test_single_process_helpers():
    from hspace_studio.engine import distributed as dist

    assert not dist.active() and dist.rank() == 0 and dist.world_size() == 1 and dist.is_main()
    assert dist.shard(range(5)) == [0, 1, 2, 3, 4]
    assert [dist.shard(range(5), r, 2) for r in range(2)] == [[0, 1], [2, 3, 4]]
    assert sum((dist.shard(range(7), r, 3) for r in range(3)), []) == list(range(7))
    x = np.arange(3.0)
    assert np.array_equal(dist.all_reduce_sum(x), x) and dist.all_gather_object(7) == [7]
    assert not dist.init()  # WORLD_SIZE unset: nothing initialised
    # the covariance merge (one rank here) leaves the statistics as they were
    from hspace_studio.engine.discover.pca import CovarianceAccumulator

    X = np.random.default_rng(0).normal(size=(40, 6)) * np.arange(1, 7) + 3.0
    a, b = CovarianceAccumulator(6), CovarianceAccumulator(6)
    for acc in (a, b):
        acc.update(X[:15])
        acc.update(X[15:])
    a.combine()
    for u, v in zip(a.result(3), b.result(3)):
        assert np.allclose(u, v, atol=1e-10)
    dist.barrier()
    dist.shutdown()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    sys.path.insert(0, str(ROOT))
    worker(sys.argv[2], sys.argv[3])
