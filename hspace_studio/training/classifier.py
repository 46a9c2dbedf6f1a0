"""Train the shipped toyfaces attribute classifier on faces streamed from the generator.

    python -m hspace_studio.training.classifier --out resources/toyfaces-classifier \
        --checkpoint runs/classifier --minutes 4

Training seeds run from 20_000_000 upward (each image is seen once); seeds below
1_000_000 are held out, and the final evaluation uses seeds 0..499. Loss: binary
cross-entropy on the 14 attributes of ``generator.ATTRIBUTE_NAMES``. Light augmentation
that keeps the labels valid (gaussian noise, slight blur), since the classifier is
applied to images made by a diffusion model, not only to exact generator output.

``--minutes`` is the training budget of the whole run: the learning rate follows a
cosine over it. The state (weights, optimiser, step, seed position, time spent) is
saved to ``--checkpoint`` every minute; the same command resumes from it and trains for
the rest of the budget. Call it again with a larger ``--minutes`` to train longer.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..toyfaces.generator import ATTRIBUTE_NAMES, attribute_vector, render_batch
from ..toyfaces.nets import ToyFaceClassifier, save_classifier

TRAIN_SEED0 = 20_000_000
HELD_OUT_LIMIT = 1_000_000


# ------------------------------------------------------------------ shared helpers


def lr_at(progress: float, base: float, warmup: float = 0.03, floor: float = 0.02) -> float:
    """Linear warm-up, then cosine from ``base`` down to ``floor * base`` at progress 1."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    c = 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))
    return base * (floor + (1 - floor) * c)


def save_checkpoint(folder: Path, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / "state.pt")


def load_checkpoint(folder: Path | None):
    if folder is None or not (folder / "state.pt").is_file():
        return None
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)


SEED_STREAM = 50_000_000  # --seed k trains on generator seeds from TRAIN_SEED0 + k * SEED_STREAM


def train_seeds(position: int, n: int, stream: int = 0) -> list[int]:
    first = TRAIN_SEED0 + stream * SEED_STREAM + position
    seeds = list(range(first, first + n))
    assert seeds[0] >= HELD_OUT_LIMIT
    return seeds


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving noise: per image, maybe a slight gaussian blur, maybe gaussian
    pixel noise (sigma up to 0.06 in [-1, 1] units)."""
    n = x.shape[0]
    blur = torch.rand(n, generator=gen) < 0.3
    if blur.any():
        sig = 0.3 + 0.5 * torch.rand(int(blur.sum()), generator=gen)
        r = torch.arange(-1, 2, dtype=x.dtype)
        k1 = torch.exp(-(r[None] ** 2) / (2 * sig[:, None] ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)
        k = (k1[:, :, None] * k1[:, None, :])  # (m, 3, 3)
        xb = x[blur]
        m = xb.shape[0]
        xb = F.pad(xb.reshape(1, m * 3, *x.shape[-2:]), (1, 1, 1, 1), mode="replicate")
        xb = F.conv2d(xb, k.repeat_interleave(3, 0)[:, None], groups=m * 3)
        x = x.clone()
        x[blur] = xb.reshape(m, 3, *x.shape[-2:])
    noisy = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).to(x.dtype)
    sigma = 0.06 * torch.rand(n, 1, 1, 1, generator=gen) * noisy
    return x + sigma * torch.randn(x.shape, generator=gen)


# ------------------------------------------------------------------ classifier


def make_batch(seeds, size=64):
    x, _, facs = render_batch(seeds, size)
    y = np.stack([attribute_vector(f) for f in facs])
    return torch.from_numpy(x), torch.from_numpy(y)


@torch.no_grad()
def evaluate(model, seeds, size=64, batch=100):
    model.eval()
    correct = torch.zeros(len(ATTRIBUTE_NAMES))
    for i in range(0, len(seeds), batch):
        x, y = make_batch(seeds[i:i + batch], size)
        correct += ((model(x) > 0).float() == y).float().sum(0)
    return {a: float(c) / len(seeds) for a, c in zip(ATTRIBUTE_NAMES, correct)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("resources/toyfaces-classifier"))
    ap.add_argument("--checkpoint", type=Path, default=None, help="folder for the resumable state")
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget of the whole run")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--feature-dim", type=int, default=128)
    ap.add_argument("--eval-seeds", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0,
                    help="initialisation, augmentation and training images (0: the shipped "
                         "classifier's; another value trains an independent one on other images)")
    args = ap.parse_args(argv)
    if args.seed < 0:
        ap.error("--seed must be 0 or more")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    aug0 = 1234 + 1_000_003 * args.seed

    model = ToyFaceClassifier(len(ATTRIBUTE_NAMES), width=args.width, feature_dim=args.feature_dim)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, position, spent = 0, 0, 0.0
    gen = torch.Generator().manual_seed(aug0)
    state = load_checkpoint(args.checkpoint)
    if state is not None:
        if int(state.get("seed", 0)) != args.seed:
            ap.error(f"{args.checkpoint} holds a run with --seed {int(state.get('seed', 0))}, not {args.seed}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, position, spent = int(state["step"]), int(state["position"]), float(state["seconds"])
        gen.manual_seed(aug0 + step)
        print(f"resumed from {args.checkpoint}: step {step}, {spent / 60:.1f} min trained")
    print(f"classifier: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"budget {args.minutes} min")

    def run_state():
        return {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "position": position, "seconds": spent, "seed": args.seed}

    budget = args.minutes * 60
    t_start, last_ckpt, last_print = time.time(), time.time(), time.time()
    spent0 = spent
    run_loss, run_n = 0.0, 0
    model.train()
    while spent < budget:
        lr = lr_at(spent / budget, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = make_batch(train_seeds(position, args.batch, args.seed))
        position += args.batch
        x = augment(x, gen)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        run_loss, run_n = run_loss + loss.item(), run_n + 1
        now = time.time()
        spent = spent0 + (now - t_start)
        if now - last_print > 20:
            print(f"step {step:6d}  {spent / 60:5.1f} min  images {position:8d}  lr {lr:.2e}  "
                  f"bce {run_loss / run_n:.4f}", flush=True)
            run_loss, run_n, last_print = 0.0, 0, now
        if args.checkpoint is not None and now - last_ckpt > 60:
            save_checkpoint(args.checkpoint, run_state())
            last_ckpt = now
    if args.checkpoint is not None:
        save_checkpoint(args.checkpoint, run_state())

    acc = evaluate(model, list(range(args.eval_seeds)))
    print(f"held-out accuracy on seeds 0..{args.eval_seeds - 1}:")
    for a, v in acc.items():
        print(f"  {a:14s} {v:.3f}")
    print(f"  {'mean':14s} {np.mean(list(acc.values())):.4f}")
    save_classifier(args.out, model.eval(), ATTRIBUTE_NAMES, extra={
        "steps": step, "images": position, "minutes": round(spent / 60, 2), "batch": args.batch,
        "lr": args.lr, "seed": args.seed, "train_seeds_from": TRAIN_SEED0 + args.seed * SEED_STREAM,
        "held_out_accuracy": {a: round(v, 4) for a, v in acc.items()}})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
