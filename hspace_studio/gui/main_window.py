"""The main window: canvas in the middle, panels in docks, the engine on its own thread.

``MainWindow(model)`` takes ``"default"``, a local diffusers folder or a hub id. Key
widgets carry object names (docs/architecture.md, contract): ``canvas``, ``brush``,
``directionLibrary``, ``spectrumPlot``, ``jobProgress`` and one ``directionSlider``
per active direction.

The UI thread never runs torch: every engine call is a job, a preview request or a
strip request handed to :class:`~hspace_studio.gui.worker.EngineWorker`.
"""
from __future__ import annotations

import atexit
import time
import weakref
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QDockWidget,
                               QFileDialog, QLabel, QListWidget, QListWidgetItem, QMainWindow,
                               QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from ..core.errors import HSpaceError
from . import jobs as J
from . import main_thread_gc
from .about import about_text
from .brush import PART_GROUPS, BrushPanel, MaskController
from .canvas import Canvas
from .discovery import DiscoveryPanel
from .errors import MessageArea
from .layout import fit_to_screen, frame_fits, scrolled
from .library import DirectionLibrary
from .node_preview import NodeImages
from .plots import PlotPanel
from .progress_text import bar_format, duration, time_left
from .session import Autosave, RecentFiles
from .sliders import ActiveSliders
from .source_panel import BUILT_IN, SourcePanel
from .worker import EditItem, EngineThread, JobHandle, JobResult, PreviewRequest, StripRequest

RESOURCES = Path(__file__).resolve().parent.parent.parent / "resources"
STRIP_SCALES = (-1.0, -0.5, 0.0, 0.5, 1.0)  # times the direction's slider range
EXPORT_SCALES = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0)
PNG_FILTER = "PNG images (*.png)"
DIR_FILTER = "Direction files (*.safetensors)"
SESSION_FILTER = "hspace-studio sessions (*.json)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"


def segmenter_parts(folder: Path) -> List[str]:
    import json

    try:
        names = json.loads((folder / "parts.json").read_text(encoding="utf-8"))
        return [str(n) for n in names] if isinstance(names, list) else []
    except (OSError, ValueError, RecursionError):
        return []


class MainWindow(QMainWindow):
    previewShown = Signal(int)  # request id of a final preview put on the canvas
    jobDone = Signal(object)  # JobResult, after the window has handled it
    trajectoryShown = Signal()

    def __init__(self, model: str = "default", *, settings: Optional[QSettings] = None,
                 state_dir=None, autosave_s: float = 120.0, h_space: str = "after",
                 seed: int = 0, steps: int = 10, eta: float = 1.0, confirm_close: bool = False,
                 device: Optional[str] = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.settings = settings if settings is not None else QSettings("hspace-studio", "hspace-studio")
        self.recent = RecentFiles(self.settings)
        self.confirm_close = confirm_close
        self.device = device
        self.model_info: Optional[J.ModelInfo] = None
        self.traj_info: Optional[J.TrajectoryInfo] = None
        self.session_path: Optional[str] = None
        self.dirty = False
        self.progressive = True
        self._source: dict = {"kind": "seed"}
        self._handles: Dict[int, JobHandle] = {}
        self._callbacks: Dict[int, Callable[[JobResult], None]] = {}
        self._running: Optional[int] = None
        self._preview_id = 0
        self._preview_req: Optional[PreviewRequest] = None
        self._strip_id = 0
        self._strip_key = None
        self._loading_session = False
        self._closing = False
        self._known_sets: set = set()  # set ids the worker holds tensors for (as far as we know)
        self.previews_shown = 0
        self.shown_preview_id = 0
        self.previews_dropped = 0
        self.last_latency: Optional[float] = None
        self.last_render: Optional[float] = None
        # live slider previews (gui/node_preview.py): per direction, its strip rendered with
        # the other active edits, as uint8 node images; stale once the context changes
        self._nodes: Dict[tuple, NodeImages] = {}
        self._node_epoch = 0  # rises with a new image, region or model: every strip is stale
        self._strip_pending: Optional[tuple] = None  # (id, key, context, scales) in the worker's slot
        self._strip_shown: Optional[tuple] = None  # (key, context, scales) the library shows
        self._focus_key: Optional[tuple] = None  # direction last moved or ticked: its strip is made when idle
        self._active_keys: set = set()
        self._node_shown_id = 0  # request id a node preview was shown for
        self.showing_preview = False  # an approximation is on the canvas, the exact image pending
        self._paint_clock: Dict[str, float] = {}  # "preview"/"exact": time of the slider move, until painted
        self.last_preview_latency: Optional[float] = None  # slider move -> preview painted
        self.last_exact_latency: Optional[float] = None  # slider move -> exact image painted
        self.node_previews_shown = 0

        main_thread_gc.acquire()  # cycles holding Qt objects die in this thread, not the worker's
        self.engine = EngineThread()
        self.worker = self.engine.worker
        self._torn_down = False
        self._stop_engine = _engine_stopper(self.engine)
        # the engine thread stops however the window ends: closed, destroyed, the
        # application quitting with it open, or the interpreter exiting (a script)
        self.destroyed.connect(lambda *_a, stop=self._stop_engine: stop())
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._teardown)
        _windows.add(self)

        self._build_widgets(seed, steps, eta, h_space, model)
        self._build_menus()
        self._connect()
        self._restore_settings()
        self._update_title()
        self._update_job_ui()

        self.autosave = Autosave(state_dir, autosave_s, self)
        self.autosave.due.connect(self._autosave)
        self.autosave.start()
        QTimer.singleShot(0, self._offer_restore)

        self.load_model(model, h_space)

    # ------------------------------------------------------------------ construction
    def _build_widgets(self, seed, steps, eta, h_space, model) -> None:
        self.setWindowTitle("hspace-studio")
        self.setDockNestingEnabled(True)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.messages = MessageArea()
        lay.addWidget(self.messages)
        self.canvas = Canvas()
        lay.addWidget(self.canvas, 1)
        self.setCentralWidget(central)

        self.mask = MaskController((64, 64), self)
        self.source_panel = SourcePanel()
        self.source_panel.set_model_source(model, self.recent.get("models"))
        self.source_panel.set_values(seed=seed, steps=steps, eta=eta, h_space=h_space)
        self.brush = BrushPanel(self.mask, self.canvas)
        parts = segmenter_parts(RESOURCES / "toyfaces-segmenter")
        if parts:
            self.brush.set_default_parts(parts)
        self.brush.segmenterError.connect(self.show_error)
        self.library = DirectionLibrary()
        self.sliders = ActiveSliders()
        self.plots = PlotPanel()
        self.discovery = DiscoveryPanel(self._sampling_params, self._mask_for_job, self._steps_count)

        self.docks: Dict[str, QDockWidget] = {}

        def dock(name, title, widget, area, scroll=False):
            d = QDockWidget(title, self)
            d.setObjectName(f"dock_{name}")
            d.setWidget(scrolled(widget) if scroll else widget)
            d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                          | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                          | QDockWidget.DockWidgetFeature.DockWidgetClosable)
            self.addDockWidget(area, d)
            self.docks[name] = d
            return d

        L, R = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        # tall panels scroll: they must not make the window taller than a laptop screen
        dock("source", "Image source", self.source_panel, L, scroll=True)
        dock("brush", "Mask brush", self.brush, L, scroll=True)
        dock("discover", "Discover", self.discovery, L)
        dock("library", "Direction library", self.library, R)
        dock("sliders", "Active directions", self.sliders, R)
        dock("plots", "Spectrum", self.plots, R)
        fit_to_screen(self, QSize(1500, 940))  # or less, on a smaller screen
        self.resizeDocks([self.docks["source"], self.docks["library"]],
                         [460 if self.width() >= 1400 else 400, 400], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["source"], self.docks["brush"], self.docks["discover"]],
                         [300, 220, 300], Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["library"], self.docks["sliders"], self.docks["plots"]],
                         [320, 260, 340], Qt.Orientation.Vertical)

        sb = self.statusBar()
        self.job_label = QLabel()
        self.job_label.setObjectName("jobLabel")
        self.job_label.setMaximumWidth(420)  # a long message must not widen the window
        self.job_progress = QProgressBar()
        self.job_progress.setObjectName("jobProgress")
        self.job_progress.setMaximumWidth(340)
        self.job_progress.setMinimumWidth(260)
        self.job_progress.setTextVisible(True)
        self._job_clock = QTimer(self)  # time elapsed and left, between progress reports
        self._job_clock.setInterval(1000)
        self._job_clock.timeout.connect(self._show_job_time)
        self._job_name, self._job_message, self._job_t0 = "", "", 0.0
        self._job_counts, self._job_left = (0, 0, 0.0), None
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelJob")
        self.cancel_button.setToolTip("Stop the running job at the next diffusion step (Esc)")
        self.preview_label = QLabel()
        self.preview_label.setObjectName("previewTime")
        self.hover_label = QLabel()
        sb.addPermanentWidget(self.hover_label)
        sb.addPermanentWidget(self.preview_label)
        sb.addPermanentWidget(self.job_label)
        sb.addPermanentWidget(self.job_progress)
        sb.addPermanentWidget(self.cancel_button)

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
        u = self.mask.undo_stack.createUndoAction(self, "Undo mask")
        u.setShortcuts([QKeySequence("Ctrl+Z")])
        r = self.mask.undo_stack.createRedoAction(self, "Redo mask")
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
        self.act["cancel"] = A(m, "Cancel job", self.cancel_job, "Esc")

        m = mb.addMenu("&Help")
        A(m, "Keyboard shortcuts", self.show_shortcuts, "F1")
        A(m, "About", self.show_about)

    def _connect(self) -> None:
        w = self.worker
        w.jobStarted.connect(self._job_started)
        w.jobProgress.connect(self._job_progress)
        w.jobFinished.connect(self._job_finished)
        w.previewReady.connect(self._preview_ready)
        w.stripReady.connect(self._strip_ready)
        self.canvas.painted.connect(self._canvas_painted)
        w.setsChecked.connect(self._sets_checked)
        self.cancel_button.clicked.connect(self.cancel_job)

        sp = self.source_panel
        sp.loadModelRequested.connect(self.load_model)
        for changed in (sp.guidanceChanged, sp.spacingChanged):
            changed.connect(lambda: self.load_model(self.model_info.source if self.model_info
                                                    else sp.model_source()))
        sp.sampleRequested.connect(self.sample_current_seed)
        sp.samplingChanged.connect(self.remake_source)
        sp.openImageRequested.connect(self.open_image_dialog)

        self.brush.fillPartRequested.connect(self.fill_part)
        self.brush.loadRequested.connect(self.load_mask_dialog)
        self.brush.saveRequested.connect(self.save_mask_dialog)
        self.mask.maskChanged.connect(self._mark_dirty)
        self.mask.maskChanged.connect(lambda: self.discovery.mask_painted(bool(self.mask.array.any())))
        self.brush.keep_inside.toggled.connect(self._region_changed)
        self.brush.free_steps.valueChanged.connect(self._region_input_changed)
        self.mask.maskChanged.connect(self._region_input_changed)
        self.canvas.hoverChanged.connect(self._hover)

        lib = self.library
        lib.activeChanged.connect(self._active_changed)
        lib.selectionMoved.connect(self._selection_moved)
        lib.changed.connect(self._mark_dirty)
        lib.changed.connect(self._forget_removed_sets)
        lib.importRequested.connect(self.import_directions_dialog)
        lib.exportRequested.connect(self.export_directions_dialog)
        lib.disentangleRequested.connect(self.disentangle_dialog)
        lib.strip.scaleClicked.connect(self._strip_clicked)

        self.sliders.changed.connect(self._slider_changed)
        self.sliders.removeRequested.connect(lambda key: self.library.set_active(key, False))
        self.sliders.rangeChanged.connect(self._slider_changed)
        self.plots.directionClicked.connect(lambda key: self.library.select(*key))
        self.discovery.runRequested.connect(self.run_discovery)

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
            if not self.isMaximized() and not frame_fits(self):  # saved on a larger screen
                fit_to_screen(self, self.size())
        st = s.value("window/state")
        if isinstance(st, QByteArray) and not st.isEmpty():
            self.restoreState(st)
        try:
            self.brush.size_box.setValue(float(s.value("brush/radius", 3.0)))
            self.brush.opacity.setValue(int(s.value("brush/opacity", 45)))
        except (TypeError, ValueError):
            pass
        prog = s.value("view/progressive", True)
        self.act["progressive"].setChecked(prog not in (False, "false", "0", 0))

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("brush/radius", self.brush.size_box.value())
        s.setValue("brush/opacity", self.brush.opacity.value())
        s.setValue("view/progressive", self.progressive)
        s.sync()

    def _last_dir(self, kind: str) -> str:
        return str(self.settings.value(f"dirs/{kind}", str(Path.home())))

    def _remember_dir(self, kind: str, path: str) -> None:
        self.settings.setValue(f"dirs/{kind}", str(Path(path).parent))

    # ------------------------------------------------------------------ messages
    def show_error(self, message: str, title: str = "Error") -> None:
        """Show an error without blocking (banner + status bar). Tests read
        ``self.messages.errors``; override to route errors elsewhere."""
        text = message if not title or title == "Error" else f"{title}: {message}"
        self.messages.show_message(text, "error")
        self.statusBar().showMessage(text, 10000)

    def show_info(self, message: str, timeout_s: float = 6.0, level: str = "info", action=None) -> None:
        """A success or a hint: in the status bar; warnings and offers also in the banner.
        An info message clears an error banner (the error is stale once something works)."""
        self.statusBar().showMessage(message, int(timeout_s * 1000))
        if level == "info":
            self.messages.clear_error()
        if level != "info" or action is not None:
            self.messages.show_message(message, level, 0 if action else timeout_s, action)

    def _hover(self, x: int, y: int) -> None:
        self.hover_label.setText("" if x < 0 else f"x {x}  y {y}  zoom {self.canvas.zoom:g}×")

    def _update_title(self) -> None:
        name = Path(self.session_path).name if self.session_path else "untitled"
        model = self.model_info.source if self.model_info else "no model"
        self.setWindowTitle(f"hspace-studio — {name}{' *' if self.dirty else ''} — {model}")

    def _mark_dirty(self, *_a) -> None:
        if not self._loading_session and not self.dirty:
            self.dirty = True
            self._update_title()

    # ------------------------------------------------------------------ jobs
    def submit(self, job, on_done: Optional[Callable[[JobResult], None]] = None) -> JobHandle:
        """Queue a job on the worker; ``on_done(result)`` replaces the default handling."""
        h = self.worker.submit(job)
        self._handles[h.id] = h
        if on_done is not None:
            self._callbacks[h.id] = on_done
        self._update_job_ui()
        return h

    @property
    def busy(self) -> bool:
        return bool(self._handles) or self.worker.busy

    @property
    def idle(self) -> bool:
        """Nothing queued or running, and the newest preview is on the canvas."""
        return (not self.busy and (self._preview_req is None
                                   or self.shown_preview_id >= self._preview_req.id))

    def cancel_job(self) -> None:
        if self._running is not None and self._running in self._handles:
            self._handles[self._running].cancel()
            self._job_message = "cancelling…"
            self.job_label.setText("cancelling…")

    def _job_started(self, job_id: int, label: str) -> None:
        self._running = job_id
        self._job_name = label
        self._job_t0 = time.monotonic()
        self._job_counts = (0, 0, 0.0)  # done, total, seconds elapsed at that report
        self.job_label.setText(label)
        self.job_progress.setRange(0, 0)
        self._job_clock.start()
        self._update_job_ui()

    def _job_progress(self, job_id: int, done: int, total: int, message: str) -> None:
        if job_id != self._running:
            return
        self._job_counts = (int(done), int(total), time.monotonic() - self._job_t0)
        self.job_progress.setRange(0, max(1, total))
        self.job_progress.setValue(done)
        if message:
            self._job_message = message[:60]
        self._show_job_time()

    def _show_job_time(self) -> None:
        """Percentage, step i of n and time left in the bar; elapsed time by the label
        (also before the first report, while the bar can only show that it is busy)."""
        if self._running is None:
            return
        done, total, at = self._job_counts
        now = time.monotonic() - self._job_t0
        left = time_left(done, total, at, now)
        self._job_left = left
        self.job_progress.setFormat(bar_format(done, total, left, self._queued()))
        text = self._job_message or self._job_name
        self.job_label.setText(f"{text} ({duration(now)})" if now >= 2 else text)

    def _update_job_ui(self) -> None:
        active = bool(self._handles)
        self.job_progress.setVisible(active)
        self.cancel_button.setVisible(active)
        self.cancel_button.setEnabled(self._running is not None)
        if "cancel" in getattr(self, "act", {}):  # Esc cancels only while a job runs
            self.act["cancel"].setEnabled(self._running is not None)
        self.job_label.setVisible(active)
        if self._running is None:
            self._job_clock.stop()
            self._job_message = ""
            queued = self._queued()
            self.job_progress.setFormat(f"%p%  (+{queued} queued)" if active and queued > 0 else "%p%")
        else:
            self._show_job_time()

    def _queued(self) -> int:
        return len(self._handles) - (1 if self._running in self._handles else 0)

    def _job_finished(self, res: JobResult) -> None:
        self._handles.pop(res.id, None)
        if res.id == self._running:
            self._running = None
        cb = self._callbacks.pop(res.id, None)
        try:
            if cb is not None:
                cb(res)
            else:
                self._default_result(res)
        finally:
            self._update_job_ui()
            self.jobDone.emit(res)

    def _default_result(self, res: JobResult) -> None:
        job = res.job
        name = J.describe(job)
        if res.cancelled:
            if res.error != "replaced by a newer request":
                self.statusBar().showMessage(f"{name}: cancelled", 5000)
            if isinstance(job, J.LoadModel) and self.model_info is None:
                self.canvas.placeholder = "No model loaded"
                self.canvas.update()
            return
        if not res.ok:
            self.show_error(f"{name} failed: {res.error}")
            if isinstance(job, J.LoadModel):
                self._model_failed(job, res.error)
            return
        v = res.value
        if isinstance(job, J.LoadModel):
            self._model_loaded(v)
        elif isinstance(job, (J.Sample, J.Invert, J.OpenTrajectory)):
            if isinstance(job, J.Invert):
                self.recent.add("images", str(job.path))
            self._trajectory_loaded(v, job)
        elif isinstance(job, (J.ImportDirections, J.DiscoverPCA, J.DiscoverJacobian,
                              J.DiscoverSupervised, J.Disentangle)):
            self.library.add_sets(v)
            if isinstance(job, J.ImportDirections):
                for p in job.paths:
                    self.recent.add("directions", str(p))
            names = ", ".join(s.name for s in v)
            self.show_info(f"{name}: added {names} ({sum(s.count for s in v)} directions, {res.seconds:.1f} s)")
        elif isinstance(job, J.ExportDirections):
            if v["whole"]:
                self.library.set_path(job.set_id, v["path"])
            self.recent.add("directions", v["path"])
            self.show_info(f"wrote {v['path']}")
        elif isinstance(job, (J.ExportImage, J.ExportStrip, J.ExportGrid)):
            self.last_export = v
            self.show_info(f"wrote {v['path']}")
        elif isinstance(job, J.SaveTrajectory):
            self.show_info(f"wrote {v}")
        elif isinstance(job, J.LoadSession):
            self._session_loaded(v, job.path)
        elif isinstance(job, J.SaveSession):
            pass
        elif isinstance(job, J.Sleep):
            self.show_info(f"waited {v} steps")

    # ------------------------------------------------------------------ model & source
    def load_model(self, source: str, h_space: Optional[str] = None) -> JobHandle:
        h_space = h_space or self.source_panel.h_space.currentText()
        self.canvas.placeholder = f"Loading model {source}…"
        self.canvas.update()
        guide, weight = self.source_panel.guidance(str(source))
        return self.submit(J.LoadModel(str(source), h_space, self.device, guide, weight,
                                       self.source_panel.timesteps()))

    def _show_model(self, info: J.ModelInfo) -> None:
        """The image source's model, h-space point, guidance and spacing as ``info`` has them."""
        self.source_panel.set_model_source(info.source, self.recent.get("models"))
        self.source_panel.set_values(h_space=info.h_space)
        self.source_panel.set_guidance(info.source, info.guide, info.guide_weight)
        self.source_panel.set_timesteps(info.timesteps)
        self.source_panel.set_conditioning(info.conditioning)

    def _model_failed(self, job: J.LoadModel, error: str) -> None:
        if self.model_info is not None:  # keep the previous model
            self._show_model(self.model_info)
        else:
            self.canvas.placeholder = f"No model loaded.\n{error}\nChoose a model in 'Image source'."
            self.canvas.update()

    def _model_loaded(self, info: J.ModelInfo) -> None:
        self.messages.clear_error()
        first = self.model_info is None
        changed = first or (info.fingerprint, info.h_space, info.timesteps) != (
            self.model_info.fingerprint, self.model_info.h_space, self.model_info.timesteps)
        self.model_info = info
        if info.source not in BUILT_IN:
            self.recent.add("models", info.source)
        self._show_model(info)
        self.discovery.set_advice(info.advice)
        self.mask.reset(info.image_size)
        self.canvas.placeholder = "Sampling…"
        self._update_title()
        if not changed and self.traj_info is not None:
            return
        self.statusBar().showMessage(f"model: {info.description}", 8000)
        self.traj_info = None  # the worker dropped the old trajectory with the old model
        self._node_epoch += 1
        self._mark_dirty()
        if not self._loading_session:
            self.remake_source()

    def _sampling_params(self) -> Tuple[int, float]:
        return self.source_panel.steps.value(), float(self.source_panel.eta.value())

    def _steps_count(self) -> int:
        return len(self.traj_info.timesteps) if self.traj_info else self.source_panel.steps.value()

    def sample_current_seed(self) -> Optional[JobHandle]:
        if self.model_info is None:
            return None
        steps, eta = self._sampling_params()
        return self.submit(J.Sample(*self.source_panel.conditioning(), seed=self.source_panel.seed.value(),
                                    steps=steps, eta=eta))

    def remake_source(self) -> Optional[JobHandle]:
        """Make the current image again (new model, steps or eta)."""
        if self.model_info is None:
            return None
        steps, eta = self._sampling_params()
        kind = self._source.get("kind")
        if kind == "image" and self._source.get("path"):
            return self.submit(J.Invert(*self.source_panel.conditioning(), path=self._source["path"],
                                        steps=steps, eta=eta))
        if kind == "trajectory" and self._source.get("path"):
            if self.traj_info is not None and len(self.traj_info.timesteps) != steps:
                self.show_info("a trajectory file fixes its own steps and eta; sampling the seed instead",
                               level="warning")
                return self.sample_current_seed()
            return self.submit(J.OpenTrajectory(self._source["path"]))
        return self.sample_current_seed()

    def open_image(self, path: str) -> JobHandle:
        steps, eta = self._sampling_params()  # "Open recent" gets it once it has opened
        return self.submit(J.Invert(*self.source_panel.conditioning(), path=str(path), steps=steps, eta=eta))

    def open_trajectory(self, path: str) -> JobHandle:
        return self.submit(J.OpenTrajectory(str(path)))

    def _trajectory_loaded(self, info: J.TrajectoryInfo, job=None) -> None:
        self.messages.clear_error()  # a new image is on the canvas: an earlier failure is stale
        self.traj_info = info
        self._node_epoch += 1  # strips of the old image are no previews of this one
        self._source = dict(info.source)
        src = info.source
        if self.model_info is not None and self.model_info.conditioning is not None and "prompt" in info.origin:
            self.source_panel.set_conditioning(info.origin)  # the image's own prompt (a file, a session)
        if src.get("kind") == "seed":
            text = f"seed {src['seed']}, {src['steps']} steps, eta {src['eta']:g}"
            self.source_panel.set_values(seed=src["seed"])
        elif src.get("kind") == "image":
            text = f"image {Path(src['path']).name} ({info.origin.get('inversion', 'inverted')}"
            text += f", PSNR {info.psnr:.1f} dB)" if info.psnr is not None and info.psnr != float("inf") else \
                ", exact)" if info.psnr is not None else ")"
            if info.note:
                text += f"\n{info.note}"
        else:
            text = f"trajectory {Path(str(src.get('path'))).name} ({len(info.timesteps)} steps)"
        if src.get("kind") in ("image", "trajectory"):
            self.source_panel.set_values(steps=len(info.timesteps))
        self.source_panel.info.setText(text + (f"\n{self.model_info.description}" if self.model_info else ""))
        self.canvas.set_original(info.image)
        self.canvas.set_edited(info.image)
        if self.mask.doc.shape != info.image.shape[:2]:
            self.mask.reset(info.image.shape[:2])
        self._sync_sliders()
        self._mark_dirty()
        self.trajectoryShown.emit()
        self.request_preview()
        self._request_strip()

    # ------------------------------------------------------------------ preview
    def current_edits(self) -> Tuple[EditItem, ...]:
        out = []
        for s, d in self.library.active():
            if s.status == "mismatch":
                continue
            out.append(EditItem(s.set_id, d.index, float(d.scale),
                                tuple(d.window) if d.window is not None else None, d.at_timestep,
                                asymmetric=d.asymmetric))
        return tuple(out)

    def request_preview(self, sent_at: Optional[float] = None) -> Optional[int]:
        """Ask for the edited image of the current slider state; returns the request id.
        ``sent_at``: when the user asked (a slider move), for the latency shown."""
        if self.traj_info is None:
            return None
        self._preview_id += 1
        req = PreviewRequest(self._preview_id, self.current_edits(), self.progressive,
                             time.perf_counter() if sent_at is None else sent_at)
        self._preview_req = req
        self.worker.request_preview(req)
        return req.id

    def _preview_ready(self, res) -> None:
        if res.id != self._preview_id:  # an older request: the user has moved on
            self.previews_dropped += 1
            return
        if res.final:
            self.shown_preview_id = res.id
        if res.error:
            self.statusBar().showMessage(f"preview failed: {res.error}", 8000)
            self.messages.show_message(f"Preview failed: {res.error}", "error", key="preview")
            return
        if res.image is None:
            return
        if not res.final:
            # a step's predicted image, unless the strip's cross-fade (better) is shown for this move
            if self.progressive and self._node_shown_id != res.id:
                self.canvas.set_edited(res.image, interim=True, text=f"preview: step {res.step}/{res.steps}")
                self.showing_preview = True
                self._show_latency()
            return
        self.canvas.set_edited(res.image)
        self.showing_preview = False
        self.messages.clear_error("preview")  # only a preview's own error: others stay to be read
        now = time.perf_counter()
        self.last_latency = now - self._preview_req.sent_at if self._preview_req else None
        if self._preview_req is not None:
            self._paint_clock["exact"] = self._preview_req.sent_at
        self.last_render = res.render_s
        self.previews_shown += 1
        self._show_latency()
        self.previewShown.emit(res.id)

    def _show_node_preview(self, key, moved_at: float) -> bool:
        """Put the cross-fade of direction ``key``'s strip images at its new scale on the
        canvas, labelled as a preview, if a strip made with the current other edits is here
        (then the exact image of the request about to be sent replaces it)."""
        nodes = self._nodes.get(key)
        want = self._strip_context(key)
        scale = float(self.library.direction(key)[1].scale) if want is not None else 0.0
        if nodes is None or want is None or nodes.context[0] != want[0] or not nodes.covers(scale):
            return False  # no strip of this edit (or a typed scale beyond it): the old image stays
        img = nodes.pixels(scale)
        self._node_shown_id = self._preview_id + 1  # the id request_preview gives next
        self.canvas.set_edited(img, interim=True, text="preview")
        self.showing_preview = True
        self.node_previews_shown += 1
        self._paint_clock["preview"] = moved_at
        self._show_latency()
        return True

    def _canvas_painted(self) -> None:
        """The canvas drew what was last put on it: the latencies end here."""
        if not self._paint_clock:
            return
        now = time.perf_counter()
        if "preview" in self._paint_clock:
            self.last_preview_latency = now - self._paint_clock["preview"]
        if "exact" in self._paint_clock:
            self.last_exact_latency = now - self._paint_clock["exact"]
        self._paint_clock.clear()
        self._show_latency()

    def _show_latency(self) -> None:
        def ms(v):
            return f"{1000 * v:.0f} ms" if v is not None else "–"

        text = f"preview {ms(self.last_preview_latency)} · exact {ms(self.last_exact_latency)}"
        if self.last_render is not None:
            text += f" (engine {ms(self.last_render)})"
        self.preview_label.setText(("preview shown · " if self.showing_preview else "") + text)
        self.preview_label.setToolTip("Slider move to preview on the canvas, and to the exact image "
                                      "(the engine's own render time in brackets)")

    def _set_progressive(self, on: bool) -> None:
        self.progressive = bool(on)

    # ------------------------------------------------------------------ library & sliders
    def _sets_checked(self, statuses: dict) -> None:
        self.library.set_statuses(statuses)
        bad = [s.name for s in self.library.sets if s.status == "mismatch"]
        if bad and statuses:
            self.statusBar().showMessage(f"{len(bad)} direction set(s) do not fit this model: "
                                         f"{', '.join(bad[:3])}", 8000)

    def _sync_sliders(self) -> None:
        entries = []
        for s, d in self.library.active():
            ok = s.status != "mismatch"
            method = "noise" if s.h_space == "noise" else s.method  # window and step do not apply
            entries.append(((s.set_id, d.index), self.library.title(s, d), method, d, ok,
                            s.status_text if not ok else ""))
        ts = list(self.traj_info.timesteps) if self.traj_info else []
        self.sliders.sync(entries, ts)

    def _active_changed(self) -> None:
        keys = [(s.set_id, d.index) for s, d in self.library.active()]
        new = [k for k in keys if k not in self._active_keys]
        self._active_keys = set(keys)
        if new:  # a newly ticked direction: its strip is made when idle, so its first drag previews
            self._focus_key = new[-1]
        self._sync_sliders()
        self.request_preview()
        self._request_strip()  # the other edits of every strip changed

    def _slider_changed(self, key) -> None:
        moved_at = time.perf_counter()
        found = self.library.direction(key)
        row = self.sliders.row(key)
        if found is None or row is None:
            return
        d = found[1]
        d.scale = row.scale()
        d.asymmetric = row.asymmetric()
        d.window = row.window()
        d.at_timestep = row.at_timestep()
        d.range = row.range()
        self._mark_dirty()
        key = tuple(key)
        self._focus_key = key
        if self.traj_info is not None:
            self._show_node_preview(key, moved_at)  # at once; the exact image follows
        self.request_preview(moved_at)
        self._request_strip()  # other strips' edits (or this one's window, range ...) changed

    def _forget_removed_sets(self) -> None:
        """Let the worker free the tensors of sets removed from the library (without this
        every import or discovery kept its tensors for the life of the window)."""
        current = {s.set_id for s in self.library.sets}
        gone = self._known_sets - current
        self._known_sets = current
        if gone and not self._closing:
            self.submit(J.ForgetSets(tuple(sorted(gone))), lambda res: None)

    def reset_sliders(self) -> None:
        for row in self.sliders.ordered_rows():
            row.blockSignals(True)
            row.set_scale(0.0)
            row.blockSignals(False)
        for _s, d in self.library.active():
            d.scale = 0.0
        self._mark_dirty()
        self.request_preview()
        self._request_strip()

    def slider_rows(self):
        return self.sliders.ordered_rows()

    def _selection_moved(self, sel) -> None:
        if sel is None:
            self.plots.show_set(None)
            self._strip_key = None
            self._strip_shown = None
            self.library.strip.clear("Select a direction to see it at several scales.")
            return
        set_id, index = sel
        s = self.library.find_set(set_id)
        self.plots.show_set(s, index)
        if index is None and s is not None and s.directions:
            index = s.directions[0].index
        self._strip_key = (set_id, index) if index is not None else None
        self._request_strip()

    def _strip_context(self, key) -> Optional[tuple]:
        """((epoch, item, others), scales) of direction ``key``'s strip as it would be made now:
        with the other active edits (``others``), so that its images are the real edit at its
        node scales; None where no strip can be made."""
        found = self.library.direction(key) if key is not None and self.traj_info is not None else None
        if found is None or found[0].status == "mismatch":
            return None
        s, d = found
        item = EditItem(s.set_id, d.index, 1.0, tuple(d.window) if d.window else None, d.at_timestep,
                        asymmetric=d.asymmetric)
        others = tuple(e for e in self.current_edits() if (e.set_id, e.index) != tuple(key) and e.scale != 0.0)
        return (self._node_epoch, item, others), tuple(round(f * d.range, 6) for f in STRIP_SCALES)

    def _strip_cached(self, key, want) -> bool:
        nodes = self._nodes.get(key)
        return nodes is not None and nodes.context == want

    def _strip_asked(self, key, want) -> bool:
        return self._strip_pending is not None and self._strip_pending[1:] == (key, *want)

    def _send_strip(self, key, want) -> None:
        (epoch, item, others), scales = want
        self._strip_pending = (self._strip_id, key, *want)
        self.worker.request_strip(StripRequest(self._strip_id, item, scales, others))

    def _request_focus_strip(self) -> None:
        """Ask (at the lowest priority) for the strip of the direction last moved or ticked,
        unless it is here or asked for: its images make that slider's instant previews."""
        self._nodes = {k: v for k, v in self._nodes.items()  # drop strips of an older image
                       if v.context[0][0] == self._node_epoch and self.library.direction(k) is not None}
        key = self._focus_key
        active = {(s.set_id, d.index) for s, d in self.library.active()}
        if key is None or key == self._strip_key or key not in active:
            return
        want = self._strip_context(key)
        if want is None or self._strip_cached(key, want) or self._strip_asked(key, want):
            return
        self._strip_id += 1
        self._send_strip(key, want)

    def _request_strip(self) -> None:
        """Ask for the strips that are missing: the selected direction's (the library shows
        it), then the focus direction's (see :meth:`_request_focus_strip`)."""
        key = self._strip_key
        if key is None or self.traj_info is None:
            self._request_focus_strip()
            return
        found = self.library.direction(key)
        if found is None:
            self._request_focus_strip()
            return
        s, d = found
        if s.status == "mismatch":
            self._strip_shown = None
            self.library.strip.clear(f"Does not fit: {s.status_text}")
            self._request_focus_strip()
            return
        want = self._strip_context(key)
        if self._strip_cached(key, want):  # made already: show it, and go on to the focus strip
            if self._strip_shown != (key, *want):
                nodes = self._nodes[key]
                self.library.strip.show_images(list(nodes.images), want[1])
                self._strip_shown = (key, *want)
            self._request_focus_strip()
            return
        if self._strip_asked(key, want):
            return
        self._strip_id += 1
        self.library.strip.mark_stale()  # greyed with "updating…" until the new strip comes
        self._send_strip(key, want)

    def _strip_ready(self, res) -> None:
        asked = self._strip_pending
        if asked is None or res.id != asked[0]:
            return
        self._strip_pending = None
        _id, key, ctx, scales = asked
        if res.error:
            if key == self._strip_key:
                self._strip_shown = None
                self.library.strip.clear(f"strip failed: {res.error}")
            return  # not asked again until the user changes something
        if self._strip_context(key) == (ctx, scales):  # still the current edit: keep it for previews
            self._nodes[key] = NodeImages.from_strip(res.scales, res.images, (ctx, scales))
            if key == self._strip_key:
                self.library.strip.show_images(res.images, res.scales)
                self._strip_shown = (key, ctx, scales)
        self._request_strip()  # the next missing one

    def _strip_clicked(self, scale: float) -> None:
        key = self._strip_key
        if key is None:
            return
        self.library.set_active(key, True)
        row = self.sliders.row(key)
        if row is not None:
            row.set_scale(scale)

    # ------------------------------------------------------------------ discovery
    def _region_changed(self, *_args) -> None:
        """Send the worker the mask that edits must stay inside (or none), then redraw."""
        keep = self.brush.keep_inside.isChecked()
        mask = self.mask.array.copy() if keep else None
        self._node_epoch += 1  # strips made in the old region are no previews
        if keep and not mask.any():
            self.statusBar().showMessage("The mask is empty: edits apply to the whole image until "
                                         "you paint a region", 8000)
        self.submit(J.SetRegion(mask, self.brush.free_steps.value()), lambda res: None)
        self._mark_dirty()
        self.request_preview()
        self._request_strip()

    def _region_input_changed(self, *_args) -> None:
        """The mask or the free steps changed: resend the region if one is in force."""
        if self.brush.keep_inside.isChecked():
            self._region_changed()

    def _mask_for_job(self) -> Optional[np.ndarray]:
        return self.mask.array.copy()

    def run_discovery(self, job) -> Optional[JobHandle]:
        if isinstance(job, Exception):
            self.show_error(str(job))
            return None
        if self.model_info is None:
            self.show_error("Load a model first")
            return None
        if isinstance(job, J.DiscoverJacobian) and job.mask is not None and not job.mask.any():
            self.show_error("The mask is empty: paint a region first, or untick 'Use the painted mask'")
            return None
        if isinstance(job, J.DiscoverSupervised) and job.index_dir is None:
            from dataclasses import replace

            job = replace(job, index_dir=str(self.autosave.dir / "indexes"))
        return self.submit(job)

    def disentangle(self, target, against, name: Optional[str] = None) -> Optional[JobHandle]:
        against = tuple(tuple(a) for a in against if tuple(a) != tuple(target))
        if not against:
            self.show_error("Select the directions to disentangle against (besides the current one)")
            return None
        return self.submit(J.Disentangle(tuple(target), against, name))

    def disentangle_dialog(self) -> None:
        sel = self.library.selected()
        if sel is None or sel[1] is None:
            self.show_error("Select the direction to disentangle (a direction, not a set)")
            return
        target = (sel[0], sel[1])
        others = [k for k in self.library.selected_keys() if k != target]
        if not others:
            dlg = QDialog(self)
            dlg.setWindowTitle("Disentangle against…")
            v = QVBoxLayout(dlg)
            v.addWidget(QLabel("Project the current direction off these directions:"))
            lst = QListWidget()
            for s, d in self.library.all_directions():
                if (s.set_id, d.index) == target:
                    continue
                it = QListWidgetItem(self.library.title(s, d))
                it.setData(Qt.ItemDataRole.UserRole, (s.set_id, d.index))
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(Qt.CheckState.Unchecked)
                lst.addItem(it)
            v.addWidget(lst)
            bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
            bb.accepted.connect(dlg.accept)
            bb.rejected.connect(dlg.reject)
            v.addWidget(bb)
            if dlg.exec() != QDialog.DialogCode.Accepted:
                return
            others = [lst.item(i).data(Qt.ItemDataRole.UserRole) for i in range(lst.count())
                      if lst.item(i).checkState() == Qt.CheckState.Checked]
        self.disentangle(target, others)

    def _show_discover(self, tab: int) -> None:
        self.docks["discover"].show()
        self.docks["discover"].raise_()
        self.discovery.setCurrentIndex(tab)

    # ------------------------------------------------------------------ mask
    def fill_part(self, part: str, mode: str = "add") -> Optional[JobHandle]:
        if self.traj_info is None:
            self.show_error("No image to segment yet")
            return None
        parts = PART_GROUPS.get(part, (part,))

        def done(res: JobResult):
            if res.ok and not res.value["mask"].any():  # e.g. hair on a bald head: keep the mask
                self.show_info(f"The segmenter finds no {part.replace('_', ' ')} in this image: "
                               "the mask is unchanged", level="warning")
            elif res.ok:
                self.mask.combine(res.value["mask"], mode, f"Fill {part.replace('_', ' ')}")
            elif not res.cancelled:
                self.show_error(f"Fill from part failed: {res.error}")

        return self.submit(J.Segment(tuple(parts), self.brush.segmenter_spec), done)

    def load_mask(self, path: str) -> bool:
        try:
            self.mask.load_png(path)
            return True
        except (HSpaceError, OSError, ValueError) as e:
            self.show_error(f"Cannot load the mask: {e}")
            return False

    def load_mask_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Load mask", self._last_dir("mask"), IMAGE_FILTER)
        if p:
            self._remember_dir("mask", p)
            self.load_mask(p)

    def save_mask_dialog(self) -> None:
        p, _ = QFileDialog.getSaveFileName(self, "Save mask", self._last_dir("mask"), PNG_FILTER)
        if p:
            self._remember_dir("mask", p)
            try:
                self.mask.save_png(p if p.lower().endswith(".png") else p + ".png")
            except OSError as e:
                self.show_error(f"Cannot save the mask: {e}")

    # ------------------------------------------------------------------ views
    def set_view(self, view: str) -> None:
        self.canvas.set_view(view)
        if view in self.view_actions:
            self.view_actions[view].setChecked(True)

    def toggle_original(self) -> None:
        self.set_view("original" if self.canvas.view != "original" else "edited")

    # ------------------------------------------------------------------ files: dialogs
    def open_image_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Open image", self._last_dir("image"), IMAGE_FILTER)
        if p:
            self._remember_dir("image", p)
            self.open_image(p)

    def open_trajectory_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Open trajectory", self._last_dir("traj"),
                                           "Trajectories (*.safetensors)")
        if p:
            self._remember_dir("traj", p)
            self.open_trajectory(p)

    def save_trajectory_dialog(self) -> None:
        p, _ = QFileDialog.getSaveFileName(self, "Save trajectory", self._last_dir("traj"),
                                           "Trajectories (*.safetensors)")
        if p:
            self._remember_dir("traj", p)
            self.submit(J.SaveTrajectory(p if p.endswith(".safetensors") else p + ".safetensors"))

    def open_paths(self, paths) -> None:
        """Open files given on the command line or by the desktop: images are inverted,
        ``.json`` files open as sessions, ``.safetensors`` files as direction sets or
        trajectories (by the tensors they hold)."""
        for p in (str(x) for x in paths):
            suffix = Path(p).suffix.lower()
            if not Path(p).is_file():
                self.show_error(f"Cannot open {p}: no such file")
            elif suffix == ".json":
                self.open_session(p)
            elif suffix == ".safetensors":
                keys = _safetensors_keys(p)
                if keys is None:
                    self.show_error(f"Cannot open {p}: not a readable direction or trajectory file "
                                    "(truncated or not safetensors)")
                elif "delta_h" in keys:  # a direction set, even if cut short: its loader explains
                    self.import_directions([p])
                else:  # a trajectory, or a file whose error the loader explains
                    self.open_trajectory(p)
            else:
                self.open_image(p)

    def import_directions(self, paths) -> JobHandle:
        return self.submit(J.ImportDirections(tuple(str(p) for p in paths)))

    def import_directions_dialog(self) -> None:
        ps, _ = QFileDialog.getOpenFileNames(self, "Import directions", self._last_dir("dirs"), DIR_FILTER)
        if ps:
            self._remember_dir("dirs", ps[0])
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
        p, _ = QFileDialog.getSaveFileName(self, "Export directions",
                                           str(Path(self._last_dir("dirs")) / f"{s.name}.safetensors"),
                                           DIR_FILTER)
        if p:
            self._remember_dir("dirs", p)
            self.export_directions(s.set_id, p if p.endswith(".safetensors") else p + ".safetensors")

    def _set_files(self):
        return tuple((s.set_id, s.path) for s in self.library.sets)

    def export_image(self, path: str, original: bool = False) -> Optional[JobHandle]:
        if self.traj_info is None:
            self.show_error("No image to export yet")
            return None
        return self.submit(J.ExportImage(str(path), self.current_edits(), self._set_files(), original))

    def export_image_dialog(self, original: bool = False) -> None:
        p, _ = QFileDialog.getSaveFileName(self, "Export image", self._last_dir("export"), PNG_FILTER)
        if p:
            self._remember_dir("export", p)
            self.export_image(p if p.lower().endswith(".png") else p + ".png", original)

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
        p, _ = QFileDialog.getSaveFileName(self, "Export strip", self._last_dir("export"), PNG_FILTER)
        if p:
            self._remember_dir("export", p)
            self.export_strip(p if p.lower().endswith(".png") else p + ".png")

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
        p, _ = QFileDialog.getSaveFileName(self, "Export grid", self._last_dir("export"), PNG_FILTER)
        if p:
            self._remember_dir("export", p)
            self.export_grid(p if p.lower().endswith(".png") else p + ".png")

    def copy_command_line(self) -> None:
        rec = getattr(self, "last_export", None)
        if not rec:
            self.show_info("Export an image first: the command line is made from its recipe")
            return
        from ..core.recipe import cli_command_line

        try:
            cmd = cli_command_line(rec["recipe"], "out.png")
        except ValueError as e:
            self.show_error(str(e))
            return
        QApplication.clipboard().setText(cmd)
        self.show_info("command line copied")

    # ------------------------------------------------------------------ sessions
    def session_doc(self) -> dict:
        info = self.model_info
        steps, eta = self._sampling_params()
        return {
            "app": "hspace-studio",
            "model": {"source": info.source if info else self.source_panel.model_source(),
                      "h_space": info.h_space if info else self.source_panel.h_space.currentText(),
                      "fingerprint": info.fingerprint if info else None,
                      **({"guide": info.guide, "guide_weight": info.guide_weight} if info and info.guide else {}),
                      **({"timesteps": info.timesteps} if info and info.timesteps else {})},
            "source": dict(self.traj_info.source) if self.traj_info else dict(self._source),
            "controls": {"seed": self.source_panel.seed.value(), "steps": steps, "eta": eta},
            "library": [s.to_json() for s in self.library.sets],
            "selected": list(self.library.selected()) if self.library.selected() else None,
            "view": {"mode": self.canvas.view, "mask_visible": self.canvas.mask_visible,
                     "mask_opacity": self.brush.opacity.value(), "brush_radius": self.brush.size_box.value(),
                     "progressive": self.progressive,
                     "keep_edits_in_mask": self.brush.keep_inside.isChecked(),
                     "free_steps": self.brush.free_steps.value()},
        }

    def save_session(self, path: str, quiet: bool = False) -> JobHandle:
        """Save the session to ``path``; ``quiet``: an autosave (the window keeps its
        session's name; the autosave records that name for a restore after a crash)."""
        doc = self.session_doc()
        if quiet and self.session_path:
            doc["autosave_of"] = str(self.session_path)
        job = J.SaveSession(str(path), doc, self.mask.array.copy(),
                            tuple(s.set_id for s in self.library.sets))

        def done(res: JobResult):
            if res.ok:
                if not quiet:
                    self.session_path = str(path)
                    self.dirty = False
                    self.recent.add("sessions", str(path))
                    self._update_title()
                    self.show_info(f"session saved: {path}")
            elif not res.cancelled:
                self.show_error(f"Saving the session failed: {res.error}")

        return self.submit(job, done)

    def save_session_action(self) -> None:
        if self.session_path:
            self.save_session(self.session_path)
        else:
            self.save_session_dialog()

    def save_session_dialog(self) -> None:
        p, _ = QFileDialog.getSaveFileName(self, "Save session", self._last_dir("session"), SESSION_FILTER)
        if p:
            self._remember_dir("session", p)
            self.save_session(p if p.endswith(".json") else p + ".json")

    def open_session(self, path: str, autosave: bool = False) -> JobHandle:
        self._loading_session = True

        def done(res: JobResult):
            try:
                if res.ok:
                    self._session_loaded(res.value, None if autosave else path)
                    if autosave:  # unsaved changes to the session it was made of, if any
                        of = res.value.doc.get("autosave_of")
                        self.session_path = of if isinstance(of, str) and of else None
                        self.dirty = True
                        self._update_title()
                elif not res.cancelled:
                    self.show_error(f"Cannot open the session: {res.error}")
            finally:
                self._loading_session = False

        return self.submit(J.LoadSession(str(path), self.device), done)

    def open_session_dialog(self) -> None:
        p, _ = QFileDialog.getOpenFileName(self, "Open session", self._last_dir("session"), SESSION_FILTER)
        if p:
            self._remember_dir("session", p)
            self.open_session(p)

    def _session_loaded(self, pl: J.SessionPayload, path: Optional[str]) -> None:
        self._loading_session = True
        doc = pl.doc
        if pl.model is not None:
            self.model_info = pl.model
            self.source_panel.set_model_source(pl.model.source, self.recent.get("models"))
            self.source_panel.set_guidance(pl.model.source, pl.model.guide, pl.model.guide_weight)
            self.source_panel.set_timesteps(pl.model.timesteps)
            self.mask.reset(pl.model.image_size)
        c = doc.get("controls") or {}
        self.source_panel.set_values(seed=c.get("seed"), steps=c.get("steps"), eta=c.get("eta"),
                                     h_space=(doc.get("model") or {}).get("h_space"))
        self.library.replace_all(pl.sets)
        if pl.trajectory is not None:
            self._trajectory_loaded(pl.trajectory)
        else:
            self._source = dict(doc.get("source") or {"kind": "seed"})
        self.mask.restore(pl.mask)
        v = doc.get("view") or {}
        try:
            if v.get("mode") in ("edited", "original", "split"):
                self.set_view(v["mode"])
            if "mask_opacity" in v:
                self.brush.opacity.setValue(int(v["mask_opacity"]))
            if "mask_visible" in v:
                self.brush.show_mask.setChecked(bool(v["mask_visible"]))
            if "free_steps" in v:
                self.brush.free_steps.setValue(int(v["free_steps"]))
            if "keep_edits_in_mask" in v:
                self.brush.keep_inside.setChecked(bool(v["keep_edits_in_mask"]))
            if "brush_radius" in v:
                self.brush.size_box.setValue(float(v["brush_radius"]))
            if "progressive" in v:
                self.act["progressive"].setChecked(bool(v["progressive"]))
        except (TypeError, ValueError):
            pass
        sel = doc.get("selected")
        if sel:
            self.library.select(sel[0], sel[1])
        self._sync_sliders()
        self.session_path = path
        self.dirty = False
        if path:
            self.recent.add("sessions", path)
        self._loading_session = False
        self._update_title()
        self.request_preview()
        for w in pl.warnings:
            self.show_info(w, level="warning")
        self.show_info(f"session opened{': ' + path if path else ''}")

    # -- autosave ------------------------------------------------------------------------
    def _autosave(self) -> None:
        self.autosave.touch()
        if self.dirty and not self._handles and self.model_info is not None:
            self.save_session(str(self.autosave.path), quiet=True)

    def _offer_restore(self) -> None:
        stale = self.autosave.stale()
        if not stale:
            return
        path = stale[0]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))

        def restore():
            self.restore_autosave(path)

        self.show_info(f"hspace-studio did not exit cleanly last time. An autosaved session from "
                       f"{when} is available.", level="warning", action=("Restore", restore))
        self._stale_autosave = path

    def restore_autosave(self, path=None) -> Optional[JobHandle]:
        path = Path(path or getattr(self, "_stale_autosave", ""))
        if not path.is_file():
            return None
        h = self.open_session(str(path), autosave=True)
        done = self._callbacks.get(h.id)

        def then(res):
            if done is not None:
                done(res)
            self.autosave.discard(path)

        self._callbacks[h.id] = then
        return h

    # -- recent --------------------------------------------------------------------------
    def _fill_recent(self) -> None:
        m = self.recent_menu
        m.clear()
        for kind, title, opener in (("sessions", "Sessions", self.open_session),
                                    ("images", "Images", self.open_image),
                                    ("directions", "Direction files", lambda p: self.import_directions([p]))):
            items = self.recent.get(kind)
            if not items:
                continue
            m.addSection(title)
            for p in items:
                a = m.addAction(Path(p).name)
                a.setToolTip(p)
                a.triggered.connect(lambda _c=False, p=p, f=opener, k=kind: self._open_recent(k, p, f))
        if m.isEmpty():
            m.addAction("(none)").setEnabled(False)

    def _open_recent(self, kind, path, opener) -> None:
        if not Path(path).exists():
            self.recent.remove(kind, path)
            self.show_error(f"{path} no longer exists")
            return
        opener(path)

    # ------------------------------------------------------------------ help
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

    # ------------------------------------------------------------------ closing
    def closeEvent(self, e: QCloseEvent) -> None:
        if self._closing:
            e.accept()
            return
        if self.confirm_close and self.dirty and self.library.sets:
            r = QMessageBox.question(self, "hspace-studio", "Save the session before closing?",
                                     QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                                     | QMessageBox.StandardButton.Cancel)
            if r == QMessageBox.StandardButton.Cancel:
                e.ignore()
                return
            if r == QMessageBox.StandardButton.Save:
                path = self.session_path
                if path is None:
                    path, _ = QFileDialog.getSaveFileName(self, "Save session", self._last_dir("session"),
                                                          SESSION_FILTER)
                    if not path:
                        e.ignore()
                        return
                    path = path if path.endswith(".json") else path + ".json"
                h = self.save_session(path)
                deadline = time.monotonic() + 60
                while h.id in self._handles and time.monotonic() < deadline:
                    QApplication.processEvents()
                    time.sleep(0.01)
        self._teardown()
        e.accept()

    def _teardown(self) -> None:
        """Save settings, stop the engine thread, remove the autosave lock (once): on close,
        when the application quits with the window open, or at interpreter exit."""
        if self._torn_down:
            return
        self._torn_down = True
        self._closing = True
        try:
            self._save_settings()
        except RuntimeError:  # the Qt side is already gone
            pass
        self.worker.cancel_all()
        self._stop_engine()
        try:
            self.autosave.finish()
        except RuntimeError:
            pass

    def shutdown(self) -> None:
        """Close without questions (tests, scripts)."""
        self.confirm_close = False
        self.close()


_windows: "weakref.WeakSet[MainWindow]" = weakref.WeakSet()


def _engine_stopper(engine: EngineThread) -> Callable[[], None]:
    """A call that stops ``engine`` and gives the cycle collector back, once. It holds no
    reference to the window, so it can run while the window is being destroyed."""
    state = {"released": False}

    def stop() -> None:
        if engine.shutdown() and not state["released"]:
            state["released"] = True
            main_thread_gc.release()

    return stop


@atexit.register
def _teardown_windows() -> None:
    """A program that ends with windows still open (a script, a notebook) stops their
    engine threads here, before Python destroys them (which would abort the process)."""
    for w in list(_windows):
        try:
            if QApplication.instance() is not None:
                w._teardown()
            else:
                w._stop_engine()
        except RuntimeError:  # the C++ window is gone; the worker module's handler stops it
            pass


MAX_HEADER = 100 * 1024 * 1024


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
