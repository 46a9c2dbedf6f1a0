"""One row per active direction: scale slider (``directionSlider``), numeric box,
timestep window (a range slider) and, for Jacobian sets, which step's vector to use."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFrame, QGridLayout, QHBoxLayout,
                               QInputDialog, QLabel, QMenu, QScrollArea, QSizePolicy, QSlider,
                               QToolButton, QVBoxLayout, QWidget)
from superqt import QRangeSlider

from ..core.session import DirectionState

SLIDER_STEPS = 1000  # the slider runs from -SLIDER_STEPS to +SLIDER_STEPS


def nearest_index(timesteps: Sequence[int], t: int) -> int:
    return min(range(len(timesteps)), key=lambda i: abs(int(timesteps[i]) - int(t)))


class ScaleSlider(QSlider):
    """A direction's scale slider: an arrow key moves it 1 % of its span, Page Up/Down 10 %,
    and with Shift an arrow key moves it by its finest step (0.05 %)."""

    def __init__(self, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setRange(-SLIDER_STEPS, SLIDER_STEPS)
        self.setSingleStep(SLIDER_STEPS // 50)
        self.setPageStep(SLIDER_STEPS // 5)

    def keyPressEvent(self, event) -> None:
        keys = {Qt.Key.Key_Left: -1, Qt.Key.Key_Down: -1, Qt.Key.Key_Right: 1, Qt.Key.Key_Up: 1}
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier and event.key() in keys:
            self.setValue(self.value() + keys[event.key()])
            event.accept()
            return
        super().keyPressEvent(event)


class DirectionSliderRow(QFrame):
    changed = Signal(object)  # key
    removeRequested = Signal(object)
    rangeChanged = Signal(object)

    def __init__(self, key, title: str, method: str, state: DirectionState,
                 timesteps: Sequence[int], parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("directionRow")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.key = key
        self.method = method
        self._range = max(1e-6, float(state.range))
        self._timesteps: List[int] = [int(t) for t in timesteps]
        self._window = state.window
        self._at = state.at_timestep

        g = QGridLayout(self)
        g.setContentsMargins(6, 4, 6, 4)
        g.setVerticalSpacing(2)
        self.title = QLabel(title)
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.title.setToolTip(title)
        f = self.title.font()
        f.setBold(True)
        self.title.setFont(f)
        self.reset_btn = QToolButton()
        self.reset_btn.setText("0")
        self.reset_btn.setToolTip("Reset the scale to 0")
        self.remove_btn = QToolButton()
        self.remove_btn.setText("×")
        self.remove_btn.setToolTip("Deactivate this direction")
        self.asym_btn = QToolButton()
        self.asym_btn.setObjectName("asymmetricToggle")
        self.asym_btn.setText("Asym")
        self.asym_btn.setCheckable(True)
        self.asym_btn.setChecked(bool(getattr(state, "asymmetric", False)))
        self.asym_btn.setToolTip("Asymmetric (Asyrp): the edit moves only each step's predicted "
                                 "image, not the noise the step adds back (edit --asymmetric)")
        self.preview_note = QLabel()  # how far its instant preview (the strip) is prepared
        self.preview_note.setObjectName("previewNote")
        self.preview_note.setStyleSheet("color: palette(mid);")
        self.preview_note.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.preview_note)
        top.addWidget(self.asym_btn)
        top.addWidget(self.reset_btn)
        top.addWidget(self.remove_btn)
        g.addLayout(top, 0, 0, 1, 3)

        self.slider = ScaleSlider()
        self.slider.setObjectName("directionSlider")
        self.slider.setToolTip("Scale of the direction (drag; arrow keys 1 %, Page Up/Down 10 %, "
                               "Shift+arrow finer)")
        self.box = QDoubleSpinBox()
        self.box.setObjectName("directionScale")
        self.box.setDecimals(3)
        self.box.setRange(-1e6, 1e6)
        self.box.setKeyboardTracking(False)
        self.box.setMinimumWidth(84)
        g.addWidget(self.slider, 1, 0, 1, 2)
        g.addWidget(self.box, 1, 2)

        self.window_label = QLabel()
        self.window_slider = QRangeSlider(Qt.Orientation.Horizontal)
        self.window_slider.setObjectName("directionWindow")
        self.window_slider.setToolTip("Timestep window: the edit is applied only at these steps")
        g.addWidget(self.window_slider, 2, 0, 1, 2)
        g.addWidget(self.window_label, 2, 2)

        self.at_combo = QComboBox()
        self.at_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.at_combo.setMinimumContentsLength(12)
        self.at_combo.setToolTip("Apply each step's own vector, or one step's vector at every step "
                                 "(how masked Jacobian edits are applied)")
        self.at_combo.setVisible(method == "jacobian")
        g.addWidget(self.at_combo, 3, 0, 1, 3)
        self.noise = method == "noise"  # noise space: no timestep window, no step, no Asyrp
        if self.noise:
            for w in (self.window_slider, self.window_label, self.at_combo, self.asym_btn):
                w.setVisible(False)
            self.slider.setToolTip("Scale of the noise-space direction: it changes x_T and the "
                                   "noise of every step (no timestep window)")

        self._apply_range()
        self.box.setValue(float(state.scale))
        self._sync_slider()
        self._rebuild_steps()

        self.slider.valueChanged.connect(self._slider_moved)
        self.box.valueChanged.connect(self._box_changed)
        self.window_slider.valueChanged.connect(self._window_moved)
        self.at_combo.currentIndexChanged.connect(self._at_changed)
        self.asym_btn.toggled.connect(lambda _on: self.changed.emit(self.key))
        self.reset_btn.clicked.connect(lambda: self.set_scale(0.0))
        self.remove_btn.clicked.connect(lambda: self.removeRequested.emit(self.key))
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    # -- values ------------------------------------------------------------------------
    def scale(self) -> float:
        return float(self.box.value())

    def set_scale(self, v: float) -> None:
        self.box.setValue(float(v))  # emits through _box_changed

    def range(self) -> float:
        return self._range

    def set_range(self, r: float) -> None:
        self._range = max(1e-6, float(r))
        self._apply_range()
        self._sync_slider()
        self.rangeChanged.emit(self.key)

    def window(self) -> Optional[Tuple[int, int]]:
        return self._window

    def at_timestep(self) -> Optional[int]:
        return self._at

    def asymmetric(self) -> bool:
        return self.asym_btn.isChecked() and not self.noise

    def state(self) -> dict:
        return {"scale": self.scale(), "window": self._window, "at_timestep": self._at,
                "range": self._range, "asymmetric": self.asymmetric()}

    def set_enabled_reason(self, ok: bool, reason: str = "") -> None:
        for w in (self.slider, self.box, self.window_slider, self.at_combo, self.reset_btn, self.asym_btn):
            w.setEnabled(ok)
        if self.noise:
            for w in (self.window_slider, self.at_combo, self.asym_btn):
                w.setEnabled(False)
        self.setToolTip(reason)
        self.title.setStyleSheet("" if ok else "color: #c0392b;")

    def set_preview_progress(self, fraction: Optional[float]) -> None:
        """Show how much of the slider's instant preview is prepared (None: hide the note)."""
        if fraction is None:
            self.preview_note.setVisible(False)
            return
        self.preview_note.setText(f"preview {int(100 * max(0.0, min(1.0, fraction)))} %")
        self.preview_note.setToolTip("The images that make this slider's instant preview are being "
                                     "rendered in the background; until they are ready a move shows "
                                     "each step of the exact render as it comes")
        self.preview_note.setVisible(True)

    def set_title(self, title: str) -> None:
        self.title.setText(title)
        self.title.setToolTip(title)

    # -- timesteps ---------------------------------------------------------------------
    def set_timesteps(self, timesteps: Sequence[int]) -> None:
        ts = [int(t) for t in timesteps]
        if ts != self._timesteps:
            self._timesteps = ts
            self._rebuild_steps()

    def _rebuild_steps(self) -> None:
        T = len(self._timesteps)
        self.window_slider.blockSignals(True)
        self.window_slider.setRange(0, max(0, T - 1))
        if self._window is None or T == 0:
            lo, hi = 0, max(0, T - 1)
        else:
            a, b = sorted(self._window, reverse=True)
            lo, hi = nearest_index(self._timesteps, a), nearest_index(self._timesteps, b)
        self.window_slider.setValue((lo, hi))
        self.window_slider.setEnabled(T > 1 and not self.noise)
        self.window_slider.blockSignals(False)
        self._update_window_label()
        self.at_combo.blockSignals(True)
        self.at_combo.clear()
        self.at_combo.addItem("each step's own vector", None)
        for i, t in enumerate(self._timesteps):
            self.at_combo.addItem(f"step {i} vector (t={t}) at every step", t)
        if self._at is not None and self._timesteps:
            self.at_combo.setCurrentIndex(1 + nearest_index(self._timesteps, self._at))
        self.at_combo.blockSignals(False)

    def _update_window_label(self) -> None:
        if not self._timesteps:
            self.window_label.setText("")
            return
        lo, hi = self.window_slider.value()
        self.window_label.setText(f"t {self._timesteps[int(lo)]}–{self._timesteps[int(hi)]}")

    # -- slots -------------------------------------------------------------------------
    def _apply_range(self) -> None:
        r = self._range
        self.box.setSingleStep(_nice_step(r / 20))
        self.slider.setToolTip(f"Scale from {-r:g} to {r:g} (the box takes any value)")

    def _sync_slider(self) -> None:
        pos = int(round(self.box.value() / self._range * SLIDER_STEPS))
        self.slider.blockSignals(True)
        self.slider.setValue(max(-SLIDER_STEPS, min(SLIDER_STEPS, pos)))
        self.slider.blockSignals(False)

    def _slider_moved(self, pos: int) -> None:
        self.box.blockSignals(True)
        self.box.setValue(round(pos * self._range / SLIDER_STEPS, 3))
        self.box.blockSignals(False)
        self.changed.emit(self.key)

    def _box_changed(self, v: float) -> None:
        self._sync_slider()
        self.changed.emit(self.key)

    def _window_moved(self, value) -> None:
        lo, hi = (int(v) for v in value)
        T = len(self._timesteps)
        if T == 0:
            return
        self._window = None if (lo, hi) == (0, T - 1) else (self._timesteps[lo], self._timesteps[hi])
        self._update_window_label()
        self.changed.emit(self.key)

    def set_window(self, window: Optional[Tuple[int, int]]) -> None:
        self._window = tuple(window) if window is not None else None
        self._rebuild_steps()
        self.changed.emit(self.key)

    def _at_changed(self, i: int) -> None:
        self._at = self.at_combo.itemData(i)
        self.changed.emit(self.key)

    def _menu(self, pos) -> None:
        m = QMenu(self)
        act = m.addAction("Slider range…")
        m.addAction("Reset window", lambda: self.set_window(None)).setEnabled(not self.noise)
        asym = m.addAction("Asymmetric (Asyrp)")
        asym.setEnabled(not self.noise)
        asym.setCheckable(True)
        asym.setChecked(self.asymmetric())
        asym.toggled.connect(self.asym_btn.setChecked)
        if m.exec(self.mapToGlobal(pos)) is act:
            r, ok = QInputDialog.getDouble(self, "Slider range", "The slider runs from -R to R. R:",
                                           self._range, 1e-6, 1e6, 3)
            if ok:
                self.set_range(r)


def _nice_step(x: float) -> float:
    import math

    if x <= 0:
        return 0.1
    e = math.floor(math.log10(x))
    m = x / 10 ** e
    m = 1 if m < 2 else 2 if m < 5 else 5
    return m * 10 ** e


class ActiveSliders(QScrollArea):
    """The scrolling list of :class:`DirectionSliderRow`, in library order."""

    changed = Signal(object)
    removeRequested = Signal(object)
    rangeChanged = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("activeDirections")
        self.setWidgetResizable(True)
        self._host = QWidget()
        self._lay = QVBoxLayout(self._host)
        self._lay.setContentsMargins(2, 2, 2, 2)
        self._lay.setSpacing(4)
        self._empty = QLabel("No active directions.\nTick directions in the library to get sliders.")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setStyleSheet("color: gray;")
        self._lay.addWidget(self._empty)
        self._lay.addStretch(1)
        self.setWidget(self._host)
        self.rows: Dict[object, DirectionSliderRow] = {}

    def sync(self, entries, timesteps: Sequence[int]) -> None:
        """``entries``: [(key, title, method, DirectionState, ok, reason)] in order."""
        keys = [e[0] for e in entries]
        for k in list(self.rows):
            if k not in keys:
                row = self.rows.pop(k)
                self._lay.removeWidget(row)
                row.deleteLater()
        for pos, (key, title, method, st, ok, reason) in enumerate(entries):
            row = self.rows.get(key)
            if row is None:
                row = DirectionSliderRow(key, title, method, st, timesteps)
                row.changed.connect(self.changed)
                row.removeRequested.connect(self.removeRequested)
                row.rangeChanged.connect(self.rangeChanged)
                self.rows[key] = row
            else:
                row.set_title(title)
                row.set_timesteps(timesteps)
            row.set_enabled_reason(ok, reason)
            self._lay.removeWidget(row)
            self._lay.insertWidget(1 + pos, row)
        self._empty.setVisible(not self.rows)

    def row(self, key) -> Optional[DirectionSliderRow]:
        return self.rows.get(key)

    def sliders(self) -> List[QSlider]:
        return [r.slider for r in self.ordered_rows()]

    def ordered_rows(self) -> List[DirectionSliderRow]:
        out = []
        for i in range(self._lay.count()):
            w = self._lay.itemAt(i).widget()
            if isinstance(w, DirectionSliderRow):
                out.append(w)
        return out
