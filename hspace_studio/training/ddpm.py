"""Train the embedded default DDPM on streamed toyfaces.

    python -m hspace_studio.training.ddpm --out resources/default-model \
        --checkpoint runs/ddpm --minutes 120

Resumable: the run state (weights, EMA, optimiser, step, data position) is saved to
``--checkpoint`` every few minutes and picked up again by the same command. The EMA
weights are exported as a diffusers folder (safetensors) to ``--out`` at every
checkpoint, so an interrupted run still leaves a usable model.

The model predicts v (``prediction_type="v_prediction"``) with a cosine noise
schedule: its x_0 estimate stays bounded at high noise, so it samples cleanly with
``clip_sample`` off at 10 steps as well as at 50.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .stream import batches


def build_unet(size: int = 64, channels=(32, 64, 96, 128)):
    from diffusers import UNet2DModel

    n = len(channels)
    attn_level = n - 2  # attention at the second-lowest resolution (16x16 for 64px)
    down = tuple("AttnDownBlock2D" if i == attn_level else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if i == n - 1 - attn_level else "UpBlock2D" for i in range(n))
    return UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(channels),
        layers_per_block=1,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=16,
        attention_head_dim=32,
    )


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
        timestep_spacing="trailing",
    )


def v_loss(pred, target, ab, min_snr: float = 0.0):
    """Mean squared error of predicted v; with ``min_snr`` > 0 each sample is weighted by
    min(SNR, min_snr) / (SNR + 1), which is the min-SNR loss min(SNR, gamma) |x0 - x0_hat|^2
    written in v (the x_0 error is sqrt(1 - ab) times the v error). ``ab``: alpha-bar per
    sample, broadcastable to ``pred``."""
    if min_snr <= 0:
        return F.mse_loss(pred, target)
    snr = ab / (1 - ab)
    return (snr.clamp(max=min_snr) / (snr + 1) * (pred - target) ** 2).mean()


@torch.no_grad()
def _ema_update(avg, model, decay: float):
    """Move each parameter of ``avg`` towards ``model``'s by 1 - decay."""
    for pe, pm in zip(avg.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def export(model, sched, out: Path, extra: dict):
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    sched.save_pretrained(tmp)
    # sampled (and measured) with the last step into alpha-bar(0), not 1: say so in the config
    cfg_path = tmp / "scheduler_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "set_alpha_to_one": False},
                                   indent=2, sort_keys=True) + "\n")
    (tmp / "training.json").write_text(json.dumps(extra, indent=2))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)


def _interrupt_on_sigterm():
    """Make SIGTERM (``kill``'s default) stop the run as Ctrl-C does, with a checkpoint: a run
    started in the background by a shell script ignores Ctrl-C's SIGINT, so ``kill`` is how
    it is stopped. Returns the previous handler (None off the main thread, where Python
    cannot set one)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="resources/default-model")
    ap.add_argument("--checkpoint", default="runs/ddpm")
    ap.add_argument("--minutes", type=float, default=120.0, help="wall-clock budget of this run")
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", default="32,64,96,128")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--slow-ema", type=float, default=0.0, metavar="DECAY",
                    help="also keep a slower EMA of the weights (e.g. 0.9995), exported to "
                         "--slow-ema-out; started from the EMA weights when the checkpoint has none")
    ap.add_argument("--slow-ema-out", metavar="FOLDER",
                    help="where the slow EMA is exported (default: --out with '-slow' appended)")
    ap.add_argument("--save-every", type=float, default=10.0, help="minutes between checkpoints")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--decay", type=float, default=0.0,
                    help="decay the learning rate linearly by this fraction over this run's minutes")
    ap.add_argument("--min-snr", type=float, default=0.0, metavar="GAMMA",
                    help="weight each sample's v-loss by min(SNR, GAMMA) / (SNR + 1), the "
                         "min-SNR weighting (e.g. 5); 0: the plain v-loss")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes rendering training images ahead (0: render in this process; "
                         "on a GPU, about the CPU cores less one)")
    ap.add_argument("--init", metavar="FOLDER",
                    help="start from these weights (e.g. resources/default-model) when the "
                         "checkpoint folder has no state yet; the step count continues from "
                         "the folder's training.json")
    args = ap.parse_args(argv)
    if not 0.0 <= args.slow_ema <= 1.0:
        ap.error("--slow-ema is a decay between 0 and 1 (e.g. 0.9995)")
    if args.min_snr < 0:
        ap.error("--min-snr is a gamma of 0 (off) or more (e.g. 5)")
    if args.workers < 0:
        ap.error("--workers is a number of processes, 0 or more")
    if args.batch < 1:
        ap.error("--batch is at least 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    device = torch.device(args.device)
    channels = tuple(int(c) for c in args.channels.split(","))
    model = build_unet(args.size, channels).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    sched = build_scheduler()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, seed_pos = 0, 0
    slow_state = None
    warm_from = 0  # the step this optimiser's state started at: its learning rate warms up from there
    ckdir = Path(args.checkpoint)
    ckdir.mkdir(parents=True, exist_ok=True)
    state_file = ckdir / "state.pt"
    if state_file.exists():
        st = torch.load(state_file, map_location=device, weights_only=True)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, seed_pos = int(st["step"]), int(st["seed_pos"])
        slow_state = st.get("ema_slow")
        print(f"resumed at step {step}", flush=True)
    elif args.init:
        from diffusers import UNet2DModel

        init = UNet2DModel.from_pretrained(args.init)
        model.load_state_dict(init.state_dict())
        ema.load_state_dict(init.state_dict())
        info = Path(args.init) / "training.json"
        if info.is_file():
            step = int(json.loads(info.read_text()).get("step", 0))
            seed_pos = step * args.batch  # fresh training images, past those already seen
        warm_from = step  # a fresh optimiser: warm up again rather than jolt the loaded weights
        print(f"started from the weights in {args.init} (step {step})", flush=True)
    slow = None
    if args.slow_ema > 0:
        slow = copy.deepcopy(ema)
        if slow_state is not None:
            slow.load_state_dict(slow_state)
            print(f"slow EMA ({args.slow_ema}) resumed", flush=True)
        else:
            print(f"slow EMA ({args.slow_ema}) started from the EMA weights", flush=True)
    slow_out = Path(args.slow_ema_out or str(args.out).rstrip("/\\") + "-slow")
    nparams = sum(p.numel() for p in model.parameters())
    print(f"UNet {nparams/1e6:.2f}M parameters, device {device}", flush=True)

    acs = sched.alphas_cumprod.to(device)
    use_bf16 = not args.no_bf16
    t_start = time.time()
    t_save = t_start
    losses = []
    gen = torch.Generator(device="cpu")

    def save():
        tmp = state_file.with_suffix(".tmp")
        st = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
              "step": step, "seed_pos": seed_pos}
        if slow is not None:
            st["ema_slow"] = slow.state_dict()
        elif slow_state is not None:
            st["ema_slow"] = slow_state  # kept for a later run that asks for it again
        torch.save(st, tmp)
        os.replace(tmp, state_file)
        info = {"step": step, "batch": args.batch, "lr": args.lr, "channels": list(channels),
                "ema": args.ema, "size": args.size}
        export(ema, sched, Path(args.out), info)
        if slow is not None:
            export(slow, sched, slow_out, {**info, "ema": args.slow_ema})
        print(f"checkpoint at step {step}", flush=True)

    model.train()
    data = batches(seed_pos, args.batch, args.size, args.workers)
    interrupted = False
    previous = _interrupt_on_sigterm()
    try:
        while step < args.max_steps and (time.time() - t_start) < args.minutes * 60:
            seed_pos, x0 = next(data)
            x0 = torch.from_numpy(x0).to(device)
            gen.manual_seed(step)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(device)
            ab = acs[t].view(-1, 1, 1, 1)
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
            target = ab.sqrt() * noise - (1 - ab).sqrt() * x0  # v
            warm = min(1.0, (step - warm_from + 1) / 500)
            frac = min(1.0, (time.time() - t_start) / (args.minutes * 60))
            for g in opt.param_groups:
                g["lr"] = args.lr * warm * (1 - args.decay * frac)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                pred = model(xt, t).sample
            loss = v_loss(pred.float(), target, ab, args.min_snr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            decay = min(args.ema, (1 + step) / (10 + step))
            _ema_update(ema, model, decay)
            if slow is not None:
                _ema_update(slow, model, args.slow_ema)
            step += 1
            losses.append(loss.item())
            if step % 100 == 0:
                el = time.time() - t_start
                print(f"step {step} loss {sum(losses)/len(losses):.4f} {el/60:.1f} min", flush=True)
                losses = []
            if time.time() - t_save > args.save_every * 60:
                save()
                t_save = time.time()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was trained
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        data.close()  # stops the worker processes, also when a step fails
    save()
    if interrupted:
        print(f"interrupted at step {step}: checkpoint saved; the same command continues the run",
              flush=True)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
