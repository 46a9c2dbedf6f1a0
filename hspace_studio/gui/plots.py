"""Plots of a direction set's values (pyqtgraph): singular values against timestep for
Jacobian sets (one curve per vector), explained variance per component with its
cumulative sum for PCA (averaged over timesteps or at one timestep) or per timestep,
and score gaps for supervised sets. Clicking a curve or point selects its direction."""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QVBoxLayout, QWidget

from ..core.session import SetState
from .labels import shown_label
from .layout import LinesLabel

pg.setConfigOptions(antialias=True, background="w", foreground="k")


def _color(i: int, n: int):
    return pg.intColor(i, hues=max(n, 8), values=1, maxValue=200, minValue=150)


def _finite(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if math.isfinite(f) else float("nan")


class SpectrumPlot(pg.PlotWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("spectrumPlot")
        self.setMinimumHeight(160)
        self.showGrid(x=True, y=True, alpha=0.25)


class PlotPanel(QWidget):
    directionClicked = Signal(object)  # (set_id, index)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.mode = QComboBox()
        self.mode.addItem("per component", "components")
        self.mode.addItem("per timestep", "timesteps")
        self.mode.setToolTip("PCA: explained variance per component (with its cumulative sum), "
                             "or each component's share at every timestep")
        self.at = QComboBox()
        self.at.setToolTip("Average over timesteps, or one timestep")
        self.logy = QCheckBox("log")
        self.logy.setToolTip("Logarithmic value axis")
        self.caption = LinesLabel(2)  # a fixed two lines: the plot does not jump as it wraps
        self.caption.setStyleSheet("color: gray;")
        bar.addWidget(self.mode)
        bar.addWidget(self.at)
        bar.addStretch(1)
        bar.addWidget(self.logy)
        lay.addWidget(self.caption)
        lay.addLayout(bar)
        self.plot = SpectrumPlot()
        lay.addWidget(self.plot, 1)
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextSize="8pt",
                                          brush=pg.mkBrush(255, 255, 255, 210), pen=pg.mkPen(200, 200, 200))
        for axis in ("left", "bottom"):
            self.plot.getPlotItem().getAxis(axis).enableAutoSIPrefix(False)
        self.set_state: Optional[SetState] = None
        self.selected: Optional[int] = None
        self.items: Dict[int, object] = {}  # direction index -> plot item
        self._legend_fit = None  # (low, high) of the curves' values while they keep room for the legend
        self.plot.getPlotItem().getViewBox().sigResized.connect(lambda *_a: self._fit_legend())
        self.mode.currentIndexChanged.connect(self._redraw)
        self.at.currentIndexChanged.connect(self._redraw)
        self.logy.toggled.connect(self._redraw)
        self._redraw()

    def show_set(self, s: Optional[SetState], selected: Optional[int] = None) -> None:
        changed = s is not self.set_state or (s is not None and self.at.count() != len(s.timesteps) + 1)
        self.set_state, self.selected = s, selected
        if changed:
            self.at.blockSignals(True)
            self.at.clear()
            self.at.addItem("mean over t", None)
            if s is not None:
                for i, t in enumerate(s.timesteps):
                    self.at.addItem(f"t={t}", i)
            self.at.blockSignals(False)
        self._redraw()

    def select(self, index: Optional[int]) -> None:
        self.selected = index
        self._redraw()

    # -- drawing -------------------------------------------------------------------------
    def _clear(self) -> None:
        self.plot.clear()
        self.legend.clear()
        self.items = {}
        self.plot.getPlotItem().getAxis("bottom").setTicks(None)  # automatic (timesteps)
        self._legend_fit = None
        self.legend.setVisible(False)  # until curves with names are drawn
        self.plot.getPlotItem().enableAutoRange()  # (curves set their own value range)

    def _number_ticks(self, xs) -> None:
        """Whole-number ticks at the directions' numbers (no 1.5 between PC 1 and PC 2)."""
        if 0 < len(xs) <= 24:
            self.plot.getPlotItem().getAxis("bottom").setTicks([[(x, str(x)) for x in sorted(xs)]])

    def _redraw(self) -> None:
        self._clear()
        s = self.set_state
        pi = self.plot.getPlotItem()
        pi.setLogMode(False, False)
        pi.invertX(False)
        is_pca = s is not None and s.method == "pca"
        self.mode.setVisible(is_pca)
        self.at.setVisible(is_pca and self.mode.currentData() == "components")
        if s is None or not s.values or not s.directions:
            self.caption.setText("Select a direction set with values (Jacobian, PCA, supervised).")
            pi.setTitle("")
            return
        if s.method == "jacobian":
            self._curves(s, "singular value", log=self.logy.isChecked())
        elif is_pca and self.mode.currentData() == "timesteps":
            self._curves(s, "explained variance (%)", log=self.logy.isChecked(), factor=100.0)
        elif is_pca:
            self._pca_components(s)
        else:
            self._bars(s, "score gap" if s.method == "supervised" else "value")
        self.legend.setVisible(bool(self.legend.items))

    def _pen(self, i: int, n: int, sel: bool):
        return pg.mkPen(_color(i, n), width=3.5 if sel else 1.5)

    def _curves(self, s: SetState, ylabel: str, log: bool, factor: float = 1.0) -> None:
        pi = self.plot.getPlotItem()
        xs = [float(t) for t in s.timesteps]
        n = len(s.directions)
        for i, d in enumerate(s.directions):
            ys = [factor * _finite(v) for v in (s.value_of(d) or [])]
            if len(ys) != len(xs):
                continue
            if log:
                ys = [y if y > 0 else float("nan") for y in ys]
            sel = d.index == self.selected
            item = pg.PlotDataItem(xs, ys, pen=self._pen(i, n, sel), symbol="o",
                                   symbolSize=8 if sel else 5, symbolBrush=_color(i, n),
                                   symbolPen=None, name=shown_label(d.index, d.label), connect="finite")
            item.setCurveClickable(True, width=10)
            item.sigClicked.connect(lambda *_a, k=d.index: self._clicked(k))
            item.sigPointsClicked.connect(lambda *_a, k=d.index: self._clicked(k))
            self.plot.addItem(item)
            self.items[d.index] = item
        pi.setLogMode(False, log)
        self._room_for_legend(n, log)
        pi.invertX(True)  # sampling order: high noise on the left
        pi.setLabel("bottom", "timestep")
        pi.setLabel("left", ylabel)
        self.caption.setText(f"{s.name}: {ylabel} per timestep, one curve per direction")

    def _room_for_legend(self, n: int, log: bool) -> None:
        """Lay the legend out in rows of up to four at the top, and raise the value axis's
        top so the curves stay below it (a legend over the curves hid them); kept so as the
        plot is resized."""
        if n == 0:
            return
        self.legend.setColumnCount(min(n, 4))
        ys = []
        for item in self.items.values():
            _, y = item.getData()
            if y is not None:
                ys += [float(v) for v in y if v == v and (not log or v > 0)]
        if ys:
            if log:
                ys = [math.log10(v) for v in ys]
            self._legend_fit = (min(ys), max(ys))
            self._fit_legend()

    def _fit_legend(self) -> None:
        if self._legend_fit is None:
            return
        lo, hi = self._legend_fit
        span = (hi - lo) or abs(hi) or 1.0
        vb = self.plot.getPlotItem().getViewBox()
        height = vb.sceneBoundingRect().height()
        legend = self.legend.sceneBoundingRect().height() + 14  # its offset from the top, and a gap
        frac = min(0.75, legend / height) if height > 0 else 0.3  # the legend's share of the height
        self.plot.getPlotItem().setYRange(lo - 0.05 * span, hi + span * (frac + 0.05) / (1 - frac), padding=0)

    def _values_at(self, s: SetState, d) -> float:
        vals = [_finite(v) for v in (s.value_of(d) or [])]
        i = self.at.currentData()
        if i is not None and 0 <= i < len(vals):
            return vals[i]
        good = [v for v in vals if v == v]
        return sum(good) / len(good) if good else float("nan")

    def _pca_components(self, s: SetState) -> None:
        pi = self.plot.getPlotItem()
        dirs = sorted(s.directions, key=lambda d: d.index)  # component order, for the cumulative line
        ys = [100 * self._values_at(s, d) for d in dirs]
        xs = [d.index + 1 for d in dirs]  # numbered from 1, as the library shows them ("PC 1")
        brushes = [pg.mkBrush(230, 120, 40) if d.index == self.selected else pg.mkBrush(70, 130, 200)
                   for d in dirs]
        bars = pg.BarGraphItem(x=xs, height=[y if y == y else 0 for y in ys], width=0.7, brushes=brushes)
        self.plot.addItem(bars)
        cum, acc = [], 0.0
        for y in ys:
            acc += y if y == y else 0.0
            cum.append(acc)
        line = pg.PlotDataItem(xs, cum, pen=pg.mkPen((60, 60, 60), width=1.5), symbol="s", symbolSize=5,
                               symbolBrush=(60, 60, 60))
        self.plot.addItem(line)
        pts = pg.ScatterPlotItem(xs, [y if y == y else 0 for y in ys], size=14, brush=pg.mkBrush(0, 0, 0, 1),
                                 pen=None, data=[d.index for d in dirs])
        pts.sigClicked.connect(lambda _item, points, *_a: points and self._clicked(points[0].data()))
        self.plot.addItem(pts)
        for d in dirs:
            self.items[d.index] = pts
        self._number_ticks(xs)
        pi.setLabel("bottom", "component")
        pi.setLabel("left", "explained variance (%)")
        at = self.at.currentText()
        self.caption.setText(f"{s.name}: explained variance per component (bars) and cumulative "
                             f"(line), {at}")

    def _bars(self, s: SetState, ylabel: str) -> None:
        pi = self.plot.getPlotItem()
        ys = [self._values_at(s, d) for d in s.directions]
        xs = [d.index + 1 for d in s.directions]  # numbered from 1, as the library shows them
        brushes = [pg.mkBrush(230, 120, 40) if d.index == self.selected else pg.mkBrush(70, 160, 110)
                   for d in s.directions]
        self.plot.addItem(pg.BarGraphItem(x=xs, height=[y if y == y else 0 for y in ys], width=0.7,
                                          brushes=brushes))
        pts = pg.ScatterPlotItem(xs, [y if y == y else 0 for y in ys], size=14, brush=pg.mkBrush(0, 0, 0, 1),
                                 pen=None, data=[d.index for d in s.directions])
        pts.sigClicked.connect(lambda _item, points, *_a: points and self._clicked(points[0].data()))
        self.plot.addItem(pts)
        for d in s.directions:
            self.items[d.index] = pts
        self._number_ticks(xs)
        pi.setLabel("bottom", "direction")
        pi.setLabel("left", ylabel)
        self.caption.setText(f"{s.name}: {ylabel} per direction")

    def _clicked(self, index) -> None:
        if self.set_state is not None and index is not None:
            self.directionClicked.emit((self.set_state.set_id, int(index)))

    def data_items(self) -> List[object]:
        return list(self.plot.getPlotItem().listDataItems()) + [
            i for i in self.plot.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
