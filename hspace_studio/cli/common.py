"""Options and helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from contextlib import contextmanager

from ..core.progress import CancelToken
from ..core.spacing import SPACINGS_HELP, parse_spacing
from ..core.specs import split_index  # noqa: F401 (the commands' FILE:INDEX options)


def add_model_args(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="'default' (embedded toyfaces model), 'default-10step' (its variant distilled "
                        "for 10 steps, unguided), a local diffusers folder, a single-file checkpoint "
                        "(.safetensors, .ckpt: SD 1.x/2.x, SDXL, SD3, Flux.1, Z-Image) or a hub id (default: "
                        "the domain's default model; the toy faces': 'default')")
    g.add_argument("--variant", default=None, metavar="NAME",
                   help="for a hub id: the weights variant to download where the repository has it (e.g. fp16)")
    g.add_argument("--model-config", dest="model_config", default=None, metavar="FOLDER",
                   help="for a checkpoint file: a diffusers folder of its family whose configs and tokenizers "
                        "(for a transformer-only file also text encoders and VAE) complete it (default: the "
                        "hub's, as diffusers takes them)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    g.add_argument("--half", action="store_true", help="half precision (CUDA only)")
    g.add_argument("--low-memory", dest="low_memory", action="store_true",
                   help="decode and encode images in tiles, one at a time: big images in the memory of the "
                        "autoencoder's own size (pixels above it change slightly at the tiles' seams; recorded)")
    g.add_argument("--compile", action="store_true",
                   help="compile the network for faster sampling and edits (torch.compile; the first "
                        "use builds it: tens of seconds on a CPU; same images to float32 rounding)")
    g.add_argument("--bf16", action="store_true",
                   help="run the network under bfloat16 autocast (CPUs with AMX/AVX-512 BF16, GPUs): "
                        "faster, images about 47 dB from float32's; recorded in the recipe")
    g.add_argument("--h-space", dest="h_space", default=None, metavar="POINT",
                   help="where h is read and edited: before, middle or after a UNet's mid-block (default "
                        "after), block:N for a transformer's block N (default the middle block)")
    g.add_argument("--list-h-points", dest="list_h_points", action="store_true",
                   help="list the model's h-space points and exit")
    g.add_argument("--lora", action="append", default=None, metavar="FILE[:W]",
                   help="a LoRA file (diffusers, kohya or PEFT format) on the model's denoiser and text "
                        "encoders, at weight W (default 1); repeat for several")
    g.add_argument("--vae", default=None, metavar="PATH",
                   help="an autoencoder (a diffusers folder or a .safetensors file) in place of the model's own")
    g.add_argument("--size", type=_size, default=None, metavar="HxW",
                   help="image size of a transformer model (default: its pipeline's), e.g. 1024x768")
    g.add_argument("--guide", default=None, metavar="FOLDER",
                   help="guide the model by a weaker one of the same kind (autoguidance): "
                        "'default' (the default model's shipped guide) or a model folder")
    g.add_argument("--guide-weight", dest="guide_weight", type=_finite_float, default=None, metavar="W",
                   help="guidance weight: output = guide + W (model - guide) (default 4; 1 = none)")
    g.add_argument("--guide-interval", dest="guide_interval", type=window, default=None, metavar="LO:HI",
                   help="guide only at timesteps LO..HI (default: at every step)")
    g.add_argument("--timesteps", type=_spacing, default=None, metavar="SPACING",
                   help="where the sampling steps fall: " + SPACINGS_HELP)
    if sampling:
        g.add_argument("--steps", type=_positive_int, default=None, help="diffusion steps (default 10)")
        g.add_argument("--eta", type=_eta, default=None,
                       help="noise: 0 = DDIM, 1 = DDPM, a comma-separated per-step schedule, or "
                            "last:F (eta 1 on the last fraction F of the steps, 0 before; first:F the "
                            "reverse; last:F:E for eta E) (default 1)")
        t = p.add_argument_group("prompt (text-to-image models: Stable Diffusion 1.x, 2.x, SDXL)")
        t.add_argument("--prompt", default=None, help="what to make (default: the empty prompt)")
        t.add_argument("--negative-prompt", dest="negative_prompt", default=None, metavar="TEXT",
                       help="what to steer away from (default: none)")
        t.add_argument("--guidance", type=_finite_float, default=None, metavar="SCALE",
                       help="classifier-free guidance scale (default: 7.5 for SD, 5 for SDXL; "
                            "<= 1 = no guidance, as for SD-Turbo)")


def _int_at_least(lo: int, what: str, hi=None):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{s}'")
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive number")
_nonneg_int = _int_at_least(0, "a number >= 0")


def _number(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{s}'") from None


def _nonneg_float(s: str) -> float:
    v = _number(s)
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got '{s}'")
    return v


def _finite_float(s: str) -> float:
    v = _number(s)
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{s}'")
    return v


def _eta(s: str):
    if ":" in s:  # a schedule spec such as last:0.3, expanded by steps_eta (engine.etas.eta_schedule)
        return s.strip()
    try:
        vals = [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"eta must be a number or a comma-separated list, got '{s}'")
    if any(v < 0 or v != v for v in vals):
        raise argparse.ArgumentTypeError("eta must be >= 0")
    return vals[0] if len(vals) == 1 else vals


def _spacing(s: str) -> str:
    try:
        parse_spacing(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return s.strip()


def _size(s: str):
    """'1024x768' (height x width) or '512' -> (H, W) in pixels."""
    parts = s.lower().split("x")
    try:
        hw = [int(v) for v in parts]
    except ValueError:
        hw = []
    if len(hw) not in (1, 2) or min(hw) < 8 or max(hw) > 16384:
        raise argparse.ArgumentTypeError(f"expected a size such as 1024x768 or 512 (8 to 16384 pixels), got '{s}'")
    return (hw[0], hw[-1])


def window(s: str):
    """'T0:T1' -> (T0, T1) diffusion timesteps."""
    try:
        a, b = s.split(":")
        return (int(a), int(b))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window must be T0:T1 (two timesteps), got '{s}'")


def default_model(model=None) -> str:
    """``model``, or the active domain's default model; refused when it has none."""
    if model is not None:
        return model
    from ..engine.domain import active_domain

    domain = active_domain()
    if domain.default_model is None:
        from ..core.errors import ModelLoadError

        raise ModelLoadError(f"the {domain.name} domain has no default model: pass --model (a diffusers "
                             f"folder or a hub id)")
    return domain.default_model


def open_model(args):
    from ..engine.model import load_model

    args.model = default_model(args.model)  # what recipes record
    model = load_model(args.model, device=args.device, half=getattr(args, "half", False),
                       guide=getattr(args, "guide", None), guide_weight=getattr(args, "guide_weight", None),
                       guide_interval=getattr(args, "guide_interval", None),
                       timesteps=getattr(args, "timesteps", None), image_size=getattr(args, "size", None),
                       loras=getattr(args, "lora", None) or (), vae=getattr(args, "vae", None),
                       model_config=getattr(args, "model_config", None), variant=getattr(args, "variant", None),
                       low_memory=getattr(args, "low_memory", False))
    points = model.denoiser.points()
    if getattr(args, "list_h_points", False):
        default = model.denoiser.default_point()
        print("\n".join(p + ("  (default)" if p == default else "") for p in points))
        raise SystemExit(0)
    if getattr(args, "h_space", None) is None:
        args.h_space = model.denoiser.default_point()  # what recipes record
    elif args.h_space not in points:
        raise ValueError(f"{args.model} has no h-space point '{args.h_space}' (its points: "
                         f"{', '.join(points) if len(points) <= 8 else points[0] + ' ... ' + points[-1]}; "
                         "--list-h-points lists them)")
    model.set_prompt(getattr(args, "prompt", None), getattr(args, "negative_prompt", None),
                     getattr(args, "guidance", None))
    if getattr(args, "compile", False) or getattr(args, "bf16", False):
        from ..engine.compiled import accelerate, compiler_available

        compile_ = bool(getattr(args, "compile", False))
        if compile_ and not compiler_available():
            print("note: --compile needs a C++ compiler (g++ or clang++); running without it",
                  file=sys.stderr)
            compile_ = False
        accelerate(model, compile=compile_, bf16=bool(getattr(args, "bf16", False)))
    return model


def list_h_points(argv) -> int:
    """``COMMAND --list-h-points [--model M] [--size HxW]``: print the model's h-space points
    (whatever else the command would need), the default marked."""
    p = argparse.ArgumentParser(add_help=False)
    add_model_args(p)
    args, _ = p.parse_known_args(argv)
    open_model(args)  # prints the points and exits
    return 0


def steps_eta(args, default_steps: int = 10, default_eta=1.0):
    steps = args.steps if getattr(args, "steps", None) is not None else default_steps
    eta = args.eta if getattr(args, "eta", None) is not None else default_eta
    if isinstance(eta, str):  # a schedule spec: one eta per step, recorded as such
        from ..engine.etas import etas_tensor

        eta = etas_tensor(eta, steps).tolist()
    return steps, eta


PLAIN_PROGRESS_EVERY_S = 60.0  # how often a job logs a progress line when stderr is not a terminal


class Bar:
    """A terminal progress bar (tqdm on stderr) usable as an engine progress callback. When
    stderr is not a terminal (a log file, a pipe) it writes a plain line instead, at most every
    ``every`` seconds (default :data:`PLAIN_PROGRESS_EVERY_S`), the first after ``every``
    seconds, so short jobs write none."""

    def __init__(self, desc: str = "", every=None):
        self.desc = desc
        self.bar = None
        isatty = getattr(sys.stderr, "isatty", None)
        self.plain = not (callable(isatty) and isatty())
        self.every = float(PLAIN_PROGRESS_EVERY_S if every is None else every)
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.plain:
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                share = f" ({100 * done / total:.0f}%)" if total else ""
                print(f"{message or self.desc}: {done}/{total}{share} after {now - self.start:.0f} s",
                      file=sys.stderr, flush=True)
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=message or self.desc, file=sys.stderr,
                            leave=False, disable=None, dynamic_ncols=True)
        self.bar.n = done
        if message:
            self.bar.set_description(message, refresh=False)
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def progress_and_cancel(desc: str = ""):
    """A progress bar and a cancel token that Ctrl-C sets (the job stops at the next step)."""
    bar = Bar(desc)
    token = CancelToken()
    old = signal.getsignal(signal.SIGINT)

    def on_int(signum, frame):
        if token.cancelled:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        token.cancel()

    try:
        signal.signal(signal.SIGINT, on_int)
    except ValueError:  # not the main thread
        old = None
    try:
        yield bar, token
    finally:
        bar.close()
        if old is not None:
            signal.signal(signal.SIGINT, old)


def load_source(args, model, bar, token):
    """The trajectory named by --seed, --trajectory or --image (with inversion)."""
    from ..app.sources import invert_image, open_trajectory, sample_seed

    h = args.h_space
    if getattr(args, "trajectory", None):
        traj = open_trajectory(model, args.trajectory, h)
        if model.takes_prompt and any(getattr(args, k, None) is not None
                                      for k in ("prompt", "negative_prompt", "guidance")):
            raise ValueError("a trajectory file fixes its own prompt and guidance: drop --prompt, "
                             "--negative-prompt and --guidance, or sample with --seed")
        model.use_conditioning(traj.origin)  # what follows (e.g. an interpolation's other end) too
        return traj
    steps, eta = steps_eta(args)
    if getattr(args, "image", None):
        inv, _ = invert_image(model, args.image, steps, eta, h, progress=bar, cancel=token,
                              on_note=image_note(args.image))
        return inv.trajectory
    return sample_seed(model, args.seed, steps, eta, h, bar, token)


def image_note(path):
    """What prints how an image file was fitted to the model's size (``note: PATH: ...``)."""
    return lambda note: print(f"note: {path}: {note}", file=sys.stderr)


def add_source_args(p: argparse.ArgumentParser, image: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seed", type=int, help="sample the image from this seed")
    src.add_argument("--trajectory", help="a saved trajectory (.safetensors)")
    if image:
        src.add_argument("--image", help="a real image, inverted first")


def save_image(model, x0, path, recipe) -> None:
    from ..engine.images import save_png, to_pil

    img = model.to_pixels(x0[None])[0].cpu()
    save_png(path, to_pil(img), recipe)
