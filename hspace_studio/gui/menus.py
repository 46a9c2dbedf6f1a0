"""The window's menus and their shortcuts (File, Edit, View, Brush, Directions, Discover,
Help), the canvas views they switch, and the Help dialogs.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window;
its widgets are built before the menus).
"""
from __future__ import annotations

from typing import Dict

from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoGroup
from PySide6.QtWidgets import QMessageBox

from .about import about_text


class Menus:
    """Mixin of MainWindow; see the module docstring."""

    def _action(self, menu, text, slot, shortcut=None, tip=None, checkable=False) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.setCheckable(checkable)
        if checkable:
            a.toggled.connect(slot)
        else:
            a.triggered.connect(lambda _c=False: slot())
        menu.addAction(a)
        self.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        self.act: Dict[str, QAction] = {}
        m = mb.addMenu("&File")
        A = self._action
        self.act["open_image"] = A(m, "Open &image…", self.open_image_dialog, QKeySequence.StandardKey.Open,
                                   "Invert a real image into an editable trajectory")
        self.act["open_traj"] = A(m, "Open &trajectory…", self.open_trajectory_dialog)
        self.act["save_traj"] = A(m, "Save t&rajectory…", self.save_trajectory_dialog)
        m.addSeparator()
        self.act["open_session"] = A(m, "Open &session…", self.open_session_dialog, "Ctrl+Shift+O")
        self.act["save_session"] = A(m, "&Save session", self.save_session_action, QKeySequence.StandardKey.Save)
        self.act["save_session_as"] = A(m, "Save session &as…", self.save_session_dialog, "Ctrl+Shift+S")
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        self.act["export_image"] = A(m, "&Export image…", lambda: self.export_image_dialog(False), "Ctrl+E",
                                     "Write the edited image as PNG with its recipe")
        self.act["export_original"] = A(m, "Export &original…", lambda: self.export_image_dialog(True))
        self.act["export_strip"] = A(m, "Export s&trip…", self.export_strip_dialog, "Ctrl+Shift+E",
                                     "The selected direction at several scales")
        self.act["export_grid"] = A(m, "Export &grid…", self.export_grid_dialog, None,
                                    "Every active direction at several scales, one row each")
        self.act["copy_cli"] = A(m, "Copy command &line", self.copy_command_line, None,
                                 "Copy the hspace-studio command that re-creates the edited image")
        m.addSeparator()
        A(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        m = mb.addMenu("&Edit")
        # Undo and Redo act on the stack changed last: the mask's strokes or the library's
        # and sliders' changes (gui/edit_history.py)
        self.undo_group = QUndoGroup(self)
        for stack in (self.mask.undo_stack, self.history.stack):
            self.undo_group.addStack(stack)
            stack.indexChanged.connect(lambda _i, st=stack: _make_active(self.undo_group, st))
        self.undo_group.setActiveStack(self.mask.undo_stack)
        u = self.undo_group.createUndoAction(self, "Undo")
        u.setShortcuts([QKeySequence("Ctrl+Z")])
        r = self.undo_group.createRedoAction(self, "Redo")
        r.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for a in (u, r):
            m.addAction(a)
            self.addAction(a)
        self.act["undo"], self.act["redo"] = u, r
        m.addSeparator()
        A(m, "Clear mask", self.mask.clear, "Ctrl+Shift+X")
        A(m, "Invert mask", self.mask.invert, "Ctrl+Shift+I")
        A(m, "Load mask…", self.load_mask_dialog)
        A(m, "Save mask…", self.save_mask_dialog)
        m.addSeparator()
        A(m, "Reset all sliders", self.reset_sliders, "Ctrl+Shift+R")
        A(m, "Random seed", self.source_panel.randomize, "Ctrl+R")

        m = mb.addMenu("&View")
        A(m, "Fit", self.canvas.fit, "Ctrl+0")
        A(m, "Actual size (1:1)", self.canvas.actual_size, "Ctrl+1")
        A(m, "Zoom in", self.canvas.zoom_in, QKeySequence.StandardKey.ZoomIn)
        A(m, "Zoom out", self.canvas.zoom_out, QKeySequence.StandardKey.ZoomOut)
        m.addSeparator()
        grp = QActionGroup(self)
        self.view_actions = {}
        for key, text, sc in (("edited", "Edited", "Alt+1"), ("original", "Original", "Alt+2"),
                              ("split", "Side by side", "Alt+3")):
            a = A(m, text, lambda k=key: self.set_view(k), sc)
            a.setCheckable(True)
            grp.addAction(a)
            self.view_actions[key] = a
        self.view_actions["edited"].setChecked(True)
        A(m, "Toggle original / edited", self.toggle_original, "\\")
        m.addSeparator()
        self.act["show_mask"] = A(m, "Show mask", self.brush.show_mask.setChecked, "M", checkable=True)
        self.act["show_mask"].setChecked(True)
        self.brush.show_mask.toggled.connect(self.act["show_mask"].setChecked)
        self.act["progressive"] = A(m, "Progressive preview", self._set_progressive, None,
                                    "Show the predicted image at each step while a decode runs",
                                    checkable=True)
        self.act["progressive"].setChecked(True)
        m.addSeparator()
        self._build_speed_actions(m)
        m.addSeparator()
        for d in self.docks.values():
            m.addAction(d.toggleViewAction())

        m = mb.addMenu("&Brush")
        A(m, "Brush on/off", lambda: self.brush.enabled.toggle(), "B")
        A(m, "Erase mode", lambda: (self.brush.erase if not self.brush.erase.isChecked()
                                    else self.brush.paint).setChecked(True), "X")
        A(m, "Smaller brush", lambda: self.brush.grow(1 / 1.25), "[")
        A(m, "Larger brush", lambda: self.brush.grow(1.25), "]")

        m = mb.addMenu("&Directions")
        A(m, "Import…", self.import_directions_dialog, "Ctrl+I")
        A(m, "Export selected set…", self.export_directions_dialog)
        m.addAction(self.library.actions["rename"])
        m.addAction(self.library.actions["delete"])
        m.addAction(self.library.actions["up"])
        m.addAction(self.library.actions["down"])
        A(m, "Disentangle against…", self.disentangle_dialog)

        m = mb.addMenu("D&iscover")
        for i, name in enumerate(("PCA", "Jacobian", "Supervised")):
            A(m, f"{name}…", lambda i=i: self._show_discover(i))
        m.addSeparator()
        self.act["cancel"] = A(m, "Cancel job or render", self.cancel_job, "Esc")

        m = mb.addMenu("&Help")
        A(m, "Keyboard shortcuts", self.show_shortcuts, "F1")
        A(m, "About", self.show_about)

    def _build_speed_actions(self, m) -> None:
        from ..engine.compiled import compiler_available

        A = self._action
        self._speed_in_force = (False, False, False)  # (compile, bf16, low memory) last asked of the engine
        self.act["compile"] = A(m, "Compile the network (faster edits)", self._speed_changed, None,
                                "torch.compile: sampling and edits run faster, with the same images to "
                                "float32 rounding; building it takes a minute or more each time a model "
                                "is loaded",
                                checkable=True)
        if not compiler_available():
            self.act["compile"].setEnabled(False)
            self.act["compile"].setToolTip("Needs a C++ compiler (g++ or clang++) on this computer")
        self.act["bf16"] = A(m, "bfloat16 arithmetic (faster, approximate)", self._speed_changed, None,
                             "The network runs in bfloat16 (fast on CPUs with AMX or AVX-512 BF16 and on "
                             "GPUs); images differ slightly from float32's (about 47 dB PSNR), and an "
                             "export records it so that it replays alike", checkable=True)
        self.act["low_memory"] = A(m, "Low memory (images decoded in tiles)", self._speed_changed, None,
                                   "The autoencoder decodes and encodes big images in tiles, one image at a "
                                   "time: their memory falls to that of the autoencoder's own size. Images at "
                                   "or below it are unchanged; above it the tiles' seams change pixels "
                                   "slightly, and an export records it", checkable=True)

    def _speed_changed(self, _on=None) -> None:
        from ..app.requests import SetAcceleration

        want = (self.act["compile"].isChecked() and self.act["compile"].isEnabled(), self.act["bf16"].isChecked(),
                self.act["low_memory"].isChecked())
        before = self._speed_in_force
        self._speed_in_force = want

        def done(res):
            if not res.ok:
                if res.cancelled:  # the setting before stays
                    self._speed_in_force = before
                    for key, on in zip(("compile", "bf16", "low_memory"), before):
                        self.act[key].blockSignals(True)
                        self.act[key].setChecked(on)
                        self.act[key].blockSignals(False)
                    return
                self.show_error(f"Could not change the engine's speed settings: {res.error}")
                return
            names = {"compile": "compiled network", "bf16": "bfloat16", "low_memory": "low memory"}
            on = [names[k] for k, v in (res.value or {}).items() if v]
            self.statusBar().showMessage("Engine: " + (", ".join(on) if on else "plain float32"), 6000)
            self.request_preview()  # the image as the engine now makes it

        self.submit(SetAcceleration(*want), done)

    def set_view(self, view: str) -> None:
        self.canvas.set_view(view)
        if view in self.view_actions:
            self.view_actions[view].setChecked(True)

    def toggle_original(self) -> None:
        self.set_view("original" if self.canvas.view != "original" else "edited")

    def show_shortcuts(self) -> None:
        rows = []
        for a in self.actions():
            if a.shortcut().isEmpty() or not a.text():
                continue
            rows.append(f"{a.shortcut().toString():<18} {a.text().replace('&', '')}")
        rows += ["Wheel              zoom about the cursor", "Middle drag        pan (or Space + drag)",
                 "Left / right drag  paint / erase the mask"]
        QMessageBox.information(self, "Keyboard shortcuts", "\n".join(sorted(set(rows))))

    def about_text(self) -> str:
        model = getattr(self.worker.state, "model", None)  # a reference read: no torch call
        device = str(model.device) if model is not None else self.device
        return about_text(self.model_info.source if self.model_info else None, device,
                          self.engine.thread.isRunning())

    def show_about(self) -> None:
        QMessageBox.about(self, "About hspace-studio", self.about_text())


def _make_active(group, stack) -> None:
    """Undo and Redo now act on ``stack`` (it changed last); not while either is being deleted."""
    from shiboken6 import isValid

    if isValid(group) and isValid(stack):
        group.setActiveStack(stack)
