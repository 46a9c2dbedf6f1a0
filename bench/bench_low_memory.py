"""The low-memory mode: decoding a big image whole vs in tiles, one at a time.

    python -m bench.bench_low_memory [--family "SD 1.x"|SDXL] [--size 768] [--threads 2]

The family's autoencoder at its real config (the shipped one, random weights) decodes one
latent of ``--size`` pixels whole, then with the low-memory mode (tiles of the autoencoder's
own sample size, overlapping by a quarter, blended; batches one image at a time): time and
peak resident memory of each, in the same run, and the pixel difference between them
(largest, and PSNR over [-1, 1] images clamped as exported). Random weights make the decoder's
output noise-like, so the seams' difference here is an upper estimate of what a trained
decoder's smooth images show.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from bench.bench_jacobian import PeakRSS


def decode(family: str, size: int, tiled: bool, save: str) -> None:
    """One decode in this process (so its peak memory is its own), the image saved to ``save``."""
    from diffusers import AutoencoderKL

    from hspace_studio.engine.shipped_configs import shipped_config

    cfg = AutoencoderKL.load_config(shipped_config(family) / "vae")
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(cfg).eval().requires_grad_(False)
    if tiled:
        vae.enable_tiling()
        vae.enable_slicing()
    z = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    with PeakRSS() as mem, torch.no_grad():
        t0 = time.perf_counter()
        img = vae.decode(z).sample.clamp(-1, 1)
        sec = time.perf_counter() - t0
    torch.save({"image": img, "seconds": sec, "extra": mem.peak - mem.start}, save)


def main(argv=None):
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="SD 1.x", choices=["SD 1.x", "SDXL"])
    ap.add_argument("--size", type=int, default=768, help="image side in pixels (above the autoencoder's own)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only:
        return decode(args.family, args.size, args.only == "tiled", args.save)
    print(f"{args.family} autoencoder at its real config (random weights), one {args.size}x{args.size} image, "
          f"torch threads {args.threads}; each decode in its own process")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("whole", "tiled"):
            f = str(Path(tmp) / f"{name}.pt")
            subprocess.run([sys.executable, "-m", "bench.bench_low_memory", "--family", args.family, "--size",
                            str(args.size), "--threads", str(args.threads), "--only", name, "--save", f], check=True)
            res[name] = torch.load(f, weights_only=True)
            print(f"{name:6s}: {res[name]['seconds']:6.1f} s, decoder memory +{res[name]['extra'] / 2**30:.2f} GB")
    a, b = res["whole"]["image"], res["tiled"]["image"]
    d = (a - b).abs()
    mse = float(((a - b) ** 2).mean())
    psnr = 10 * math.log10(4.0 / max(mse, 1e-20))
    print(f"difference: largest {float(d.max()):.3f} (of 2), mean {float(d.mean()):.4f}, PSNR {psnr:.1f} dB; "
          f"tiled memory {res['tiled']['extra'] / max(res['whole']['extra'], 1):.2f} of whole, "
          f"time {res['tiled']['seconds'] / res['whole']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
