"""hspace-studio gui [--model M] [FILE ...]: the desktop application.

``hspace-studio FILE ...`` (what the desktop entry runs) is the same as ``gui FILE ...``.
"""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("gui", help="start the desktop application (the default)")
    p.add_argument("--model", default=None, help="the model to open (default: the domain's default model)")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="images to invert, a session (.json), direction or trajectory files to open")
    p.add_argument("--smoke-test", metavar="PNG", help="load, sample, apply one edit, save a "
                   "screenshot and quit (for packaging checks)")
    p.set_defaults(func=lambda a: run_smoke(a.model, a.smoke_test) if a.smoke_test else run_gui(a.model, a.files))


def run_smoke(model, png: str) -> int:
    from ..gui.smoke import run_smoke as smoke
    from .common import default_model

    return smoke(default_model(model), png)


def run_gui(model=None, files=()) -> int:
    """The app on ``model`` (None: the active domain's default model)."""
    from ..gui.app import run
    from .common import default_model

    return run(default_model(model), files)
