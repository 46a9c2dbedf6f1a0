"""Train the shipped toyfaces part segmenter on faces streamed from the generator.

    python -m hspace_studio.training.segmenter --out resources/toyfaces-segmenter \
        --checkpoint runs/segmenter --minutes 4

Training seeds run from 20_000_000 upward; seeds below 1_000_000 are held out, and the
final evaluation reports per-part IoU on seeds 0..499 (intersection and union summed
over all pixels of all images). Loss: per-pixel cross-entropy over ``generator.PARTS``.
Rare parts (eyes, brows, mouth, glasses: under 1 % of the pixels each) are weighted by
``frequency ** -power`` early on so they are found quickly; ``power`` falls linearly
from ``--class-weight-power`` to 0 at 80 % of the budget, so the final epochs optimise
the plain (unweighted) cross-entropy, whose argmax is what IoU rewards.
Augmentation (light noise / blur) as for the classifier; the label map is unchanged.

``--minutes`` is the budget of the whole run (cosine learning rate over it); the state
is saved to ``--checkpoint`` every minute and the same command resumes from it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..toyfaces.generator import PARTS, render_batch
from ..toyfaces.nets import ToyFaceSegmenter, save_segmenter
from .classifier import augment, load_checkpoint, lr_at, save_checkpoint, train_seeds


def make_batch(seeds, size=64):
    x, lab, _ = render_batch(seeds, size)
    return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64))


def iou_counts(pred: torch.Tensor, lab: torch.Tensor, n: int):
    inter = torch.zeros(n, dtype=torch.float64)
    union = torch.zeros(n, dtype=torch.float64)
    for k in range(n):
        p, t = pred == k, lab == k
        inter[k] += (p & t).sum()
        union[k] += (p | t).sum()
    return inter, union


@torch.no_grad()
def evaluate(model, seeds, size=64, batch=100):
    model.eval()
    inter = torch.zeros(len(PARTS), dtype=torch.float64)
    union = torch.zeros(len(PARTS), dtype=torch.float64)
    correct = total = 0
    for i in range(0, len(seeds), batch):
        x, lab = make_batch(seeds[i:i + batch], size)
        pred = model(x).argmax(1)
        a, b = iou_counts(pred, lab, len(PARTS))
        inter, union = inter + a, union + b
        correct += int((pred == lab).sum())
        total += lab.numel()
    iou = {p: float(inter[k] / union[k]) if union[k] > 0 else float("nan") for k, p in enumerate(PARTS)}
    return iou, correct / total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("resources/toyfaces-segmenter"))
    ap.add_argument("--checkpoint", type=Path, default=None, help="folder for the resumable state")
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget of the whole run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--class-weight-power", type=float, default=0.5)
    ap.add_argument("--eval-seeds", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = ToyFaceSegmenter(len(PARTS), width=args.width)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, position, spent = 0, 0, 0.0
    gen = torch.Generator().manual_seed(4321)
    state = load_checkpoint(args.checkpoint)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, position, spent = int(state["step"]), int(state["position"]), float(state["seconds"])
        gen.manual_seed(4321 + step)
        print(f"resumed from {args.checkpoint}: step {step}, {spent / 60:.1f} min trained")
    print(f"segmenter: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"budget {args.minutes} min")

    _, lab0 = make_batch(list(range(10_000_000, 10_000_200)))  # part frequencies
    freq = torch.bincount(lab0.ravel(), minlength=len(PARTS)).double() / lab0.numel()
    freq = freq.clamp_min(1e-4)

    budget = args.minutes * 60
    t_start, last_ckpt, last_print = time.time(), time.time(), time.time()
    spent0 = spent
    run_loss, run_n = 0.0, 0
    model.train()
    while spent < budget:
        lr = lr_at(spent / budget, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x, lab = make_batch(train_seeds(position, args.batch))
        position += args.batch
        x = augment(x, gen)
        power = args.class_weight_power * max(0.0, 1.0 - spent / budget / 0.8)
        weight = (freq ** -power / freq[0] ** -power).float()
        loss = F.cross_entropy(model(x), lab, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        run_loss, run_n = run_loss + loss.item(), run_n + 1
        now = time.time()
        spent = spent0 + (now - t_start)
        if now - last_print > 20:
            print(f"step {step:6d}  {spent / 60:5.1f} min  images {position:8d}  lr {lr:.2e}  "
                  f"ce {run_loss / run_n:.4f}", flush=True)
            run_loss, run_n, last_print = 0.0, 0, now
        if args.checkpoint is not None and now - last_ckpt > 60:
            save_checkpoint(args.checkpoint, {"model": model.state_dict(), "opt": opt.state_dict(),
                                              "step": step, "position": position, "seconds": spent})
            last_ckpt = now
    if args.checkpoint is not None:
        save_checkpoint(args.checkpoint, {"model": model.state_dict(), "opt": opt.state_dict(),
                                          "step": step, "position": position, "seconds": spent})

    iou, pix = evaluate(model, list(range(args.eval_seeds)))
    print(f"held-out IoU on seeds 0..{args.eval_seeds - 1}:")
    for p, v in iou.items():
        print(f"  {p:12s} {v:.3f}")
    print(f"  {'mean':12s} {np.nanmean(list(iou.values())):.4f}   pixel accuracy {pix:.4f}")
    save_segmenter(args.out, model.eval(), PARTS, extra={
        "steps": step, "images": position, "minutes": round(spent / 60, 2), "batch": args.batch,
        "lr": args.lr, "train_seeds_from": 20_000_000,
        "held_out_iou": {p: round(v, 4) for p, v in iou.items()}, "pixel_accuracy": round(pix, 4)})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
