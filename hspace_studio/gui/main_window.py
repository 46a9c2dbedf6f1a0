"""The main window: canvas in the middle, panels in docks, the engine on its own thread.

``MainWindow(model)`` takes ``"default"``, a local diffusers folder or a hub id. Key
widgets carry object names (docs/architecture.md, contract): ``canvas``, ``brush``,
``directionLibrary``, ``spectrumPlot``, ``jobProgress`` and one ``directionSlider``
per active direction.

The UI thread never runs torch: every engine call is a job, a preview request or a
strip request handed to :class:`~hspace_studio.gui.worker.EngineWorker`.

This module is the wiring: it builds the widgets and docks, holds the window's state,
connects signals, and keeps settings, messages and closing. What the window does is in
mixins, one module each (``self`` is the window in all of them):

- ``menus.py``: menus, shortcuts, views, Help;
- ``job_queue.py``: submitting jobs, their progress and Cancel, a job's end;
- ``results.py``: a table from job type to the handler of its result;
- ``source_control.py``: model, seed, image and trajectory sources;
- ``preview_control.py``: slider previews, strips and their cache, the edit region;
- ``session_control.py``: sessions, autosave and restore, Open recent;
- ``file_actions.py``: opening, importing and exporting files (dialogs: ``file_dialogs.py``);
- ``discovery_control.py``: discovery jobs, disentangling, filling the mask from a part.
"""
from __future__ import annotations

import atexit
import time
import weakref
from pathlib import Path
from typing import Callable, Dict, List, Optional

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QDockWidget, QLabel, QLineEdit, QMainWindow,
                               QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from ..app.requests import PreviewRequest
from . import jobs as J
from . import main_thread_gc
from .brush import BrushPanel, MaskController
from .canvas import Canvas
from .discovery import DiscoveryPanel
from .discovery_control import DiscoveryControl
from .errors import MessageArea
from .file_actions import EXPORT_SCALES, MAX_HEADER, FileActions, _safetensors_keys  # noqa: F401
from .file_dialogs import (DIR_FILTER, IMAGE_FILTER, PNG_FILTER, SESSION_FILTER,  # noqa: F401
                           ask_path, last_dir, remember_dir)
from .job_queue import JobQueue
from .layout import fit_to_screen, frame_fits, scrolled
from .edit_history import EditHistory
from .library import DirectionLibrary
from .menus import Menus
from .node_preview import NodeImages
from .plots import PlotPanel
from .preview_control import STRIP_SCALES, PreviewControl  # noqa: F401
from .results import ResultRouting
from .session import Autosave, RecentFiles
from .session_control import SessionControl
from .sliders import ActiveSliders
from .source_control import SourceControl
from .source_panel import SourcePanel
from .worker import EngineThread, JobHandle, JobResult

RESOURCES = Path(__file__).resolve().parent.parent.parent / "resources"


def segmenter_parts(folder: Path) -> List[str]:
    import json

    try:
        names = json.loads((folder / "parts.json").read_text(encoding="utf-8"))
        return [str(n) for n in names] if isinstance(names, list) else []
    except (OSError, ValueError, RecursionError):
        return []


class BrushKeysThroughSpinBoxes(QObject):
    """``[`` and ``]`` (brush size) reach their shortcuts while a spin box has the focus: a spin
    box's line edit would otherwise claim every printable key for typing, though it takes no
    brackets."""

    KEYS = (Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in self.KEYS:
            return True  # not accepted: the window's shortcut runs
        return False


RENDER_SHOWN_AFTER_MS = 500  # a render running this long shows its step and Cancel


class MainWindow(Menus, JobQueue, ResultRouting, SourceControl, PreviewControl, SessionControl,
                 FileActions, DiscoveryControl, QMainWindow):
    """The window: widgets, docks, menus, settings, messages and closing; the rest is in the
    mixins, one module each (see the module docstring)."""

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
        self._rendering: Optional[tuple] = None  # (step, steps) of a slow render in flight
        self._render_clock = QTimer(self)  # a render still running after this shows it can be cancelled
        self._render_clock.setSingleShot(True)
        self._render_clock.setInterval(RENDER_SHOWN_AFTER_MS)
        self._render_clock.timeout.connect(self._render_is_slow)
        self._cancelled_render = 0  # request id whose render was cancelled
        self._strip_progress_key = None  # slider row showing its strip's progress
        self._strip_sent_at = 0.0  # when the pending strip was asked for (its note waits a moment)
        self.showing_preview = False  # an approximation is on the canvas, the exact image pending
        self._paint_clock: Dict[str, float] = {}  # "preview"/"exact": time of the slider move, until painted
        self.last_preview_latency: Optional[float] = None  # slider move -> preview painted
        self.last_exact_latency: Optional[float] = None  # slider move -> exact image painted
        self.node_previews_shown = 0
        self.moved_previews_shown = 0  # of them, made from a strip of other edits (see _show_node_preview)
        self._exact_shown: Optional[tuple] = None  # (image, epoch, edits) of the last exact image

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
        self._brush_keys = BrushKeysThroughSpinBoxes(self)
        for box in self.findChildren(QAbstractSpinBox):
            box.installEventFilter(self._brush_keys)
            box.findChild(QLineEdit).installEventFilter(self._brush_keys)
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
        self.setAcceptDrops(True)  # model files and folders, images, sessions, directions (open_paths)

        self.mask = MaskController((64, 64), self)
        self.source_panel = SourcePanel()
        self.source_panel.set_model_source(model, self.recent.get("models"))
        self.source_panel.set_values(seed=seed, steps=steps, eta=eta, h_space=h_space)
        self.brush = BrushPanel(self.mask, self.canvas)
        from ..domains import ensure

        domain = ensure()
        segmenter = domain.default_segmenter  # the domain's segmenter: its part names and groups
        parts = segmenter_parts(Path(segmenter)) if segmenter else []
        if parts:
            self.brush.set_default_parts(parts, domain.part_groups)
        self.brush.segmenterError.connect(self.show_error)
        self.library = DirectionLibrary()
        self.history = EditHistory(self.library, self._restore_library, self)  # undo of library and sliders
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
                         [340, 200, 280], Qt.Orientation.Vertical)
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

    def _connect(self) -> None:
        w = self.worker
        w.jobStarted.connect(self._job_started)
        w.jobProgress.connect(self._job_progress)
        w.jobFinished.connect(self._job_finished)
        w.previewReady.connect(self._preview_ready)
        w.stripReady.connect(self._strip_ready)
        w.stripProgress.connect(self._strip_progress)
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
        lib.changed.connect(lambda: self.history.note())
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
        for key in ("compile", "bf16", "low_memory"):  # checking one asks the engine for it, before the model loads
            if s.value(f"engine/{key}", False) not in (False, "false", "0", 0):
                self.act[key].setChecked(True)

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("brush/radius", self.brush.size_box.value())
        s.setValue("brush/opacity", self.brush.opacity.value())
        s.setValue("view/progressive", self.progressive)
        s.setValue("engine/compile", self.act["compile"].isChecked())
        s.setValue("engine/bf16", self.act["bf16"].isChecked())
        s.setValue("engine/low_memory", self.act["low_memory"].isChecked())
        s.sync()

    def _last_dir(self, kind: str) -> str:
        return last_dir(self.settings, kind)

    def _remember_dir(self, kind: str, path: str) -> None:
        remember_dir(self.settings, kind, path)

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
        # a fresh window's start (its model, empty mask and first image) is no change of the user's
        if getattr(self, "_first_image", True) and self.traj_info is None:
            return
        if not self._loading_session and not self.dirty:
            self.dirty = True
            self._update_title()

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
                    path = ask_path(self, self.settings, "save_session", remember=False)
                    if not path:
                        e.ignore()
                        return
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
