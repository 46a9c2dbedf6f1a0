"""hspace-studio gui [--model M]: the desktop application."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("gui", help="start the desktop application (the default)")
    p.add_argument("--model", default="default")
    p.set_defaults(func=lambda a: run_gui(a.model))


def run_gui(model: str = "default") -> int:
    from ..gui.app import run

    return run(model)
