"""Layout helpers that keep the window usable on small screens (1366x768 laptops).

- :func:`scrolled`: a panel in a scroll area, so a tall panel scrolls instead of making
  the window (and its status bar with progress and Cancel) taller than the screen.
- :func:`fit_to_screen`: the window's initial geometry, clamped to the screen's
  available geometry (without task bars and docks) and centred on it.
- :class:`LinesLabel`: a word-wrapped label that keeps the same height whatever its
  text, so the rows around it do not jump when the text wraps onto another line.
"""
from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QWidget

# room left for the window frame (title bar, borders) the window system adds around it
FRAME_ALLOWANCE = QSize(16, 48)


def scrolled(widget: QWidget, name: str = "") -> QScrollArea:
    area = QScrollArea()
    area.setObjectName(name or f"{widget.objectName() or 'panel'}Scroll")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setWidget(widget)
    return area


def available_geometry(window: QWidget) -> QRect:
    screen = window.screen()
    if screen is None:
        from PySide6.QtGui import QGuiApplication

        screen = QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, 1366, 768)


def fit_to_screen(window: QWidget, preferred: QSize) -> QRect:
    """Give ``window`` the ``preferred`` size, or less where the screen is smaller (minus
    the frame), centred on the screen's available geometry; returns the new geometry."""
    avail = available_geometry(window)
    size = preferred.boundedTo(avail.size() - FRAME_ALLOWANCE)
    size = size.expandedTo(window.minimumSizeHint().boundedTo(size))
    rect = QRect(0, 0, size.width(), size.height())
    rect.moveCenter(avail.center())
    rect.moveTop(max(avail.top() + FRAME_ALLOWANCE.height() - 8, rect.top()))
    window.setGeometry(rect)
    return rect


def frame_fits(window: QWidget) -> bool:
    return available_geometry(window).contains(window.frameGeometry())


class LinesLabel(QLabel):
    """A word-wrapped label of a fixed height of ``lines`` lines: the rows around it do
    not move when its text wraps onto another line. Its tooltip holds the full text, for
    text longer than that."""

    def __init__(self, lines: int = 2, parent=None) -> None:
        super().__init__(parent)
        self.lines = lines
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._fix_height()

    def _fix_height(self) -> None:
        m = self.contentsMargins()
        self.setFixedHeight(self.fontMetrics().lineSpacing() * self.lines + m.top() + m.bottom() + 2)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text)

    def changeEvent(self, e) -> None:  # noqa: N802
        super().changeEvent(e)
        if e.type() in (e.Type.FontChange, e.Type.StyleChange):
            self._fix_height()
