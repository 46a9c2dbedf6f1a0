"""hspace-studio gui [--model M] [FILE ...]: the desktop application.

``hspace-studio FILE ...`` (what the desktop entry runs) is the same as ``gui FILE ...``.
"""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("gui", help="start the desktop application (the default)")
    p.add_argument("--model", default="default")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="images to invert, a session (.json), direction or trajectory files to open")
    p.add_argument("--smoke-test", metavar="PNG", help="load, sample, apply one edit, save a "
                   "screenshot and quit (for packaging checks)")
    p.set_defaults(func=lambda a: run_smoke(a.model, a.smoke_test) if a.smoke_test else run_gui(a.model, a.files))


def run_smoke(model: str, png: str) -> int:
    from ..gui.smoke import run_smoke as smoke

    return smoke(model, png)


def run_gui(model: str = "default", files=()) -> int:
    from ..gui.app import run

    return run(model, files)
