"""Image recipes (the ``hspace-recipe`` PNG text chunk) and their command line.

The recipe format is the one ``hspace-studio edit`` writes::

    {"model": "default", "fingerprint": "...", "h_space": "after",
     "source": {"seed": 7, "steps": 10, "eta": 1.0}            # or {"image": path, ...}
                                                              # or {..., "trajectory": path}
     "edits": [{"direction": "d.safetensors", "index": 2, "scale": 3.0,
                "window": [999, 400] or null, "at_step": null or J,
                "asymmetric": false or true},                  # true: Asyrp (--asymmetric)
               {"space": "noise", "direction": "n.safetensors", "index": 0, "scale": 1.5}],
                                                               # a noise-space edit
     "region": {"mask": "m.png", "free_steps": 1} or                # edits kept inside a mask
               {"parts": ["mouth"], "grow": 3, "free_steps": 1, "segmenter": "parser.pt"},
                                                               # (--region / --region-from)
     "strip": [..scales..]  (only for strips),
     "interpolate": {"with": {"seed": 9} or {"trajectory": path}, "mode": "lerp" | "slerp" | "h",
                     "frames": 5}  (only for interpolation strips; then "edits" is empty),
     "guide": {"model": "default", "weight": 4.0, "interval": [lo, hi] or null}  (only if guided),
     "timesteps": "power:0.8"  (only if not the scheduler's own spacing),
     "size": [H, W]  (transformer models: the image size, --size),
     "loras": [{"path": "style.safetensors", "weight": 0.7}]  (LoRA files on the model, --lora),
     "vae": "vae.safetensors"  (an autoencoder in place of the model's own, --vae),
     "low_memory": true  (only if images were decoded in tiles, --low-memory),
     "variant": "fp16"  (the weights variant a hub id was downloaded in, --variant),
     "model_config": "folder"  (the diffusers folder completing a checkpoint file, --model-config),
     "prompt": {"prompt": "...", "negative_prompt": "...", "guidance": 7.5}  (text-to-image models),
     "bf16": true  (only if the network ran under bfloat16 autocast, --bf16)}

:func:`recipe_to_cli_args` turns it back into the arguments that re-create the image.
"""
from __future__ import annotations

from typing import List, Optional


def _eta_arg(eta) -> str:
    if isinstance(eta, str):  # a schedule spec such as "last:0.3"
        return eta
    if isinstance(eta, (list, tuple)):
        return ",".join(repr(float(e)) for e in eta)
    return repr(float(eta))


def recipe_to_cli_args(recipe: dict, out: Optional[str] = None) -> List[str]:
    """``hspace-studio`` arguments (without the program name) that re-create ``recipe``."""
    if not isinstance(recipe, dict) or "source" not in recipe:
        raise ValueError("not an hspace-studio recipe (no source)")
    if recipe.get("grid"):  # rows of strips: no one sample or edit command makes it
        raise ValueError("a grid's recipe is made again by `hspace-studio replay GRID.png`, not by one command")
    src = recipe["source"] or {}
    edits = recipe.get("edits") or []
    interp = recipe.get("interpolate") if isinstance(recipe.get("interpolate"), dict) else None
    cmd = "edit" if edits or interp else "sample"
    args: List[str] = [cmd, f"--model={recipe.get('model', 'default')}",
                       f"--h-space={recipe.get('h_space', 'after')}"]
    guide = recipe.get("guide")
    if isinstance(guide, dict) and guide.get("model") is not None:
        args += [f"--guide={guide['model']}", f"--guide-weight={repr(float(guide.get('weight', 1.0)))}"]
        if guide.get("interval"):
            lo, hi = guide["interval"]
            args.append(f"--guide-interval={int(lo)}:{int(hi)}")
    if recipe.get("timesteps"):
        args.append(f"--timesteps={recipe['timesteps']}")
    if recipe.get("vae"):
        args.append(f"--vae={recipe['vae']}")
    if recipe.get("model_config"):
        args.append(f"--model-config={recipe['model_config']}")
    if recipe.get("low_memory") is True:
        args.append("--low-memory")
    if recipe.get("variant"):
        args.append(f"--variant={recipe['variant']}")
    for lo in recipe.get("loras") or []:
        if isinstance(lo, dict) and lo.get("path"):
            args.append(f"--lora={lo['path']}:{float(lo.get('weight', 1.0))!r}")
    size = recipe.get("size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        args.append(f"--size={int(size[0])}x{int(size[1])}")
    if recipe.get("bf16") is True:
        args.append("--bf16")
    prompt = recipe.get("prompt")
    if isinstance(prompt, dict):
        args += [f"--prompt={prompt.get('prompt', '')}",
                 f"--negative-prompt={prompt.get('negative_prompt', '')}",
                 f"--guidance={repr(float(prompt.get('guidance', 1.0)))}"]
    if src.get("trajectory"):
        args.append(f"--trajectory={src['trajectory']}")
    elif src.get("image") is not None:
        if cmd == "sample":
            raise ValueError("an unedited inverted image has no sample command; use 'invert'")
        args.append(f"--image={src['image']}")
    elif src.get("seed") is not None:
        args.append(f"--seed={int(src['seed'])}")
    else:
        raise ValueError("the recipe's source has no seed, image or trajectory")
    if not src.get("trajectory"):
        if src.get("steps") is not None:
            args.append(f"--steps={int(src['steps'])}")
        if src.get("eta") is not None:
            args.append(f"--eta={_eta_arg(src['eta'])}")
    for e in edits:
        if e.get("space") == "noise":
            args.append(f"--noise-direction={e['direction']}:{int(e.get('index', 0))}")
            args.append(f"--noise-scale={repr(float(e.get('scale', 1.0)))}")
            continue
        args.append(f"--direction={e['direction']}:{int(e.get('index', 0))}")
        args.append(f"--scale={repr(float(e.get('scale', 1.0)))}")
        if e.get("window") is not None:
            a, b = e["window"]
            args.append(f"--window={int(a)}:{int(b)}")
        if e.get("at_step") is not None:
            args.append(f"--at-step={int(e['at_step'])}")
        if e.get("asymmetric"):
            args.append("--asymmetric")
    region = recipe.get("region")
    if isinstance(region, dict) and cmd == "edit" and not interp:
        if region.get("parts"):
            seg = region.get("segmenter") or "default"
            args.append(f"--region-from={seg}:{','.join(str(p) for p in region['parts'])}")
            args.append(f"--grow={int(region.get('grow', 3))}")
        elif region.get("mask"):
            args.append(f"--region={region['mask']}")
        else:
            raise ValueError("the recipe's edit was kept inside a mask that was not saved with it; "
                             "its command line would edit the whole image")
        args.append(f"--free-steps={int(region.get('free_steps', 1))}")
    if recipe.get("strip") and edits:
        args.append("--strip=" + ",".join(repr(float(s)) for s in recipe["strip"]))
    if interp:
        other = interp.get("with") or {}
        if other.get("trajectory"):
            args.append(f"--interpolate-with={other['trajectory']}")
        elif other.get("seed") is not None:
            args.append(f"--interpolate-with={int(other['seed'])}")
        else:
            raise ValueError("the recipe's interpolation names no seed or trajectory")
        args += [f"--mode={interp.get('mode', 'slerp')}", f"--frames={int(interp.get('frames', 5))}"]
    if out is not None:
        args.append(f"--out={out}")
    return args


def cli_command_line(recipe: dict, out: str = "out.png", program=("hspace-studio",)) -> str:
    """The shell command (quoted) that re-creates ``recipe``; ``program``: the words that start
    the command line (the console script, or ``python -m hspace_studio``)."""
    import shlex

    return " ".join(shlex.quote(a) for a in [*program, *recipe_to_cli_args(recipe, out)])


def this_program() -> list:
    """How to start this installation's command line from any shell: the console script beside
    the running interpreter (a venv's ``bin/hspace-studio``), else ``python -m hspace_studio``
    with that interpreter's full path."""
    import sys
    from pathlib import Path

    exe = Path(sys.executable)
    for name in ("hspace-studio", "hspace-studio.exe"):
        if (exe.parent / name).is_file():
            return [str(exe.parent / name)]
    return [str(exe), "-m", "hspace_studio"]


def make_recipe(model, source_name: str, h_space: str, source: dict, edits=(), **entries) -> dict:
    """The one way a recipe is made (the command line's and the app's exports alike): what made
    the image (``source_name``, the model's fingerprint, ``h_space``, its ``source`` and ``edits``),
    the further ``entries`` that are not None (``region``, ``strip``, ``interpolate``, ``grid``,
    ``app``), and the model's own settings (:func:`with_model_settings`)."""
    recipe = {"model": source_name, "fingerprint": model.fingerprint, "h_space": h_space,
              "source": dict(source), "edits": list(edits)}
    recipe.update({k: v for k, v in entries.items() if v is not None})
    return with_model_settings(recipe, model)


def with_model_settings(recipe: dict, model) -> dict:
    """The recipe with the model's guidance and timestep spacing (where not the defaults)
    and its prompt (text-to-image models), so that the image's command line re-creates it."""
    info = getattr(model, "info", None) or {}
    out = dict(recipe)
    if info.get("guide") is not None:
        out["guide"] = {"model": info["guide"], "weight": info["guide_weight"],
                        "interval": info.get("guide_interval")}
    if info.get("timesteps"):
        out["timesteps"] = info["timesteps"]
    if info.get("image_size"):
        out["size"] = list(info["image_size"])
    if info.get("vae"):
        out["vae"] = info["vae"]
    if info.get("low_memory"):
        out["low_memory"] = True
    if info.get("variant"):
        out["variant"] = info["variant"]
    if (info.get("checkpoint") or {}).get("config"):
        out["model_config"] = info["checkpoint"]["config"]
    if info.get("loras"):
        out["loras"] = [{"path": lo["path"], "weight": float(lo["weight"])} for lo in info["loras"]]
    if (info.get("accelerated") or {}).get("bf16"):
        out["bf16"] = True
    conditioning = getattr(model, "conditioning", None)
    if conditioning:
        out["prompt"] = dict(conditioning)
    return out


def read_png_recipe(path) -> Optional[dict]:
    """The recipe a PNG this tool wrote carries (its ``hspace-recipe`` chunk), or None for any
    other file (no chunk, not a PNG, unreadable JSON). Reads the file's header chunks only."""
    import json

    try:
        from PIL import Image

        with Image.open(path) as img:
            text = getattr(img, "text", {}).get("hspace-recipe")
    except (OSError, ValueError, SyntaxError):
        return None
    if not text:
        return None
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("source"), dict) else None

