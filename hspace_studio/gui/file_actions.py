"""File actions: open files (as the command line does), import and export direction sets,
export images, strips and grids, save trajectories, load and save masks, and copy the
command line that re-creates the last export. Dialogs are the table in
:mod:`~hspace_studio.gui.file_dialogs`.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import QApplication, QMessageBox

from ..core.checkpoint_names import SAFETENSORS, has_checkpoint_suffix
from ..core.errors import HSpaceError
from . import jobs as J
from .file_dialogs import ask_path
from ..app.requests import EditItem
from .worker import JobHandle

EXPORT_SCALES = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0)
MAX_HEADER = 100 * 1024 * 1024


class FileActions:
    """Mixin of MainWindow; see the module docstring."""

    def load_mask(self, path: str) -> bool:
        try:
            self.mask.load_png(path)
            return True
        except (HSpaceError, OSError, ValueError) as e:
            self.show_error(f"Cannot load the mask: {e}")
            return False

    def load_mask_dialog(self) -> None:
        p = ask_path(self, self.settings, "load_mask")
        if p:
            self.load_mask(p)

    def save_mask_dialog(self) -> None:
        p = ask_path(self, self.settings, "save_mask")
        if p:
            try:
                self.mask.save_png(p)
            except OSError as e:
                self.show_error(f"Cannot save the mask: {e}")

    def open_image_dialog(self) -> None:
        p = ask_path(self, self.settings, "open_image")
        if p:
            self.open_image(p)

    def open_trajectory_dialog(self) -> None:
        p = ask_path(self, self.settings, "open_trajectory")
        if p:
            self.open_trajectory(p)

    def save_trajectory_dialog(self) -> None:
        p = ask_path(self, self.settings, "save_trajectory")
        if p:
            self.submit(J.SaveTrajectory(p))

    def open_paths(self, paths) -> None:
        """Open files given on the command line, by the desktop or dropped on the window: images
        are inverted (an exported PNG reopens as its edit), ``.json`` files open as sessions,
        ``.safetensors`` files as direction sets, trajectories or LoRAs (by the tensors they hold)
        or else as a model checkpoint, as do ``.ckpt`` files; a folder loads as a model."""
        for p in (str(x) for x in paths):
            suffix = Path(p).suffix.lower()
            if Path(p).is_dir():
                self.open_model_path(p)
            elif not Path(p).is_file():
                self.show_error(f"Cannot open {p}: no such file")
            elif suffix == ".json":
                self.open_session(p)
            elif suffix in SAFETENSORS:
                keys = _safetensors_keys(p)
                if keys is None:
                    self.show_error(f"Cannot open {p}: not a readable direction, trajectory or model file "
                                    "(truncated or not safetensors)")
                elif "delta_h" in keys:  # a direction set, even if cut short: its loader explains
                    self.import_directions([p])
                elif {"x_T", "zs"} <= keys:  # a trajectory, or a file whose error the loader explains
                    self.open_trajectory(p)
                elif any("lora" in k.lower() for k in keys):
                    self.add_lora_path(p)
                else:
                    self.open_model_path(p)
            elif has_checkpoint_suffix(p):
                self.open_model_path(p)
            elif not self.open_recipe_image(p):
                self.open_image(p)

    def open_model_path(self, path: str) -> None:
        """Load the model folder or checkpoint file at ``path`` (as if typed in the Model field)."""
        self.source_panel.model.setCurrentText(str(path))
        self.load_model(str(path))

    def add_lora_path(self, path: str) -> None:
        """Put a LoRA file on the loaded model (weight 1) and load it so."""
        if self.model_info is None or self.model_info.conditioning is None:
            self.show_error(f"{Path(path).name} is a LoRA: load a text-to-image model first, then add it")
            return
        text = self.source_panel.lora.text().strip()
        self.source_panel.lora.setText(f"{text}; {path}:1" if text else f"{path}:1")
        self.load_model(self.source_panel.model_source())

    # drag and drop: files and folders dropped on the window open as open_paths does
    def dragEnterEvent(self, e) -> None:  # noqa: N802 (Qt's name)
        if e.mimeData().hasUrls() and all(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802 (Qt's name)
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if paths:
            e.acceptProposedAction()
            self.open_paths(paths)

    def open_recipe_image(self, path: str, switch_model: Optional[bool] = None) -> bool:
        """A PNG this tool exported reopens as its edit: the model it was made with (asking before
        switching; ``switch_model`` answers for the dialog), its source (the seed and prompt, the
        trajectory file or the inverted image) and its directions with their scales and windows.
        False if the file carries no recipe (then it is a photo to invert)."""
        from ..core.recipe import read_png_recipe

        rec = read_png_recipe(path)
        if rec is None:
            return False
        model, point = str(rec.get("model", "default")), rec.get("h_space")
        info = self.model_info
        if info is None or info.source != model or (point and info.h_space != point):
            if switch_model is None:
                answer = QMessageBox.question(
                    self, "Open the edit", f"{Path(path).name} was made with the model {model} "
                    f"(h at {point}). Load that model to continue its edit? (No: open it as a photo)")
                switch_model = answer == QMessageBox.StandardButton.Yes
            if not switch_model:
                return False
            guide = rec.get("guide") or {}
            self.submit(J.LoadModel(model, point, self.device, guide.get("model"), guide.get("weight"),
                                    rec.get("timesteps"),
                                    tuple((lo["path"], float(lo["weight"])) for lo in rec.get("loras") or ()),
                                    rec.get("model_config")),
                        on_done=lambda res: self._recipe_model_loaded(res, rec, path))
            return True
        self._restore_recipe(rec, path)
        return True

    def _recipe_model_loaded(self, res, rec: dict, path: str) -> None:
        """The recipe's model is in: the recipe's source follows (not the old image made again
        under the new model), then its directions."""
        was = self._loading_session
        self._loading_session = True
        try:
            self._default_result(res)
        finally:
            self._loading_session = was
        if res.ok:
            self._restore_recipe(rec, path)

    def _restore_recipe(self, rec: dict, path: str) -> None:
        """The recipe's source (seed and prompt, trajectory or inverted image) and its directions,
        on the model that is loaded."""
        src, prompt = rec["source"], rec.get("prompt") or {}
        steps, eta = src.get("steps"), src.get("eta")
        if prompt:  # shown before the image comes, so a remade source uses it too
            self.source_panel.set_conditioning(prompt, self.model_info.takes_negative if self.model_info else True)
        if src.get("trajectory"):
            self.open_trajectory(src["trajectory"])
        elif src.get("image") is not None:
            self.submit(J.Invert(prompt.get("prompt"), prompt.get("negative_prompt"), prompt.get("guidance"),
                                 path=str(src["image"]), steps=int(steps or 10), eta=eta if eta is not None else 1.0))
        else:
            self.source_panel.set_values(seed=int(src["seed"]), steps=int(steps or 10),
                                         eta=float(eta) if isinstance(eta, (int, float)) else None)
            self.submit(J.Sample(prompt.get("prompt"), prompt.get("negative_prompt"), prompt.get("guidance"),
                                 seed=int(src["seed"]), steps=int(steps or 10), eta=eta if eta is not None else 1.0))
        self._restore_region(rec.get("region"))
        edits = [e for e in rec.get("edits") or [] if e.get("space") != "noise" and e.get("direction")]
        for file in dict.fromkeys(e["direction"] for e in edits):
            mine = [e for e in edits if e["direction"] == file]
            self.submit(J.ImportDirections((str(file),)),
                        on_done=lambda res, mine=mine: self._activate_recipe_edits(res, mine))
        self.show_info(f"{Path(path).name}: reopening its edit ({len(edits)} direction(s))")

    def _restore_region(self, region) -> None:
        """A recipe's region: its mask painted again, edits kept inside it with its free steps. A
        region of segmented parts (the command line's ``--region``) is named, not rebuilt."""
        if not isinstance(region, dict):
            return
        if region.get("mask"):
            if self.load_mask(str(region["mask"])):
                self.brush.free_steps.setValue(int(region.get("free_steps", 1)))
                if self.brush.keep_inside.isChecked():
                    self._region_changed()  # the engine gets the mask now, before the edits render
                else:
                    self.brush.keep_inside.setChecked(True)  # (sends it)
        elif region.get("parts"):
            self.show_info(f"the edit was kept inside the parts {', '.join(region['parts'])}: paint or fill "
                           f"them and tick 'Keep edits inside the mask' to continue it so")

    def _activate_recipe_edits(self, res, edits) -> None:
        self._default_result(res)  # the sets join the library as an import's do
        if not res.ok or not res.value:
            return
        s = res.value[0]
        for e in edits:
            found = self.library.direction((s.set_id, int(e.get("index") or 0)))
            if found is None:
                continue
            d = found[1]
            d.scale = float(e.get("scale", 1.0))
            d.range = max(float(d.range), abs(d.scale))
            d.window = tuple(e["window"]) if e.get("window") else None
            d.asymmetric = bool(e.get("asymmetric", False))
            at = e.get("at_step")
            if at is not None and self.traj_info is not None and 0 <= int(at) < len(self.traj_info.timesteps):
                d.at_timestep = int(self.traj_info.timesteps[int(at)])  # the one step it was applied at
            self.library.set_active((s.set_id, d.index), True)

    def import_directions(self, paths) -> JobHandle:
        return self.submit(J.ImportDirections(tuple(str(p) for p in paths)))

    def import_directions_dialog(self) -> None:
        ps = ask_path(self, self.settings, "import_directions")
        if ps:
            self.import_directions(ps)

    def export_directions(self, set_id: str, path: str) -> Optional[JobHandle]:
        s = self.library.find_set(set_id)
        if s is None:
            return None
        return self.submit(J.ExportDirections(set_id, tuple(d.index for d in s.directions),
                                              tuple(d.label for d in s.directions), str(path)))

    def export_directions_dialog(self) -> None:
        sel = self.library.selected()
        if sel is None:
            self.show_error("Select a direction set to export")
            return
        s = self.library.find_set(sel[0])
        p = ask_path(self, self.settings, "export_directions", name=f"{s.name}.safetensors")
        if p:
            self.export_directions(s.set_id, p)

    def _set_files(self):
        return tuple((s.set_id, s.path) for s in self.library.sets)

    def export_image(self, path: str, original: bool = False) -> Optional[JobHandle]:
        if self.traj_info is None:
            self.show_error("No image to export yet")
            return None
        return self.submit(J.ExportImage(str(path), self.current_edits(), self._set_files(), original))

    def export_image_dialog(self, original: bool = False) -> None:
        p = ask_path(self, self.settings, "export_image")
        if p:
            self.export_image(p, original)

    def export_strip(self, path: str, key=None, factors=EXPORT_SCALES) -> Optional[JobHandle]:
        key = key or self._strip_key
        found = self.library.direction(key) if key else None
        if found is None or self.traj_info is None:
            self.show_error("Select a direction to export its strip")
            return None
        s, d = found
        item = EditItem(s.set_id, d.index, 1.0, tuple(d.window) if d.window else None, d.at_timestep,
                        asymmetric=d.asymmetric)
        others = tuple(e for e in self.current_edits() if (e.set_id, e.index) != key)
        scales = tuple(round(f * d.range, 6) for f in factors)
        return self.submit(J.ExportStrip(str(path), item, scales, others, self._set_files()))

    def export_strip_dialog(self) -> None:
        p = ask_path(self, self.settings, "export_strip")
        if p:
            self.export_strip(p)

    def export_grid(self, path: str, factors=EXPORT_SCALES) -> Optional[JobHandle]:
        rows = []
        for s, d in self.library.active():
            if s.status == "mismatch":
                continue
            item = EditItem(s.set_id, d.index, 1.0, tuple(d.window) if d.window else None, d.at_timestep,
                            asymmetric=d.asymmetric)
            rows.append((item, tuple(round(f * d.range, 6) for f in factors)))
        if not rows or self.traj_info is None:
            self.show_error("Activate directions to export a grid (one row per active direction)")
            return None
        return self.submit(J.ExportGrid(str(path), tuple(rows), self._set_files()))

    def export_grid_dialog(self) -> None:
        p = ask_path(self, self.settings, "export_grid")
        if p:
            self.export_grid(p)

    def copy_command_line(self) -> None:
        rec = getattr(self, "last_export", None)
        if not rec:
            self.show_info("Export an image first: the command line is made from its recipe")
            return
        from ..core.recipe import cli_command_line, this_program

        exported = Path(rec["path"]).resolve()  # the copy writes beside the export, not in the shell's folder
        again = str(exported.with_name(exported.stem + "-again.png"))
        try:
            if rec["recipe"].get("grid"):  # rows of strips: made again from the recipe the PNG carries
                import shlex

                cmd = " ".join(shlex.quote(a) for a in [*this_program(), "replay", str(exported), "--out", again])
            else:
                cmd = cli_command_line(rec["recipe"], again, this_program())
        except ValueError as e:
            self.show_error(str(e))
            return
        QApplication.clipboard().setText(cmd)
        self.show_info("command line copied")


def _safetensors_keys(path: str) -> Optional[set]:
    """The tensor names in a safetensors file's header, or None if the header cannot be
    read. Only the header is read, so a file truncated in its data (a download or copy cut
    short) still tells a direction set from a trajectory; the loader then reports it."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or n > MAX_HEADER:
                return None
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    return {str(k) for k in header if k != "__metadata__"}
