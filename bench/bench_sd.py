"""Stable Diffusion 1.5-sized model (random weights, the real configs): sample, one edit and
one Jacobian step through hspace-studio, against diffusers' own pipeline in the same run.

    python -m bench.bench_sd [--size 512] [--steps 10] [--device cpu] [--half]

The model is built with SD 1.5's UNet, VAE and CLIP text-encoder configs, saved to a
temporary folder and loaded by path as a user's checkpoint. Figures are seconds and the
ratio to ``StableDiffusionPipeline`` with a DDIM scheduler at the same steps, prompt and
guidance (the floor any tool pays for a sample). ``--size`` below 512 makes the latents
smaller (the UNet is the same), for a quicker run on a CPU.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                 bos_token_id=84, eos_token_id=85, pad_token_id=85)


def build(folder: Path, size: int) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.tiny_models import write_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**SD15_UNET, "sample_size": size // 8})
    vae = AutoencoderKL(**{**SD15_VAE, "sample_size": size})
    text = CLIPTextModel(CLIPTextConfig(**SD15_TEXT))
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=write_tokenizer(77), unet=unet,
                            scheduler=sched, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    return folder


def clock(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image size (latents are size/8)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default=None)
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--no-jacobian", dest="jacobian", action="store_false")
    args = ap.parse_args(argv)

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from hspace_studio.engine import EditSpec, edit, load_model, sample
    from hspace_studio.engine.discover.jacobian import jacobian_directions

    folder = Path(tempfile.mkdtemp(prefix="sd15-bench"))
    try:
        t_build, _ = clock(lambda: build(folder, args.size))
        t_load, model = clock(lambda: load_model(str(folder), device=args.device, half=args.half))
        model.set_prompt("a portrait photo of a person", "blurry", 7.5)
        print(f"{model.describe()}; torch threads {torch.get_num_threads()}; "
              f"built in {t_build:.0f} s, loaded (with fingerprint) in {t_load:.1f} s")
        print(f"h: {tuple(sample(model, [0], steps=1)[0].hs.shape[1:])}")

        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, feature_extractor=None,
                                                       requires_safety_checker=False,
                                                       **({"torch_dtype": torch.float16} if args.half else {}))
        pipe.scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
        pipe.set_progress_bar_config(disable=True)
        pipe.to(model.device)
        kw = dict(prompt="a portrait photo of a person", negative_prompt="blurry", guidance_scale=7.5,
                  num_inference_steps=args.steps, eta=1.0, output_type="latent")
        t_pipe, _ = clock(lambda: pipe(**kw, generator=torch.Generator().manual_seed(0)))
        t_sample, traj = clock(lambda: sample(model, [0], steps=args.steps, eta=1.0)[0])
        d = torch.randn_like(traj.hs) * traj.hs.std()
        t_edit, _ = clock(lambda: edit(model, traj, [EditSpec(d, 1.0)]))
        print(f"{args.steps} steps, guidance 7.5 (two UNet branches a step)")
        print(f"  diffusers pipeline  : {t_pipe:8.1f} s   1.00x")
        print(f"  sample (records h)  : {t_sample:8.1f} s   {t_sample / t_pipe:.2f}x")
        print(f"  edit, every step    : {t_edit:8.1f} s   {t_edit / t_pipe:.2f}x")
        if args.jacobian:
            t_jac, res = clock(lambda: jacobian_directions(model, traj, k=1, steps_subset=[args.steps // 2],
                                                           max_iter=3, tol=1e-9))
            it = res.iterations[0]
            print(f"  Jacobian, one step  : {t_jac:8.1f} s for {it} iteration(s) of k=1 "
                  f"({t_jac / max(it, 1):.1f} s an iteration; {t_jac / t_pipe:.2f}x the pipeline)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
