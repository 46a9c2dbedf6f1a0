"""Tiny transformer (DiT / MMDiT / flow-matching) diffusers pipelines that tests build and save,
loaded by path like a user's checkpoint. Random weights, every module seeded, tokenizers written
by the test: nothing is downloaded.

Each ``save_*`` builds its pipeline, saves it with ``save_pretrained(folder)`` and returns the
folder. All of them make 16x16-pixel images by default (VAE with two levels: a factor of 2, so
8x8 latents). Companion of ``tests/tiny_models.py`` (CLIP tokenizer and encoders come from there).
"""
from __future__ import annotations

import string
from pathlib import Path

import torch

from tests.tiny_models import _tiny_clip, write_tokenizer

# ------------------------------------------------------------------ shared pieces

# Pieces of the T5 tokenizer: T5's own special ids (<pad> 0, </s> 1, <unk> 2), the word-start
# marker, then each letter, digit and a little punctuation alone and word-initial.
_T5_CHARS = string.ascii_lowercase + string.digits + ".,!?'-"
T5_VOCAB_SIZE = 4 + 2 * len(_T5_CHARS)


def write_t5_tokenizer(max_length: int = 512):
    """A T5 tokenizer written by the test: a unigram model (``tokenizers`` library) over single
    characters, wrapped as ``T5TokenizerFast`` so that ``save_pretrained``/``from_pretrained``
    round-trip (``tokenizer.json``). ``T5_VOCAB_SIZE`` ids; every text ends with ``</s>`` (id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in _T5_CHARS]
    pieces += [("\u2581" + c, -2.5) for c in _T5_CHARS]
    tk = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(),
         pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tk.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tk, extra_ids=0, model_max_length=max_length,
                           pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _tiny_t5(d_model: int = 32, seed: int = 3):
    """A two-layer T5 v1.1-style encoder (gated GELU, no tied embeddings)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=T5_VOCAB_SIZE, d_model=d_model, d_kv=8, d_ff=37, num_layers=2,
                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                   feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0, tie_word_embeddings=False)
    return T5EncoderModel(cfg).eval()


def _tiny_vae16(scaling_factor: float, shift_factor: float | None, seed: int = 0):
    """An AutoencoderKL with 16 latent channels (SD3 / Flux / Z-Image style: no quant convs)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=16,
                         norm_num_groups=4, sample_size=16, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, use_quant_conv=False, use_post_quant_conv=False)


def _tiny_vae4(scaling_factor: float, seed: int = 0):
    """An AutoencoderKL with 4 latent channels (SD / SDXL-VAE style, as PixArt and DiT use)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                         norm_num_groups=4, sample_size=16, scaling_factor=scaling_factor)


# ------------------------------------------------------------------ Stable Diffusion 3

def save_sd3_model(folder: Path, with_t5: bool = True) -> Path:
    """A tiny Stable Diffusion 3 folder (``StableDiffusion3Pipeline``): an MMDiT with 2 joint
    blocks (inner dim 32, patch 2, sample_size 8 latents), two CLIP encoders with projection
    (hidden 32 each: 64 concatenated, pooled 64), a T5 encoder (d_model 96 = joint_attention_dim,
    so the CLIP embeddings are zero-padded from 64 to 96 as SD3 pads 2048 to 4096), flow matching
    with SD3's static shift 3.0 and a 16-channel VAE with SD3's scaling/shift factors.

    ``with_t5=False``: no text_encoder_3/tokenizer_3 (SD3 then feeds zeros for the T5 part).
    model_index.json then says ``[null, null]`` for them, and diffusers 0.42 loads such a folder
    only when told: ``StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None,
    tokenizer_3=None)`` (without them: "expected [...] but only {...} were passed")."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    folder = Path(folder)
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=2,
                                        attention_head_dim=16, num_attention_heads=2,
                                        joint_attention_dim=96, caption_projection_dim=32,
                                        pooled_projection_dim=64, out_channels=16, pos_embed_max_size=16)
    tok = write_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_tiny_vae16(scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=_tiny_clip(True, seed=1), tokenizer=tok,
        text_encoder_2=_tiny_clip(True, seed=2), tokenizer_2=tok,
        text_encoder_3=_tiny_t5(96) if with_t5 else None,
        tokenizer_3=write_t5_tokenizer() if with_t5 else None)
    pipe.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------ Flux.1

def save_flux_model(folder: Path, guidance_embeds: bool = True) -> Path:
    """A tiny Flux.1 folder (``FluxPipeline``): 1 double-stream and 2 single-stream blocks (inner
    dim 32 = 2 heads x 16, RoPE axes 4+6+6), 2x2-packed 16-channel latents (in_channels 64), a
    CLIP text encoder (pooled 32) and a T5 encoder (d_model 32), flow matching with Flux.1-dev's
    dynamic shift settings and a 16-channel VAE with Flux's scaling/shift factors.

    ``guidance_embeds=True`` is dev-style (guidance-distilled: the guidance scale is an input of
    the transformer); ``False`` is schnell-style."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )

    folder = Path(folder)
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2,
                                         attention_head_dim=16, num_attention_heads=2,
                                         joint_attention_dim=32, pooled_projection_dim=32,
                                         guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=_tiny_vae16(scaling_factor=0.3611, shift_factor=0.1159),
                        text_encoder=_tiny_clip(False, seed=1), tokenizer=write_tokenizer(),
                        text_encoder_2=_tiny_t5(32), tokenizer_2=write_t5_tokenizer(),
                        transformer=transformer)
    pipe.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------ PixArt-Sigma

def save_pixart_model(folder: Path) -> Path:
    """A tiny PixArt-Sigma folder (``PixArtSigmaPipeline``): a 2-block PixArt transformer (inner
    dim 32, patch 2, sample_size 8, learned sigma: out_channels 8 = 2 x 4), a T5 encoder
    (d_model 32 = caption_channels), a 4-channel VAE with the SDXL VAE's scaling factor and
    ``DPMSolverMultistepScheduler()`` with its defaults, which is what diffusers' PixArt-Sigma
    conversion script ships (linear betas 1e-4..0.02, dpmsolver++, order 2, epsilon).

    sample_size 8 is none of PixArt's resolution bins (32/64/128/256): call the pipeline with
    ``use_resolution_binning=False``."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    folder = Path(folder)
    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                           out_channels=8, num_layers=2, cross_attention_dim=32,
                                           sample_size=8, patch_size=2, caption_channels=32,
                                           use_additional_conditions=False, interpolation_scale=1)
    pipe = PixArtSigmaPipeline(tokenizer=write_t5_tokenizer(300), text_encoder=_tiny_t5(32),
                               vae=_tiny_vae4(scaling_factor=0.13025), transformer=transformer,
                               scheduler=DPMSolverMultistepScheduler())
    pipe.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------ DiT (class-conditional)

DIT_ID2LABEL = {0: "tench, Tinca tinca", 1: "goldfish, Carassius auratus", 2: "white shark",
                3: "cat", 999: "toilet tissue"}


def save_dit_model(folder: Path) -> Path:
    """A tiny DiT folder (``DiTPipeline``): a 2-block ``DiTTransformer2DModel`` (inner dim 32,
    patch 2, sample_size 8, 1000 classes + the null class 1000 that guidance uses, learned
    sigma: out_channels 8), a 4-channel VAE and a DDIM scheduler as facebook/DiT-XL-2-* ship
    (linear betas 1e-4..0.02, no clipping). Class names (``pipe.labels``, ``get_label_ids``)
    come from ``id2label`` in ``model_index.json``. Always 16x16 pixels (DiT takes no size)."""
    import json

    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    folder = Path(folder)
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                        out_channels=8, num_layers=2, sample_size=8, patch_size=2,
                                        num_embeds_ada_norm=1000)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001,
                              beta_end=0.02, clip_sample=False)
    pipe = DiTPipeline(transformer=transformer, vae=_tiny_vae4(scaling_factor=0.18215), scheduler=scheduler,
                       id2label=DIT_ID2LABEL)
    pipe.save_pretrained(folder)
    # DiTPipeline does not register id2label in its config: write it into model_index.json as the
    # hub's DiT folders have it, so that from_pretrained passes it back to __init__.
    index = folder / "model_index.json"
    cfg = json.loads(index.read_text())
    if "id2label" not in cfg:
        cfg["id2label"] = {str(k): v for k, v in DIT_ID2LABEL.items()}
        index.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return folder


# ------------------------------------------------------------------ Z-Image (2025)

_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                  "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_chat_tokenizer(max_length: int = 512):
    """A chat tokenizer written by the test for Z-Image's Qwen-style prompt: a word-level model
    over single characters (text split into characters), ``<|endoftext|>`` (pad, id 0),
    ``<|im_start|>``/``<|im_end|>`` and a ChatML chat template, as ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,!?'-_: \n"
    vocab = {t: i for i, t in enumerate(specials + list(chars))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=max_length, pad_token="<|endoftext|>",
                                  eos_token="<|im_end|>", unk_token="<unk>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = _CHAT_TEMPLATE
    return tok


def save_zimage_model(folder: Path) -> Path:
    """A tiny Z-Image folder (``ZImagePipeline``, Tongyi-MAI, late 2025): a single-stream DiT
    (dim 32 = 2 heads x 16, RoPE axes 4+6+6, 1 noise-refiner + 1 context-refiner + 2 main
    layers, patch 2), a 2-layer Qwen3 text encoder (hidden 32 = cap_feat_dim; the pipeline takes
    its second-to-last hidden state) with a test-written chat tokenizer, flow matching with
    Z-Image-Turbo's static shift 3.0 and a 16-channel VAE with Flux's scaling/shift factors."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3Model

    folder = Path(folder)
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32,
                                           n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2,
                                           cap_feat_dim=32, axes_dims=[4, 6, 6], axes_lens=[1024, 64, 64])
    tok = write_chat_tokenizer()
    torch.manual_seed(4)
    text_encoder = Qwen3Model(Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          head_dim=8, max_position_embeddings=1024, pad_token_id=0,
                                          tie_word_embeddings=False)).eval()
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
                          vae=_tiny_vae16(scaling_factor=0.3611, shift_factor=0.1159),
                          text_encoder=text_encoder, tokenizer=tok, transformer=transformer)
    pipe.save_pretrained(folder)
    return folder
