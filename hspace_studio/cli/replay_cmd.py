"""hspace-studio replay IMAGE.png --out again.png: make an exported image again from its recipe.

Any PNG this tool wrote carries the recipe that made it (the ``hspace-recipe`` chunk). An
image, a strip or an interpolation is made by the ``sample``/``edit`` command its recipe
gives (:func:`..core.recipe.recipe_to_cli_args`); a grid (the app's **Export grid…**: one
strip per direction) is made row by row, each row that command's strip, and laid out as
the app lays it out.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("replay", help="make an exported image again from the recipe it carries",
                       description="Make an image, strip or grid this tool exported again, from its recipe.")
    p.add_argument("image", help="a PNG exported by hspace-studio")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=run)


def _strip_tiles(path: Path, n: int, pad: int = 2):
    """The ``n`` images of a strip PNG (laid out in one row, ``pad`` pixels apart)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        w = (img.width - (n - 1) * pad) // n
        return [img.crop((i * (w + pad), 0, i * (w + pad) + w, img.height)) for i in range(n)]


def run(args) -> int:
    from ..core.errors import FileFormatError
    from ..core.recipe import read_png_recipe, recipe_to_cli_args
    from . import main

    recipe = read_png_recipe(args.image)
    if recipe is None:
        raise FileFormatError(f"{args.image} carries no hspace-studio recipe (not an image this tool exported)")
    rows = recipe.get("grid")
    if not rows:
        return main(recipe_to_cli_args(recipe, args.out))
    from ..engine.images import grid, save_png

    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, row in enumerate(rows):
            strip = [float(s) for s in row["strip"]]
            one = {**{k: v for k, v in recipe.items() if k != "grid"}, "edits": row["edits"], "strip": strip}
            out = Path(tmp) / f"row{i}.png"
            code = main(recipe_to_cli_args(one, str(out)))
            if code != 0:
                return code
            tiles.append(_strip_tiles(out, len(strip)))
    cols = max(len(t) for t in tiles)
    images = [im for t in tiles for im in t + [t[-1].copy()] * (cols - len(t))]
    save_png(args.out, grid(images, cols=cols), recipe)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
