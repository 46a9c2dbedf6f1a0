"""An SD3.5-medium-size transformer (random weights, its real config): sample and an edit of
every step through hspace-studio, against ``StableDiffusion3Pipeline`` in the same run.

    python -m bench.bench_transformers [--size 256] [--steps 2] [--guidance 4.5] [--device cpu]

The transformer (2.5 B parameters, 24 MMDiT blocks, the first 13 with dual attention) and the
autoencoder have SD3.5-medium's configs; the text encoders are small stand-ins with the real
output widths (CLIP 768 + 1280, T5 4096), since they run once per prompt and do not enter the
per-step cost. Figures are seconds per run and the ratio to the pipeline's loop (the floor any
tool pays). ``--size`` below 1024 makes the token grid smaller (the network is the same), for a
run on a CPU; ``--steps 20`` is the issue's setting on a GPU.
"""
from __future__ import annotations

import argparse

import torch

from bench.bench_sd import clock

SD35M_TRANSFORMER = dict(attention_head_dim=64, caption_projection_dim=1536, in_channels=16, joint_attention_dim=4096,
                         num_attention_heads=24, num_layers=24, out_channels=16, patch_size=2,
                         pooled_projection_dim=2048, pos_embed_max_size=384, qk_norm="rms_norm", sample_size=128,
                         dual_attention_layers=tuple(range(13)))
SD3_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2, sample_size=1024,
               block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=1.5305, shift_factor=0.0609,
               use_quant_conv=False, use_post_quant_conv=False)


def build_pipeline():
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from tests.tiny_flow_models import write_t5_tokenizer
    from tests.tiny_models import write_tokenizer

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(**SD35M_TRANSFORMER).eval()

    def clip(hidden):
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=86, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, projection_dim=hidden, bos_token_id=84, eos_token_id=85,
            pad_token_id=85)).eval()

    tok5 = write_t5_tokenizer()
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok5), d_model=4096, d_ff=256, d_kv=64, num_heads=8, num_layers=1)).eval()
    tok = write_tokenizer(77)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=AutoencoderKL(**SD3_VAE).eval(), text_encoder=clip(768), tokenizer=tok,
                                    text_encoder_2=clip(1280), tokenizer_2=tok, text_encoder_3=t5, tokenizer_3=tok5)
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3):
        m.requires_grad_(False)
    return pipe


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--guidance", type=float, default=4.5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from hspace_studio.engine import sample
    from hspace_studio.engine.model import DiffusionModel
    from hspace_studio.engine.sampler import EditSpec, edit
    from hspace_studio.engine.transformer_model import SD3, build

    t_build, pipe = clock(build_pipeline)
    pipe.to(args.device)
    dev = torch.device(args.device)
    n_params = sum(p.numel() for p in pipe.transformer.parameters())
    print(f"SD3.5-medium-size transformer: {n_params / 1e9:.2f} B parameters, built in {t_build:.0f} s; "
          f"{args.size} px, {args.steps} steps, guidance {args.guidance}, {torch.get_num_threads()} threads")
    denoiser, schedule, shape = build(pipe, SD3, (args.size, args.size), dev)
    model = DiffusionModel(denoiser=denoiser, scheduler=schedule, vae=pipe.vae, fingerprint="bench", source="bench",
                           device=dev, dtype=torch.float32, info={"sample_shape": list(shape), "family": "SD3"})
    prompt = "a portrait photo of an old man"
    model.set_prompt(prompt, "", args.guidance)
    model.denoiser.conditioning.kwargs(1, True)  # encoded once, outside the timings

    def pipeline_run():
        with torch.no_grad():
            return pipe(prompt=prompt, num_inference_steps=args.steps, height=args.size, width=args.size,
                        guidance_scale=args.guidance, generator=torch.Generator().manual_seed(1),
                        output_type="latent").images

    def ours():
        return sample(model, [1], steps=args.steps, eta=0.0)[0]

    t_pipe, lat = clock(pipeline_run)
    t_ours, traj = clock(ours)
    delta = torch.randn(traj.hs.shape, generator=torch.Generator().manual_seed(0)) * traj.hs.std()
    t_edit, _ = clock(lambda: edit(model, traj, [EditSpec(delta, 1.0)]))
    err = float((lat[0].cpu() - traj.x_0).abs().max() / lat.abs().max())
    h_mb = traj.hs[0].numel() * 4 / 2 ** 20
    print(f"StableDiffusion3Pipeline  {t_pipe:8.1f} s  1.00x")
    print(f"hspace-studio sample      {t_ours:8.1f} s  {t_ours / t_pipe:.2f}x  (latents {err:.1e} relative to the pipeline's)")
    print(f"hspace-studio edit        {t_edit:8.1f} s  {t_edit / t_pipe:.2f}x  (every step edited)")
    print(f"h per step {tuple(traj.hs.shape[1:])}: {h_mb:.2f} MiB")


if __name__ == "__main__":
    main()
