"""Samples per second of PCA (and the annotation index) on 1 vs N processes (torchrun, gloo on CPU).

    .venv/bin/python bench/bench_distributed.py [--samples 64] [--steps 4] [--batch 8]
        [--procs 1 2] [--model DIR] [--what pca index]

For each process count P it launches ``python -m torch.distributed.run --nproc_per_node P``
on this file; every rank loads the model and runs one warm-up batch, then the timed job
runs between two barriers and rank 0 reports samples/s (the whole job: sampling, the
reduction and, for PCA, the decomposition). The launch wall time (interpreter start,
imports, model load, rendezvous) is printed separately. Each process uses one thread
(OMP_NUM_THREADS=1), so P processes use P cores: the speed-up is bounded by the free cores.
Without --model a tiny model (tests/tiny_models.py, config a) is used.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(a) -> None:
    import torch

    from hspace_studio.engine import distributed as dist
    from hspace_studio.engine.annotate import CallableClassifier
    from hspace_studio.engine.discover.pca import pca_directions
    from hspace_studio.engine.discover.supervised import build_index
    from hspace_studio.engine.model import load_model
    from hspace_studio.engine.sampler import sample

    torch.set_num_threads(1)
    model = load_model(a.model, device=dist.device_for(a.device))
    dist.init(model.device)
    sample(model, list(range(a.batch)), steps=a.steps, batch_size=a.batch, keep_chain=False)  # warm-up
    clf = CallableClassifier(lambda x: x.mean((2, 3)), ["r", "g", "b"], name="mean-rgb")
    out = {}
    for what in a.what:
        dist.barrier()
        t = time.perf_counter()
        if what == "pca":
            pca_directions(model, a.samples, components=4, steps=a.steps, batch=a.batch,
                           solver=a.solver)
        else:
            build_index(model, clf, a.samples, Path(a.tmp) / "idx.json", steps=a.steps, batch=a.batch)
        dist.barrier()
        out[what] = time.perf_counter() - t
    if dist.is_main():
        print("RESULT " + json.dumps(out), flush=True)
    dist.shutdown()


def launch(a, procs: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
               "--master_addr", "127.0.0.1", "--master_port", str(port), __file__, "--worker",
               "--model", a.model, "--samples", str(a.samples), "--steps", str(a.steps),
               "--batch", str(a.batch), "--tmp", tmp, "--solver", a.solver, "--what", *a.what]
        if a.device:
            cmd += ["--device", a.device]
        t = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{procs} process(es) failed:\n{p.stderr[-4000:]}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return {"wall": wall, **json.loads(line[7:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--what", nargs="+", choices=("pca", "index"), default=["pca", "index"])
    ap.add_argument("--solver", choices=("auto", "gram", "covariance"), default="auto",
                    help="PCA solver (default auto; covariance's D x D decomposition, done on "
                         "every rank, dominates small runs of the tiny model)")
    ap.add_argument("--model", default=None, help="model folder (default: a tiny test model)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        sys.path.insert(0, str(ROOT))
        return worker(a)
    sys.path.insert(0, str(ROOT))
    if a.model is None:
        from tests.tiny_models import save_pixel_model

        a.model = str(save_pixel_model(Path(tempfile.mkdtemp()) / "tiny", "a"))
    print(f"{a.samples} samples, {a.steps} steps, batch {a.batch}, PCA solver {a.solver}, model {a.model}, "
          f"{os.cpu_count()} CPU(s)")
    base = {}
    print(f"{'procs':>5} {'job':>6} {'seconds':>8} {'samples/s':>10} {'speed-up':>9} {'launch wall s':>14}")
    for p in a.procs:
        r = launch(a, p)
        for what in a.what:
            base.setdefault(what, r[what])
            print(f"{p:>5} {what:>6} {r[what]:>8.2f} {a.samples / r[what]:>10.1f} "
                  f"{base[what] / r[what]:>8.2f}x {r['wall']:>14.1f}")


if __name__ == "__main__":
    main()
