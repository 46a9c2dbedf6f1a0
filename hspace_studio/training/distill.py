"""Distil a guided many-step sampler of the default model into its 10-step chain.

    python -m hspace_studio.training.distill --init resources/default-model \
        --guide resources/default-model-guide --out runs/distill-out \
        --checkpoint runs/distill --minutes 100

The student starts from the ``--init`` weights. For a training image x_0 it takes one of
the N sampling timesteps t_i (``power:P`` spacing, as the engine samples with
``--timesteps power:P``), noises x_0 to x_t, and lets the teacher (the ``--init`` weights,
guided by ``--guide`` at weight ``--guide-weight``) walk from t_i to t_{i+1} in
``--substeps`` DDIM steps (eta 0). The student learns the x_0 estimate whose single DDIM
step from x_t lands where the teacher did:

    x0* = (x_{t'} - r x_t) / (sqrt(ab') - r sqrt(ab)),   r = sqrt(1 - ab') / sqrt(1 - ab)

(progressive distillation, Salimans & Ho 2022, with guidance in the teacher as in Meng et
al. 2023). The student's 10-step chain then needs no guide. A share of each batch
(``--plain-share``) keeps the ordinary v-loss at uniform timesteps, so the student stays a
denoiser at every timestep (inversion, the Jacobian, 50-step sampling).

Resumable like ``training.ddpm``: state in ``--checkpoint``, the EMA exported to ``--out``
at every checkpoint, SIGTERM stops with a checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import os
import signal
import time
from pathlib import Path

import torch

from .ddpm import _ema_update, _interrupt_on_sigterm, export
from .stream import batches


def student_timesteps(steps: int, power: float) -> list:
    """The sampler's timesteps followed by -1 (the final step, to alpha-bar at t = 0)."""
    from ..engine.timesteps import power_timesteps

    return power_timesteps(1000, steps, power).tolist() + [-1]


def substep_grid(t: int, t_next: int, k: int) -> list:
    """``k`` DDIM steps from ``t`` to ``t_next`` (-1: the final alpha-bar): the timesteps
    visited, evenly spaced, followed by ``t_next``."""
    end = max(t_next, 0)
    pts = [int(round(t + (end - t) * j / k)) for j in range(k)]
    out = []
    for p in pts:  # distinct and decreasing
        if not out or p < out[-1]:
            out.append(p)
    return out + [t_next]


def _abs(acs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Alpha-bar per sample (t = -1: the final alpha-bar, at t = 0), shaped (n, 1, 1, 1)."""
    return acs[t.clamp(min=0)].view(-1, 1, 1, 1)


@torch.no_grad()
def teacher_walk(teacher, x: torch.Tensor, grids: torch.Tensor, acs: torch.Tensor, bf16: bool) -> torch.Tensor:
    """DDIM (eta 0) with a v-predicting ``teacher``, each sample along its own row of
    ``grids`` (n, k + 1): returns x at each row's last entry."""
    for j in range(grids.shape[1] - 1):
        t, t_next = grids[:, j], grids[:, j + 1]
        ab, abn = _abs(acs, t), _abs(acs, t_next)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            v = teacher(x, t)
            v = (v.sample if hasattr(v, "sample") else v).float()  # a UNet, or a guided Denoiser
        x0 = ab.sqrt() * x - (1 - ab).sqrt() * v
        eps = ab.sqrt() * v + (1 - ab).sqrt() * x
        x = abn.sqrt() * x0 + (1 - abn).sqrt() * eps
    return x


def distilled_v_target(x_t, x_next, ab, abn):
    """The v whose DDIM step (eta 0) from ``x_t`` at alpha-bar ``ab`` reaches ``x_next`` at
    ``abn``. Per-sample ``ab``/``abn`` broadcast against the images."""
    r = ((1 - abn) / (1 - ab)).sqrt()
    x0 = (x_next - r * x_t) / (abn.sqrt() - r * ab.sqrt())
    return (ab.sqrt() * x_t - x0) / (1 - ab).sqrt()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", default="resources/default-model")
    ap.add_argument("--guide", default="resources/default-model-guide")
    ap.add_argument("--guide-weight", type=float, default=4.0)
    ap.add_argument("--guide-interval", default="0:999", metavar="LO:HI")
    ap.add_argument("--steps", type=int, default=10, help="the student's sampling steps")
    ap.add_argument("--power", type=float, default=0.7, help="their power spacing")
    ap.add_argument("--substeps", type=int, default=5, help="teacher steps per student step")
    ap.add_argument("--plain-share", type=float, default=0.25,
                    help="share of each batch trained with the plain v-loss at uniform timesteps")
    ap.add_argument("--out", default="runs/distill-out")
    ap.add_argument("--checkpoint", default="runs/distill")
    ap.add_argument("--minutes", type=float, default=100.0, help="wall-clock budget of this run")
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--save-every", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args(argv)
    try:
        lo, hi = (int(v) for v in args.guide_interval.split(":"))
    except ValueError:
        ap.error(f"--guide-interval is LO:HI (two timesteps), got '{args.guide_interval}'")
    if not 0 <= lo <= hi:
        ap.error("--guide-interval: LO must be 0 or more and not above HI")
    if args.steps < 1 or args.substeps < 1 or args.batch < 1:
        ap.error("--steps, --substeps and --batch are at least 1")
    if not 0.0 <= args.plain_share < 1.0:
        ap.error("--plain-share is a fraction from 0 up to (not including) 1")
    for name in ("init", "guide"):
        folder = Path(getattr(args, name))
        if not (folder / "config.json").is_file():
            ap.error(f"--{name} {folder}: not a UNet2DModel folder (no config.json)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from diffusers import UNet2DModel

    from ..engine.architectures import UNetArchitecture
    from ..engine.denoiser import Denoiser, Guide
    from .ddpm import build_scheduler

    torch.manual_seed(0)
    sched = build_scheduler()
    acs = sched.alphas_cumprod.float()
    main_w = UNet2DModel.from_pretrained(args.init).eval().requires_grad_(False)
    guide = UNet2DModel.from_pretrained(args.guide).eval().requires_grad_(False)
    teacher = Denoiser(main_w, UNetArchitecture(), guide=Guide(guide, args.guide_weight, (lo, hi)))
    student = copy.deepcopy(main_w).train().requires_grad_(True)
    ema = copy.deepcopy(main_w)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    step, seed_pos = 0, 0
    ck = Path(args.checkpoint)
    ck.mkdir(parents=True, exist_ok=True)
    state_file = ck / "state.pt"
    if state_file.exists():
        st = torch.load(state_file, weights_only=True)
        student.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, seed_pos = int(st["step"]), int(st["seed_pos"])
        print(f"resumed at step {step}", flush=True)
    ts = student_timesteps(args.steps, args.power)
    print(f"student timesteps {ts[:-1]}; teacher {args.substeps} steps each, guide weight "
          f"{args.guide_weight} on {lo}:{hi}", flush=True)
    bf16 = not args.no_bf16
    n_plain = int(round(args.batch * args.plain_share))
    info = {"distilled_from": str(args.init), "guide": str(args.guide),
            "guide_weight": args.guide_weight, "guide_interval": [lo, hi],
            "steps": args.steps, "power": args.power, "substeps": args.substeps,
            "plain_share": args.plain_share, "lr": args.lr, "batch": args.batch,
            # what load_model samples it at when the caller names no spacing
            "sampling_timesteps": f"power:{args.power:g}", "sampling_steps": args.steps}

    def save():
        tmp = state_file.with_suffix(".tmp")
        torch.save({"model": student.state_dict(), "ema": ema.state_dict(),
                    "opt": opt.state_dict(), "step": step, "seed_pos": seed_pos}, tmp)
        os.replace(tmp, state_file)
        export(ema, sched, Path(args.out), {**info, "distill_step": step, "ema": args.ema})
        export(student, sched, Path(str(args.out) + "-raw"), {**info, "distill_step": step})
        print(f"checkpoint at step {step}", flush=True)

    gen = torch.Generator().manual_seed(1234)
    data = batches(seed_pos, args.batch, int(main_w.config.sample_size), 0, base=20_000_000)
    t0 = t_save = time.time()
    losses = []
    previous = _interrupt_on_sigterm()
    interrupted = False
    try:
        while step < args.max_steps and time.time() - t0 < args.minutes * 60:
            seed_pos, x0 = next(data)
            x0 = torch.from_numpy(x0)
            gen.manual_seed(step + 7)
            noise = torch.randn(x0.shape, generator=gen)
            b = x0.shape[0]
            nd = b - n_plain
            # distilled part: one sampler interval per image
            idx = torch.randint(0, args.steps, (nd,), generator=gen)
            t = torch.tensor([ts[i] for i in idx.tolist()], dtype=torch.long)
            # plain part: uniform timesteps
            tp = torch.randint(0, 1000, (n_plain,), generator=gen)
            t_all = torch.cat([t, tp])
            ab = acs[t_all].view(-1, 1, 1, 1)
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
            target = ab.sqrt() * noise - (1 - ab).sqrt() * x0  # plain v
            if nd:
                grids = torch.tensor([substep_grid(ts[i], ts[i + 1], args.substeps)
                                      for i in idx.tolist()], dtype=torch.long)
                x_next = teacher_walk(teacher, xt[:nd], grids, acs, bf16)
                abn = _abs(acs, grids[:, -1])
                target[:nd] = distilled_v_target(xt[:nd], x_next, ab[:nd], abn)
            warm = min(1.0, (step + 1) / 100)
            for g in opt.param_groups:
                g["lr"] = args.lr * warm
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = student(xt, t_all).sample
            loss = ((pred.float() - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            _ema_update(ema, student, min(args.ema, (1 + step) / (10 + step)))
            step += 1
            losses.append(loss.item())
            if step % 20 == 0:
                print(f"step {step} loss {sum(losses)/len(losses):.4f} "
                      f"{(time.time()-t0)/60:.1f} min", flush=True)
                losses = []
            if time.time() - t_save > args.save_every * 60:
                save()
                t_save = time.time()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        data.close()
    save()
    return 130 if interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
