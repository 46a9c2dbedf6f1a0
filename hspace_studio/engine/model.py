"""Load a pretrained unconditional diffusion model.

``load_model(source)`` accepts:

- ``"default"``: the embedded toyfaces model in ``resources/default-model``;
- ``"default-10step"``: its ten-step variant in ``resources/default-model-10step``, distilled
  from the guided 50-step sampler (:mod:`..training.distill`) for 10 steps at its recorded
  timesteps, unguided;
- a local diffusers folder: a pixel ``UNet2DModel`` (weights and ``config.json`` at
  the top, or in ``unet/``) with its scheduler config (``scheduler_config.json`` at
  the top, or ``scheduler/``), or a latent model: ``unet/`` plus ``vqvae/`` or
  ``vae/`` (``VQModel`` or ``AutoencoderKL``);
- a text-to-image folder: Stable Diffusion 1.x / 2.x or SDXL (:mod:`.text_model`), which
  then takes a prompt, a negative prompt and a guidance scale (:meth:`DiffusionModel.set_prompt`);
- a hub id such as ``google/ddpm-ema-celebahq-256`` (needs the hub to be reachable).

Whatever scheduler the checkpoint names, sampling uses a ``DDIMScheduler`` built from
its config (``eta`` = 0 is DDIM, ``eta`` = 1 is DDPM). ``clip_sample`` and
``thresholding`` are switched off unless asked for: clipping x_0 is not invertible
(DDIM inversion) and has zero gradient (Jacobian). ``set_alpha_to_one`` is the config's
(diffusers' default, true, where the config does not name it), so a chain equals
``DDIMPipeline``'s; a last step into alpha-bar 1 carries no noise, and edit-friendly
inversion stores its residual instead (:func:`.sampler.noise_levels`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..core.errors import ModelLoadError, reason
from ..core.spacing import parse_spacing, spacing_name
from .architectures import UNetArchitecture
from .denoiser import Denoiser, Guide, Prompt
from .guidance import check_guide
from .text_model import CONDITIONING_KEYS, PromptEncoder, default_guidance, is_text_to_image, load_text_pipeline
from . import lora
from .timesteps import SCHEDULE_KEYS, spaced_scheduler_class
from .custom_vae import load_vae
from .schedules import own_schedule, ships_own_sampler
from .transformer_model import family_of
from ..core.checkpoint_names import CHECKPOINT_SUFFIXES
from .checkpoint_file import is_checkpoint_file

RESOURCES = Path(__file__).resolve().parent.parent.parent / "resources"
DEFAULT_MODEL_DIR = RESOURCES / "default-model"
# the default model's guide (autoguidance, :mod:`.guidance`): an earlier checkpoint of its run
DEFAULT_GUIDE_DIR = RESOURCES / "default-model-guide"
DEFAULT_GUIDE_WEIGHT = 4.0
# the default model distilled for ten steps (training.distill); samples well only at 10 steps
DEFAULT_10STEP_DIR = RESOURCES / "default-model-10step"
LCM_GUIDANCE = 8.5  # LatentConsistencyModelPipeline's default guidance scale


def pick_device(device: Optional[str] = None) -> torch.device:
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ModelLoadError(f"unknown device '{device}' (use cpu, cuda or cuda:N)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but no CUDA GPU is available")
    return dev


@dataclass
class DiffusionModel:
    """A loaded model: denoiser (:class:`.denoiser.Denoiser`), sampling scheduler, optional
    autoencoder."""

    denoiser: Denoiser
    scheduler: object  # diffusers DDIMScheduler
    vae: Optional[torch.nn.Module]
    fingerprint: str
    source: str
    device: torch.device
    dtype: torch.dtype
    info: dict = field(default_factory=dict)
    # the weights and noise schedule alone (no guide): what a direction file is made for,
    # since directions live in the model's own h-space whether or not a guide steers it
    weights_fingerprint: Optional[str] = None

    def __post_init__(self) -> None:
        if self.weights_fingerprint is None:
            self.weights_fingerprint = self.fingerprint

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def net(self) -> torch.nn.Module:
        """The diffusers network itself (for its weights; calls go through :attr:`denoiser`)."""
        return self.denoiser.net

    @property
    def takes_prompt(self) -> bool:
        """Whether this is a conditional (text-to-image) model."""
        return self.denoiser.conditioning is not None

    @property
    def conditioning(self) -> dict:
        """The prompt, negative prompt and guidance in use ({} for an unconditional model):
        what trajectories and recipes record."""
        return self.denoiser.conditioning.prompt.as_dict() if self.takes_prompt else {}

    def set_prompt(self, prompt: Optional[str] = None, negative_prompt: Optional[str] = None,
                   guidance: Optional[float] = None) -> None:
        """Set what a text-to-image model samples, inverts and edits under; None keeps the
        current value. An unconditional model refuses a prompt."""
        if not self.takes_prompt:
            if prompt or negative_prompt or guidance is not None:
                raise ModelLoadError(f"{self.source} is an unconditional model: it takes no prompt "
                                     "or guidance scale")
            return
        cur = self.denoiser.conditioning.prompt
        g = cur.guidance if guidance is None else float(guidance)
        if not g == g or g in (float("inf"), float("-inf")):
            raise ValueError("the guidance scale must be a finite number")
        self.denoiser.conditioning.set(Prompt(cur.prompt if prompt is None else str(prompt),
                                    cur.negative_prompt if negative_prompt is None else str(negative_prompt), g))

    def use_conditioning(self, origin: dict) -> None:
        """Condition on what a trajectory's ``origin`` records (its prompt), so that it replays
        as it was made. No-op for unconditional models."""
        if self.takes_prompt:
            self.set_prompt(*(origin.get(k) for k in CONDITIONING_KEYS))

    def point(self, h_space: Optional[str] = None) -> str:
        """``h_space``, or the network's default h-space point when None."""
        return self.denoiser.default_point() if h_space is None else h_space

    @property
    def is_flow(self) -> bool:
        """Whether this is a flow-matching model (its scheduler a :class:`.flow.FlowSchedule`)."""
        return bool(getattr(self.scheduler, "is_flow", False))

    @property
    def sample_shape(self) -> tuple:
        """Shape (C, H, W) of x_t, the space the diffusion runs in."""
        if "sample_shape" in self.info:
            return tuple(self.info["sample_shape"])
        size = self.net.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (self.net.config.in_channels, h, w)

    @property
    def image_size(self) -> tuple:
        """(H, W) of the images the model makes."""
        _, h, w = self.sample_shape
        if self.vae is None:
            return (h, w)
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return (h * f, w * f)

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    def jacobian_output(self, model_output, x, t):
        """What the Jacobian method differentiates with respect to h: the noise estimate eps
        (the paper's), or for a flow model the velocity itself (its eps = x + (1 - sigma) v
        does not depend on the network at sigma 1, the first step)."""
        return model_output if self.is_flow else self.predict_eps(model_output, x, t)

    def network_input(self, x, t):
        """What the network is given for x_t (an Euler schedule scales it; others: x itself)."""
        return self.scheduler.model_input(x, t) if self.own_step else x

    @property
    def own_step(self) -> bool:
        """Whether the scheduler does its own update (flow matching, Euler, LCM: :mod:`.schedules`)."""
        return bool(getattr(self.scheduler, "own_step", False))

    def predict_eps(self, model_output, x, t):
        """Convert the network's output at timestep ``t`` to the noise estimate eps."""
        if self.own_step:
            return self.scheduler.predictions(model_output, t, x)[1]
        ab = self.scheduler.alphas_cumprod[int(t)].to(x.device, torch.float32)
        p = self.prediction_type
        if p == "epsilon":
            return model_output
        if p == "v_prediction":
            return ab.sqrt() * model_output + (1 - ab).sqrt() * x
        if p == "sample":
            return (x - ab.sqrt() * model_output) / (1 - ab).sqrt()
        raise ModelLoadError(f"unsupported prediction type '{p}'")

    # -- pixel <-> diffusion space -------------------------------------------------
    def to_pixels(self, x0: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """Images in [-1, 1] (unclamped) from x_0 of the diffusion space; with ``grad`` the
        decoder keeps the autograd graph back to ``x0``."""
        if self.vae is None:
            return x0
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            z = x0.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor + self._latent_shift
            return self.vae.decode(z).sample.float()

    @property
    def _latent_shift(self) -> float:
        """The autoencoder's ``shift_factor`` (SD3, Flux), 0 for those without one."""
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    @torch.no_grad()
    def from_pixels(self, img: torch.Tensor) -> torch.Tensor:
        """x_0 of the diffusion space for images in [-1, 1] at :attr:`image_size`."""
        if self.vae is None:
            return img.to(self.device, torch.float32)
        enc = self.vae.encode(img.to(self.device, self.vae.dtype))
        z = enc.latents if hasattr(enc, "latents") else enc.latent_dist.mode()
        return ((z - self._latent_shift) * self.vae.config.scaling_factor).float()

    def describe(self) -> str:
        c, h, w = self.sample_shape
        kind = "latent" if self.is_latent else "pixel"
        guided = ""
        if self.info.get("guide") is not None:
            iv = self.info.get("guide_interval")
            guided = (f", guided by {self.info['guide']} at weight {self.info['guide_weight']:g}"
                      + (f" on timesteps {iv[0]}:{iv[1]}" if iv else ""))
        weights = f", weights {self.weights_fingerprint}" if self.weights_fingerprint != self.fingerprint else ""
        if self.info.get("timesteps"):
            guided += f", timesteps {self.info['timesteps']}"
        if self.takes_prompt:
            kind = "text-to-image, " + self.info.get("family", "SDXL" if self.info.get("xl") else "SD")
        if self.info.get("checkpoint"):
            kind += f", {self.info['checkpoint']['family']} checkpoint file"
        if self.own_step and not self.is_flow:  # a few-step model's own sampler
            guided += f", {type(self.scheduler.scheduler).__name__.replace('Scheduler', '')} sampler"
        elif self.info.get("scheduler_config") and not self.is_flow:  # what DDIM was built from
            guided += f", DDIM sampler from its {self.info['scheduler_config']} config"
        for lo in self.info.get("loras") or ():
            guided += f", LoRA {Path(lo['path']).name} at {lo['weight']:g}"
        if self.info.get("vae"):
            guided += f", VAE {Path(self.info['vae']).name}"
        return (f"{self.source} ({kind}, {c}x{h}x{w}, {self.prediction_type}{guided}, "
                f"fingerprint {self.fingerprint}{weights}, {self.device})")


def _fingerprint(modules, scheduler_config: dict, extra: Optional[dict] = None) -> str:
    """Stable id of a model: its weights and the noise schedule (and ``extra``, e.g. the
    guidance settings), not device or dtype."""
    h = hashlib.sha256()
    h.update(json.dumps({k: scheduler_config.get(k) for k in SCHEDULE_KEYS}, sort_keys=True,
                        default=str).encode())
    if extra:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for mod in modules:
        if mod is None:
            continue
        for name, t in sorted(mod.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ModelLoadError(f"cannot read {path}: {reason(e)}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def _find_component(root: Path, names, config="config.json"):
    for n in names:
        d = root / n if n else root
        if (d / config).is_file():
            return d
    return None


def _quiet_diffusers() -> None:
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()


def _own_memory(module) -> None:
    """Give every CPU weight its own memory. ``from_pretrained`` leaves them mapped from the
    safetensors file, so rewriting that file in place (a copy over it, a retrain into the
    same folder) while the model is loaded would kill the process with SIGBUS."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.device.type == "cpu":
                t.data = t.data.clone()


def _load_folder(root: Path, vae_spec: Optional[str] = None):
    from diffusers import AutoencoderKL, UNet2DModel, VQModel

    _quiet_diffusers()

    unet_dir = _find_component(root, ("unet", ""))
    if unet_dir is None:
        raise ModelLoadError(f"{root} is not a diffusers model folder (no config.json or unet/)")
    ucfg = _read_json(unet_dir / "config.json")
    if ucfg.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ModelLoadError(f"{unet_dir}: only unconditional UNet2DModel denoisers are supported, "
                             f"found {ucfg.get('_class_name')}")
    sched_dir = _find_component(root, ("scheduler", ""), "scheduler_config.json")
    if sched_dir is None:
        raise ModelLoadError(f"{root}: no scheduler_config.json (top level or scheduler/)")
    scfg = _read_json(sched_dir / "scheduler_config.json")
    try:
        unet = UNet2DModel.from_pretrained(unet_dir)
    except Exception as e:  # diffusers raises many types for broken folders
        raise ModelLoadError(f"cannot load the UNet in {unet_dir}: {reason(e)}") from e
    vae = None
    vae_dir = _find_component(root, ("vqvae", "vae"))
    if vae_dir is not None:
        vcfg = _read_json(vae_dir / "config.json")
        cls = {"VQModel": VQModel, "AutoencoderKL": AutoencoderKL}.get(vcfg.get("_class_name"))
        if cls is None:
            raise ModelLoadError(f"{vae_dir}: unsupported autoencoder {vcfg.get('_class_name')}")
        try:
            vae = cls.from_pretrained(vae_dir)
        except Exception as e:
            raise ModelLoadError(f"cannot load the autoencoder in {vae_dir}: "
                                 f"{reason(e)}") from e
    if vae_spec is not None:
        if vae is None:
            raise ModelLoadError(f"{root} is a pixel-space model: it has no autoencoder to replace (--vae)")
        vae = load_vae(vae_spec, vae, vae_dir)
    return unet, scfg, vae


def make_scheduler(config: dict, clip_sample: bool = False, power: Optional[float] = None):
    """The sampling scheduler: diffusers' ``DDIMScheduler`` from ``config``, or with
    ``power`` its power-spaced form (:mod:`.timesteps`)."""
    from diffusers import DDIMScheduler

    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    cfg.update(clip_sample=bool(clip_sample), thresholding=False)
    if power is None:
        return DDIMScheduler.from_config(cfg)
    sched = spaced_scheduler_class().from_config(cfg)
    sched.timestep_power = float(power)
    return sched


def _model_root(src: str, variant: Optional[str] = None, progress=None, cancel=None) -> Path:
    if src == "default":
        root = DEFAULT_MODEL_DIR
        if not root.is_dir():
            raise ModelLoadError(f"the embedded default model is missing ({root}); "
                                 f"train it with `python -m hspace_studio.training.ddpm`")
    elif src == "default-10step":
        root = DEFAULT_10STEP_DIR
        if not root.is_dir():
            raise ModelLoadError(f"the default model's ten-step variant is missing ({root}); "
                                 f"distil it with `python -m hspace_studio.training.distill`")
    elif Path(src).expanduser().exists():
        root = Path(src).expanduser()
        if not root.is_dir():
            raise ModelLoadError(f"{root} is neither a model folder nor a checkpoint file "
                                 f"({', '.join(CHECKPOINT_SUFFIXES)})")
    elif src.count("/") == 1 and not src.startswith((".", "/", "~")):
        from .hub import download

        root = download(src, variant=variant, progress=progress, cancel=cancel)
    else:
        raise ModelLoadError(f"no model folder '{src}' (pass 'default', a local folder or a hub id)")
    return root


def recorded_timesteps(root: Path) -> Optional[str]:
    """The timestep spacing a model folder was trained to sample at (``sampling_timesteps``
    in its ``training.json``, written by :mod:`..training.distill`); None if it names none."""
    info = root / "training.json"
    if not info.is_file():
        return None
    value = _read_json(info).get("sampling_timesteps")
    return str(value) if value else None


def _load_guide(guide: str, unet, scfg: dict):
    if guide == "default":
        root = DEFAULT_GUIDE_DIR
        if not root.is_dir():
            raise ModelLoadError(f"the default model's guide is missing ({root})")
    else:
        root = Path(guide).expanduser()
        if not root.is_dir():
            raise ModelLoadError(f"no guide model folder '{guide}' (pass 'default' or a local folder)")
    g_unet, g_scfg, _ = _load_folder(root)
    check_guide(unet, g_unet, scfg, g_scfg, str(guide))
    return g_unet


def _sampling_scheduler(src: str, scfg: dict, clip_sample: bool, power):
    if power is None and ships_own_sampler(scfg):  # a few-step model keeps its own sampler
        import diffusers

        try:
            sched = own_schedule(getattr(diffusers, scfg["_class_name"]).from_config(
                {k: v for k, v in scfg.items() if not k.startswith("_")}))
            sched.set_timesteps(2)
        except Exception as e:  # a scheduler config diffusers cannot use
            raise ModelLoadError(f"{src}: unusable scheduler config ({reason(e, 120)})") from e
        return sched
    try:
        sched = make_scheduler(scfg, clip_sample, power)
        sched.set_timesteps(10)
    except Exception as e:  # a scheduler config diffusers cannot use
        raise ModelLoadError(f"{src}: unusable scheduler config ({reason(e, 120)})") from e
    if sched.config.prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ModelLoadError(f"{src}: unsupported prediction type '{sched.config.prediction_type}'")
    return sched


def _prepare_pipeline(pipe, net, root: Path, src: str, dev: torch.device, half: bool, loras, vae_spec,
                      upcast_vae: bool = False):
    """What every pipeline model goes through: a custom autoencoder put in place, the fingerprint
    of the float32 weights (with the LoRAs on them), then the pipeline on the device, frozen, each
    weight in memory of its own. Returns (the scheduler's config with its class name, the
    fingerprint, the LoRAs' records, the dtype)."""
    if half and dev.type != "cuda":
        raise ModelLoadError("half precision needs a CUDA device")
    dtype = torch.float16 if half else torch.float32
    if vae_spec is not None:
        pipe.vae = load_vae(vae_spec, pipe.vae, root / "vae" if (root / "vae").is_dir() else None)
    scfg = dict(pipe.scheduler.config, _class_name=type(pipe.scheduler).__name__)
    encoders = [getattr(pipe, n, None) for n in ("text_encoder", "text_encoder_2", "text_encoder_3")]
    try:
        fp = _fingerprint([net, pipe.vae, *encoders], scfg)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{src}: unusable scheduler config ({e})") from e
    lora_recs = lora.apply(pipe, loras)
    fp = lora.fingerprint_with(fp, lora_recs)
    pipe.to(dev, dtype)
    if upcast_vae and half and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's autoencoder overflows in float16, as its config says
    for m in [net, pipe.vae, *encoders]:
        if m is not None:
            m.eval().requires_grad_(False)
            _own_memory(m)
    return scfg, fp, lora_recs, dtype


def _load_text_model(root: Path, src: str, dev: torch.device, half: bool, clip_sample: bool,
                     power, loras=(), vae_spec: Optional[str] = None, pipe=None) -> DiffusionModel:
    """A Stable Diffusion 1.x/2.x or SDXL folder (:mod:`.text_model`), or its pipeline ``pipe``
    built from a checkpoint file ``root``."""
    _quiet_diffusers()
    if pipe is None:
        pipe, xl = load_text_pipeline(root)  # float32: fingerprinted so, converted after
    else:
        xl = getattr(pipe, "text_encoder_2", None) is not None
    scfg, fp, lora_recs, dtype = _prepare_pipeline(pipe, pipe.unet, root, src, dev, half, loras, vae_spec,
                                                   upcast_vae=True)
    if pipe.unet.mid_block is None:
        raise ModelLoadError(f"{src}: the UNet has no mid-block, so it has no h-space")
    ucfg = pipe.unet.config
    if not ucfg.in_channels == ucfg.out_channels == pipe.vae.config.latent_channels:
        raise ModelLoadError(f"{src}: the UNet takes {ucfg.in_channels} channels and makes {ucfg.out_channels} "
                             f"(an inpainting or image-conditioned model?); only text-to-image models whose "
                             f"UNet maps the {pipe.vae.config.latent_channels} latent channels to themselves load")
    sched = _sampling_scheduler(src, scfg, clip_sample, power)
    vae_f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = pipe.unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    encoder = PromptEncoder(pipe, xl, (h * vae_f, w * vae_f))
    # an LCM-distilled UNet takes its guidance as an input, 8.5 by its pipeline's default
    guidance = LCM_GUIDANCE if encoder.guidance_embedded else default_guidance(xl)
    denoiser = Denoiser(pipe.unet, UNetArchitecture(), encoder.conditioning(guidance))
    cross = int(getattr(pipe.unet.config, "cross_attention_dim", 0) or 0)
    info = {"root": str(root), "xl": xl, "scheduler_config": scfg["_class_name"],
            "family": "SDXL" if xl else {768: "SD 1.x", 1024: "SD 2.x"}.get(cross, "SD")}
    if lora_recs:
        info["loras"] = lora_recs
    if power is not None:
        info["timesteps"] = spacing_name(power)
    return DiffusionModel(denoiser=denoiser, scheduler=sched, vae=pipe.vae, fingerprint=fp, source=src,
                          device=dev, dtype=dtype, info=info)


def _load_transformer_model(root: Path, family, src: str, dev: torch.device, half: bool,
                            image_size, clip_sample: bool = False, power=None, loras=(),
                            vae_spec: Optional[str] = None, pipe=None) -> DiffusionModel:
    """A transformer folder (:mod:`.transformer_model`), or its pipeline ``pipe`` built from a
    checkpoint file ``root``."""
    from . import transformer_model

    _quiet_diffusers()
    if pipe is None:
        pipe = transformer_model.load_pipeline(root, family)
    scfg, fp, lora_recs, dtype = _prepare_pipeline(pipe, pipe.transformer, root, src, dev, half, loras, vae_spec)
    denoiser, schedule, shape = transformer_model.build(pipe, family, image_size, dev)
    info = {"root": str(root), "family": family.name, "sample_shape": list(shape),
            "negative_prompt": family.negative}
    if lora_recs:
        info["loras"] = lora_recs
    if not family.fixed_size:
        info["image_size"] = [int(v) for v in (image_size or family.default_size(pipe))]
    if schedule is None:  # a noise-predicting transformer: DDIM from its scheduler's config
        schedule = _sampling_scheduler(src, scfg, clip_sample, power)
        if power is not None:
            info["timesteps"] = spacing_name(power)
    return DiffusionModel(denoiser=denoiser, scheduler=schedule, vae=pipe.vae, fingerprint=fp, source=src,
                          device=dev, dtype=dtype, info=info)


def _load_checkpoint_file(path: Path, src: str, model_config, dev: torch.device, half: bool, image_size,
                          clip_sample: bool, power, loras, vae_spec) -> DiffusionModel:
    """A single-file checkpoint (:mod:`.checkpoint_file`): its family detected from its keys, its
    pipeline built with the configs of ``model_config`` (a diffusers folder) or the hub's."""
    from .checkpoint_file import inspect_checkpoint, load_checkpoint_pipeline
    from .transformer_model import FAMILIES

    kind = inspect_checkpoint(path)
    _quiet_diffusers()
    pipe = load_checkpoint_pipeline(path, kind, model_config)
    if kind.pipeline in FAMILIES:
        model = _load_transformer_model(path, FAMILIES[kind.pipeline], src, dev, half, image_size, clip_sample,
                                        power, loras, vae_spec, pipe=pipe)
    else:
        if image_size is not None:
            raise ModelLoadError("a UNet model makes images of the size it was trained at; --size is for "
                                 "transformer models")
        model = _load_text_model(path, src, dev, half, clip_sample, power, loras, vae_spec, pipe=pipe)
    model.info["checkpoint"] = {"family": kind.family, "file": str(path.resolve()),
                                "config": str(Path(model_config).expanduser().resolve()) if model_config else None}
    return model


def set_low_memory(model: DiffusionModel, on: bool) -> DiffusionModel:
    """With ``on`` the autoencoder decodes (and encodes) large images in overlapping tiles and a
    batch one image at a time, so its activations stay the size of a tile: the memory of a big
    image's decode falls to that of the autoencoder's own sample size. Images at or below that
    size are unchanged; above it the tiles' blended seams change pixels slightly (docs/speed.md).
    Off, whole images and batches again."""
    vae = model.vae
    if vae is None or not hasattr(vae, "enable_tiling"):
        return model
    if on:
        vae.enable_tiling()
        vae.enable_slicing()
        model.info["low_memory"] = True
    else:
        vae.disable_tiling()
        vae.disable_slicing()
        model.info.pop("low_memory", None)
    return model


def load_model(source: str = "default", device: Optional[str] = None, half: bool = False,
               clip_sample: bool = False, guide: Optional[str] = None,
               guide_weight: Optional[float] = None, guide_interval=None,
               timesteps: Optional[str] = None, image_size=None, loras=(), vae: Optional[str] = None,
               model_config: Optional[str] = None, variant: Optional[str] = None,
               progress=None, cancel=None, low_memory: bool = False) -> DiffusionModel:
    """Load a model by name, folder, single-file checkpoint or hub id. See the module docstring.

    ``low_memory``: decode and encode images in tiles, one at a time (:func:`set_low_memory`).

    ``variant``: for a hub id, the weights variant to fetch (``"fp16"``) where the repository has it.
    ``progress``, ``cancel``: a hub download's progress and Cancel (:mod:`.hub`).

    ``model_config``: for a checkpoint file, a diffusers folder of its family whose configs and
    tokenizers (for a transformer-only file also text encoders and autoencoder) complete it.

    ``image_size``: (H, W) of the images a transformer model makes (default: its pipeline's).

    ``loras``: LoRA files on a pipeline model's denoiser and text encoders (:mod:`.lora`:
    ``"file[:weight]"`` specs, ``LoRA`` objects or recipe dicts).

    ``vae``: an autoencoder (folder or file) in place of the model's own (:mod:`.custom_vae`).

    ``timesteps``: where the sampling steps fall, ``"scheduler"`` or ``"power:P"``
    (:mod:`.timesteps`); None: the spacing the folder records (:func:`recorded_timesteps`,
    a distilled model's), else the scheduler's.

    ``guide``: a folder (or ``"default"``: the default model's shipped guide) of a weaker
    model of the same kind; sampling then uses ``g + guide_weight (m - g)``
    (:mod:`.guidance`), at the timesteps ``guide_interval`` = (lo, hi) or at all."""
    model = _load(source, device, half, clip_sample, guide, guide_weight, guide_interval, timesteps, image_size,
                  loras, vae, model_config, variant, progress, cancel)
    if vae is not None:
        model.info["vae"] = str(Path(vae).expanduser().resolve())
    if variant is not None:
        model.info["variant"] = variant
    return set_low_memory(model, True) if low_memory else model


def _load(source: str, device: Optional[str], half: bool, clip_sample: bool, guide: Optional[str],
          guide_weight: Optional[float], guide_interval, timesteps: Optional[str], image_size, loras,
          vae: Optional[str], model_config: Optional[str], variant: Optional[str], progress, cancel) -> DiffusionModel:
    """The model of :func:`load_model`, before the records of its VAE and variant and its memory setting."""
    try:
        power = parse_spacing(timesteps)
    except ValueError as e:
        raise ModelLoadError(str(e)) from e
    dev = pick_device(device)
    src = str(source)
    if variant is not None and (Path(src).expanduser().exists() or src.startswith("default")):
        raise ModelLoadError(f"--variant chooses the weights a hub id downloads; {src} is a local model")
    if is_checkpoint_file(Path(src).expanduser()):
        if guide is not None or guide_weight is not None or guide_interval is not None:
            raise ModelLoadError("autoguidance (--guide) is for unconditional models; a checkpoint file holds a "
                                 "text-to-image model, which takes --guidance")
        model = _load_checkpoint_file(Path(src).expanduser(), src, model_config, dev, half, image_size,
                                      clip_sample, power, lora.as_loras(loras), vae)
        return model
    if model_config is not None:
        raise ModelLoadError("--model-config completes a single-file checkpoint (.safetensors, .ckpt); "
                             f"{src} is not one")
    root = _model_root(src, variant, progress, cancel)
    if timesteps is None and (recorded := recorded_timesteps(root)) is not None:
        try:
            power = parse_spacing(recorded)
        except ValueError as e:
            raise ModelLoadError(f"{root / 'training.json'}: {e}") from e
    family = family_of(root)
    if family is not None:
        if guide is not None or guide_weight is not None or guide_interval is not None:
            raise ModelLoadError(f"autoguidance (--guide) is for unconditional models; a {family.name} model "
                                 "takes --guidance")
        if power is not None and family.flow:
            raise ModelLoadError(f"{family.name} models sample at their own flow-matching sigmas: "
                                 "--timesteps does not apply")
        model = _load_transformer_model(root, family, src, dev, half, image_size, clip_sample, power,
                                        lora.as_loras(loras), vae)
        return model
    if image_size is not None:
        raise ModelLoadError("a UNet model makes images of the size it was trained at; --size is for "
                             "transformer models")
    if is_text_to_image(root):
        if guide is not None or guide_weight is not None or guide_interval is not None:
            raise ModelLoadError("autoguidance (--guide) is for unconditional models; a text-to-image "
                                 "model takes --guidance (classifier-free)")
        return _load_text_model(root, src, dev, half, clip_sample, power, lora.as_loras(loras), vae)
    if loras:
        raise ModelLoadError("LoRA files apply to Stable Diffusion and transformer pipelines; "
                             f"{src} is an unconditional UNet model")
    vae_spec = vae
    unet, scfg, vae = _load_folder(root, vae_spec)
    if unet.mid_block is None:
        raise ModelLoadError(f"{src}: the UNet has no mid-block, so it has no h-space")
    g_unet, extra = None, None
    if guide is not None:
        g_unet = _load_guide(str(guide), unet, scfg)
        weight = DEFAULT_GUIDE_WEIGHT if guide_weight is None else float(guide_weight)
        extra = {"guide_weight": weight,
                 "guide_interval": list(guide_interval) if guide_interval is not None else None}
    elif guide_weight is not None or guide_interval is not None:
        raise ModelLoadError("a guidance weight or interval needs a guide model (--guide)")
    try:
        fp = _fingerprint([unet, vae, g_unet], scfg, extra)
        weights_fp = fp if g_unet is None else _fingerprint([unet, vae], scfg)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{src}: unusable scheduler config ({e})") from e
    dtype = torch.float32
    if half:
        if dev.type != "cuda":
            raise ModelLoadError("half precision needs a CUDA device")
        dtype = torch.float16
    unet = unet.to(dev, dtype).eval().requires_grad_(False)
    _own_memory(unet)
    info = {"root": str(root)}
    if power is not None:
        info["timesteps"] = spacing_name(power)
    guide_ = None
    if g_unet is not None:
        g_unet = g_unet.to(dev, dtype).eval().requires_grad_(False)
        _own_memory(g_unet)
        try:
            guide_ = Guide(g_unet, extra["guide_weight"], guide_interval)
        except ValueError as e:
            raise ModelLoadError(str(e)) from e
        info.update(guide=str(guide), **extra)
    if vae is not None:
        vae = vae.to(dev, dtype).eval().requires_grad_(False)
        _own_memory(vae)
    sched = _sampling_scheduler(src, scfg, clip_sample, power)
    return DiffusionModel(denoiser=Denoiser(unet, UNetArchitecture(), guide=guide_), scheduler=sched,
                          vae=vae, fingerprint=fp, source=src, device=dev, dtype=dtype, info=info,
                          weights_fingerprint=weights_fp)
