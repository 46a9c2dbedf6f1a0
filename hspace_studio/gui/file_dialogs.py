"""The window's file dialogs as one table: each kind of dialog (open an image, save a
session ...) has its title, file filter, the folder it remembers and, for a save, the
suffix a typed name gets. :func:`ask_path` runs one of them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Union

from PySide6.QtWidgets import QFileDialog

PNG_FILTER = "PNG images (*.png)"
DIR_FILTER = "Direction files (*.safetensors)"
SESSION_FILTER = "hspace-studio sessions (*.json)"
TRAJ_FILTER = "Trajectories (*.safetensors)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"


@dataclass(frozen=True)
class DialogKind:
    title: str
    filter: str
    folder: str  # the QSettings key "dirs/<folder>": where the dialog starts, and remembers
    mode: str = "open"  # "open", "open_many" or "save"
    suffix: str = ""  # a saved name without it gets it
    ignore_case: bool = False  # "X.PNG" already has the suffix ".png"

    def with_suffix(self, path: str) -> str:
        if not self.suffix:
            return path
        has = path.lower().endswith(self.suffix.lower()) if self.ignore_case else path.endswith(self.suffix)
        return path if has else path + self.suffix


DIALOGS: Dict[str, DialogKind] = {
    "open_image": DialogKind("Open image", IMAGE_FILTER, "image"),
    "open_trajectory": DialogKind("Open trajectory", TRAJ_FILTER, "traj"),
    "save_trajectory": DialogKind("Save trajectory", TRAJ_FILTER, "traj", "save", ".safetensors"),
    "load_mask": DialogKind("Load mask", IMAGE_FILTER, "mask"),
    "save_mask": DialogKind("Save mask", PNG_FILTER, "mask", "save", ".png", True),
    "import_directions": DialogKind("Import directions", DIR_FILTER, "dirs", "open_many"),
    "export_directions": DialogKind("Export directions", DIR_FILTER, "dirs", "save", ".safetensors"),
    "export_image": DialogKind("Export image", PNG_FILTER, "export", "save", ".png", True),
    "export_strip": DialogKind("Export strip", PNG_FILTER, "export", "save", ".png", True),
    "export_grid": DialogKind("Export grid", PNG_FILTER, "export", "save", ".png", True),
    "open_session": DialogKind("Open session", SESSION_FILTER, "session"),
    "save_session": DialogKind("Save session", SESSION_FILTER, "session", "save", ".json"),
}


def last_dir(settings, folder: str) -> str:
    return str(settings.value(f"dirs/{folder}", str(Path.home())))


def remember_dir(settings, folder: str, path: str) -> None:
    settings.setValue(f"dirs/{folder}", str(Path(path).parent))


def ask_path(parent, settings, kind: str, name: str = "", remember: bool = True
             ) -> Union[None, str, List[str]]:
    """Run the dialog ``kind`` (a key of :data:`DIALOGS`) starting in its remembered
    folder (with ``name`` proposed); None if cancelled, else the path (a save's with its
    suffix), or for an ``open_many`` dialog the list of paths. The folder is remembered."""
    k = DIALOGS[kind]
    start = last_dir(settings, k.folder)
    if name:
        start = str(Path(start) / name)
    if k.mode == "open_many":
        ps, _ = QFileDialog.getOpenFileNames(parent, k.title, start, k.filter)
        if not ps:
            return None
        if remember:
            remember_dir(settings, k.folder, ps[0])
        return list(ps)
    ask = QFileDialog.getSaveFileName if k.mode == "save" else QFileDialog.getOpenFileName
    p, _ = ask(parent, k.title, start, k.filter)
    if not p:
        return None
    if remember:
        remember_dir(settings, k.folder, p)
    return k.with_suffix(p) if k.mode == "save" else p
