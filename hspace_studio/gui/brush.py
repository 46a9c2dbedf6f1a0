"""The brush mask tool: undoable mask edits and the panel with its controls.

:class:`MaskController` joins the canvas's stroke signals, the Qt-free
:class:`~hspace_studio.core.mask.MaskDocument` and a ``QUndoStack``: each stroke (press,
drag, release) and each action (clear, invert, fill from a part, load) is one undo step.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog,
                               QGridLayout, QHBoxLayout, QLabel, QPushButton, QRadioButton, QSlider,
                               QSpinBox, QToolButton, QWidget)

from ..core.errors import HSpaceError, InvalidFileError
from ..core.jsonfile import read_json
from ..core.mask import MaskChange, MaskDocument



def segmenter_part_names(path) -> List[str]:
    """The part names of a user's segmenter without loading it (no torch): ``parser.json``
    beside a TorchScript ``parser.pt`` (a list, or ``{"parts": [...]}``), or ``parts.json``
    in a segmenter folder. Raises an HSpaceError saying what is wrong."""
    from pathlib import Path

    p = Path(str(path)).expanduser()
    names_file = p / "parts.json" if p.is_dir() else p.with_suffix(".json")
    if not p.exists():
        raise InvalidFileError(f"segmenter not found: {p}")
    if not names_file.is_file():
        raise InvalidFileError(f"the segmenter {p.name} needs its part names in {names_file.name} "
                               f"{'inside' if p.is_dir() else 'beside'} it")
    data = read_json(names_file, "part names file", max_bytes=4 * 1024 * 1024)
    if isinstance(data, dict):
        data = data.get("parts")
    if (not isinstance(data, list) or not data
            or not all(isinstance(n, str) and n.strip() for n in data) or len(set(data)) != len(data)):
        raise InvalidFileError(f"{names_file} must hold a list of distinct, non-empty part names")
    return [str(n) for n in data]


class MaskCommand(QUndoCommand):
    def __init__(self, controller: "MaskController", change: MaskChange) -> None:
        super().__init__(change.name)
        self.controller = controller
        self.change = change

    def redo(self) -> None:
        self.controller._apply(self.change.after)

    def undo(self) -> None:
        self.controller._apply(self.change.before)


UNDO_LIMIT = 200  # mask undo steps kept


class MaskController(QObject):
    """Owns the mask document and its undo stack."""

    maskChanged = Signal()

    def __init__(self, shape=(64, 64), parent=None) -> None:
        super().__init__(parent)
        self.doc = MaskDocument(shape)
        self.undo_stack = QUndoStack(self)
        # each step keeps two copies of the mask (128 KiB at 256x256): bounded history
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self.radius = 3.0
        self._stroke = None

    @property
    def array(self) -> np.ndarray:
        return self.doc.array

    def reset(self, shape) -> None:
        """A new empty mask of ``shape`` (a model with another image size)."""
        if tuple(shape) != self.doc.shape:
            self.doc = MaskDocument(shape)
            self.undo_stack.clear()
            self.maskChanged.emit()

    def _apply(self, state: np.ndarray) -> None:
        self.doc.apply(state)
        self.maskChanged.emit()

    def push(self, change: MaskChange) -> None:
        if change.changed:
            self.undo_stack.push(MaskCommand(self, change))
        else:
            self._apply(change.after)

    # strokes from the canvas
    def begin_stroke(self, pos: QPointF, erase: bool) -> None:
        self._stroke = self.doc.begin_stroke(self.radius, erase)
        self._stroke.add(pos.x(), pos.y())
        self.maskChanged.emit()

    def move_stroke(self, pos: QPointF) -> None:
        if self._stroke is not None:
            self._stroke.add(pos.x(), pos.y())
            self.maskChanged.emit()

    def end_stroke(self) -> None:
        if self._stroke is None:
            return
        change = self._stroke.finish()
        self._stroke = None
        self.push(change)

    # actions
    def clear(self) -> None:
        self.push(self.doc.clear())

    def invert(self) -> None:
        self.push(self.doc.invert())

    def combine(self, array: np.ndarray, mode: str, name: str) -> None:
        self.push(self.doc.combine(array, mode, name))

    def set_array(self, array: np.ndarray, name: str = "Set mask") -> None:
        self.push(self.doc.set_array(array, name))

    def restore(self, array: Optional[np.ndarray]) -> None:
        """Set the mask without an undo step (opening a session)."""
        self.undo_stack.clear()
        if array is None:
            self.doc.apply(np.zeros(self.doc.shape, dtype=bool))
        else:
            self.doc.set_array(array)
        self.maskChanged.emit()

    def load_png(self, path) -> None:
        self.push(self.doc.load_png(path))

    def save_png(self, path) -> None:
        self.doc.save_png(path)


class BrushPanel(QWidget):
    """Controls of the mask tool (object name ``brush``)."""

    fillPartRequested = Signal(str, str)  # part, mode
    segmenterError = Signal(str)  # a chosen segmenter file that cannot be used
    loadRequested = Signal()
    saveRequested = Signal()

    def __init__(self, controller: MaskController, canvas, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("brush")
        self.controller = controller
        self.canvas = canvas
        g = QGridLayout(self)
        g.setContentsMargins(6, 6, 6, 6)

        self.enabled = QCheckBox("Brush on")
        self.enabled.setToolTip("Paint the mask on the canvas (B). Off (at start): the left button pans.")
        self.enabled.setChecked(False)
        self.paint = QRadioButton("Paint")
        self.erase = QRadioButton("Erase")
        self.paint.setChecked(True)
        self.paint.setToolTip("Left button paints, right button erases")
        self.erase.setToolTip("Left button erases, right button paints (E)")
        grp = QButtonGroup(self)
        grp.addButton(self.paint)
        grp.addButton(self.erase)
        row = QHBoxLayout()
        row.addWidget(self.enabled)
        row.addWidget(self.paint)
        row.addWidget(self.erase)
        row.addStretch(1)
        g.addLayout(row, 0, 0, 1, 4)

        g.addWidget(QLabel("Size"), 3, 0)
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(1, 128)  # half-pixels of radius
        self.size_box = QDoubleSpinBox()
        self.size_box.setRange(0.5, 64.0)
        self.size_box.setSingleStep(0.5)
        self.size_box.setDecimals(1)
        self.size_box.setSuffix(" px")
        self.size_box.setToolTip("Brush radius in image pixels ([ and ] change it)")
        g.addWidget(self.size_slider, 3, 1, 1, 2)
        g.addWidget(self.size_box, 3, 3)

        g.addWidget(QLabel("Overlay"), 4, 0)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Opacity of the mask overlay")
        self.show_mask = QCheckBox("Show")
        self.show_mask.setChecked(True)
        self.show_mask.setToolTip("Show the mask overlay (M)")
        g.addWidget(self.opacity, 4, 1, 1, 2)
        g.addWidget(self.show_mask, 4, 3)

        self.undo_btn = QToolButton()
        self.undo_btn.setText("Undo")
        self.redo_btn = QToolButton()
        self.redo_btn.setText("Redo")
        self.clear_btn = QPushButton("Clear")
        self.invert_btn = QPushButton("Invert")
        row = QHBoxLayout()
        for w in (self.undo_btn, self.redo_btn, self.clear_btn, self.invert_btn):
            row.addWidget(w)
        g.addLayout(row, 5, 0, 1, 4)

        self.segmenter = QComboBox()
        self.segmenter.setObjectName("segmenterChoice")
        self.segmenter.setToolTip("Segmenter that finds the parts: the domain's default, or your own "
                                  "TorchScript file with its part names in a .json beside it "
                                  "(a TorchScript file runs its own code: choose only files you trust)")
        self.segmenter.addItem("Segmenter: default", None)
        self.segmenter.addItem("Choose file…", "")
        self.segmenter_spec: Optional[str] = None
        self._default_parts: List[str] = []  # the domain's segmenter's (set_default_parts)
        self._default_fits = True  # whether the domain's segmenter fits the model's images
        self.part_groups: Dict[str, Tuple[str, ...]] = {}  # named groups of parts (the domain's)
        self.segmenter.activated.connect(self._segmenter_activated)
        g.addWidget(self.segmenter, 6, 0, 1, 4)

        self.part = QComboBox()
        self.part.setToolTip("Part found by the segmenter")
        self.part_mode = QComboBox()
        self.part_mode.addItems(["add", "replace", "subtract"])
        self.fill_btn = QPushButton("Fill part")
        self.fill_btn.setToolTip("Fill the mask from a segmenter part of the current image")
        g.addWidget(self.part, 7, 0, 1, 2)
        g.addWidget(self.part_mode, 7, 2)
        g.addWidget(self.fill_btn, 7, 3)
        self.set_parts([])

        self.load_btn = QPushButton("Load…")
        self.save_btn = QPushButton("Save…")
        self.coverage = QLabel("empty")
        row = QHBoxLayout()
        row.addWidget(self.load_btn)
        row.addWidget(self.save_btn)
        row.addStretch(1)
        row.addWidget(self.coverage)
        g.addLayout(row, 8, 0, 1, 4)

        self.keep_inside = QCheckBox("Keep edits inside the mask")
        self.keep_inside.setObjectName("keepEditsInMask")
        self.keep_inside.setToolTip(
            "Sliders change only the masked part: outside it the image follows the unedited one "
            "until the last steps, which run free to blend the border")
        self.free_steps = QSpinBox()
        self.free_steps.setObjectName("freeSteps")
        self.free_steps.setRange(0, 1000)
        self.free_steps.setValue(1)
        self.free_steps.setPrefix("free: ")
        self.free_steps.setSuffix(" step")
        self.free_steps.setToolTip(
            "Last steps that run without the mask: 0 leaves every pixel outside the mask as it "
            "was (a hard border); more blend the border but let the edit spread further")
        self.free_steps.valueChanged.connect(
            lambda v: self.free_steps.setSuffix(" step" if v == 1 else " steps"))
        self.free_steps.setEnabled(False)
        self.keep_inside.toggled.connect(self.free_steps.setEnabled)
        g.addWidget(self.keep_inside, 1, 0, 1, 3)
        g.addWidget(self.free_steps, 1, 3)
        self.keep_inside_hint = QLabel("Confines the sliders' edit to the painted mask.")
        self.keep_inside_hint.setObjectName("keepEditsInMaskHint")
        self.keep_inside_hint.setStyleSheet("color: gray;")
        g.addWidget(self.keep_inside_hint, 2, 0, 1, 4)

        # wiring
        self.size_slider.valueChanged.connect(lambda v: self.size_box.setValue(v / 2))
        self.size_box.valueChanged.connect(self._size_changed)
        self.opacity.valueChanged.connect(lambda v: canvas.set_mask_opacity(v / 100))
        self.show_mask.toggled.connect(canvas.set_mask_visible)
        self.enabled.toggled.connect(self._enabled_changed)
        self._enabled_changed(self.enabled.isChecked())
        self.erase.toggled.connect(self._mode_changed)
        self.undo_btn.clicked.connect(controller.undo_stack.undo)
        self.redo_btn.clicked.connect(controller.undo_stack.redo)
        controller.undo_stack.canUndoChanged.connect(self.undo_btn.setEnabled)
        controller.undo_stack.canRedoChanged.connect(self.redo_btn.setEnabled)
        self.undo_btn.setEnabled(False)
        self.redo_btn.setEnabled(False)
        self.clear_btn.clicked.connect(controller.clear)
        self.invert_btn.clicked.connect(controller.invert)
        self.fill_btn.clicked.connect(
            lambda: self.fillPartRequested.emit(self.part.currentData() or self.part.currentText(),
                                                self.part_mode.currentText()))
        self.load_btn.clicked.connect(self.loadRequested)
        self.save_btn.clicked.connect(self.saveRequested)
        controller.maskChanged.connect(self._mask_changed)
        canvas.strokeBegin.connect(controller.begin_stroke)
        canvas.strokeMove.connect(controller.move_stroke)
        canvas.strokeEnd.connect(controller.end_stroke)
        self.size_box.setValue(3.0)

    def set_default_parts(self, parts: List[str], groups: Optional[Dict[str, Tuple[str, ...]]] = None) -> None:
        """The default segmenter's part names (shown while it is chosen), and named groups of
        them that "Fill part" also offers (the domain's, e.g. 'eyes': left and right eye)."""
        self._default_parts = list(parts)
        self.part_groups = {k: tuple(v) for k, v in (groups or {}).items() if k not in parts}
        self._show_default_parts()

    def _show_default_parts(self) -> None:
        """While the default segmenter is chosen: its parts, if it fits the model's images."""
        if self.segmenter_spec is None:
            self.set_parts(self._default_parts if self._default_fits else [])

    def set_default_fits(self, fits: bool) -> None:
        """Whether the domain's segmenter is made for the current model's images: if not,
        its parts are not offered (a user's own segmenter still can be chosen)."""
        self._default_fits = bool(fits)
        self.segmenter.setItemText(0, "Segmenter: default" if fits else "Segmenter: none for this model")
        self.segmenter.setItemData(0, None if fits else
                                   "The default segmenter knows the toy faces' parts only; choose your own "
                                   "segmenter file for this model's images", Qt.ItemDataRole.ToolTipRole)
        self._show_default_parts()

    def _segmenter_activated(self, index: int) -> None:
        if self.segmenter.itemData(index) == "":
            path, _ = QFileDialog.getOpenFileName(self, "Choose a segmenter", "",
                                                  "TorchScript segmenters (*.pt *.pth);;All files (*)")
            if not path or not self.set_segmenter(path):
                self._show_segmenter()
        else:
            self.set_segmenter(self.segmenter.itemData(index))

    def _show_segmenter(self) -> None:
        i = self.segmenter.findData(self.segmenter_spec) if self.segmenter_spec else 0
        self.segmenter.setCurrentIndex(max(0, i))

    def set_segmenter(self, path: Optional[str]) -> bool:
        """Use the segmenter at ``path`` (None: the default) for "Fill part": reads its part
        names (no torch here) and fills the part list; what the file dialog calls."""
        if path is None or str(path) == "default":
            self.segmenter_spec = None
            self._show_default_parts()
            self._show_segmenter()
            return True
        try:
            parts = segmenter_part_names(path)
        except HSpaceError as e:
            self.segmenterError.emit(str(e))
            return False
        from pathlib import Path

        spec = str(Path(str(path)).expanduser().resolve())
        self.segmenter_spec = spec
        if self.segmenter.findData(spec) < 0:
            self.segmenter.insertItem(self.segmenter.count() - 1, f"Segmenter: {Path(spec).name}", spec)
            self.segmenter.setItemData(self.segmenter.count() - 2, spec, Qt.ItemDataRole.ToolTipRole)
        self._show_segmenter()
        self.set_parts(parts)
        return True

    def set_parts(self, parts: List[str]) -> None:
        cur = self.part.currentData()
        self.part.clear()
        for name, members in self.part_groups.items():
            if all(m in parts for m in members):
                self.part.addItem(name.replace("_", " "), name)
        for p in parts:
            self.part.addItem(p.replace("_", " "), p)
        i = self.part.findData(cur)
        self.part.setCurrentIndex(max(0, i))
        self.part.setEnabled(self.part.count() > 0)
        self.fill_btn.setEnabled(self.part.count() > 0)

    def _size_changed(self, v: float) -> None:
        self.controller.radius = float(v)
        self.canvas.set_brush_radius(v)
        self.size_slider.blockSignals(True)
        self.size_slider.setValue(int(round(v * 2)))
        self.size_slider.blockSignals(False)

    def grow(self, factor: float) -> None:
        self.size_box.setValue(max(0.5, min(64.0, self.size_box.value() * factor)))

    def _enabled_changed(self, on: bool) -> None:
        self.canvas.brush_enabled = on
        self.canvas.update()

    def _mode_changed(self, erase: bool) -> None:
        self.canvas.erase_mode = erase
        self.canvas.update()

    def _mask_changed(self) -> None:
        a = self.controller.array
        self.canvas.set_mask(a)
        n = int(a.sum())
        self.coverage.setText("empty" if n == 0 else f"{n} px ({100 * n / a.size:.1f}%)")
