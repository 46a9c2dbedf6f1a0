"""The text of Help > About: what a bug report needs (version, Qt, torch, device, threads).

It never imports torch itself (the UI does not): torch's version comes from the package
metadata, its thread counts from the module the engine thread has already imported.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Optional


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def about_text(model: Optional[str], device: Optional[str], engine_running: bool) -> str:
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    lines = [f"hspace-studio {_version('hspace-studio')}",
             "Semantic directions in the h-space of diffusion models (after Haas et al., 2024).", "",
             f"model: {model or 'none loaded'}",
             f"device: {device or 'not chosen yet (no model loaded)'}",
             f"torch {_version('torch')}, diffusers {_version('diffusers')}",
             f"Qt {qVersion()}, PySide6 {pyside_version}",
             f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"]
    torch = sys.modules.get("torch")
    if torch is not None:
        lines.append(f"torch threads: {torch.get_num_threads()} (inter-op {torch.get_num_interop_threads()})")
    else:
        lines.append("torch threads: (torch not loaded yet)")
    lines.append(f"CPU cores: {os.cpu_count()}")
    lines.append(f"engine thread: {'running' if engine_running else 'stopped'}")
    return "\n".join(lines)
