"""Readable, non-blocking messages: a dismissable banner above the canvas plus a history.

Errors never open modal dialogs (a modal box would stop tests and scripts); the
window's ``show_error`` puts the message here and in the status bar and keeps a list
(``MessageArea.history``) that tests can read.
"""
from __future__ import annotations

import sys
import time
import traceback
from typing import List, Optional, Tuple

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

STYLES = {
    "error": "background: #fdecea; border: 1px solid #e6a29a; color: #7a1c12;",
    "warning": "background: #fff6e0; border: 1px solid #e8c97a; color: #6b4e00;",
    "info": "background: #e8f1fb; border: 1px solid #9cbfe6; color: #123f6b;",
}


class MessageArea(QFrame):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("messageArea")
        self.history: List[Tuple[float, str, str]] = []  # (time, level, text)
        self.level, self.key = "", ""  # of the message shown last
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_btn = QToolButton()
        self.action_btn.hide()
        self._action = None
        self.action_btn.clicked.connect(self._run_action)
        self.close_btn = QToolButton()
        self.close_btn.setText("×")
        self.close_btn.setAutoRaise(True)
        self.close_btn.clicked.connect(self.hide)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.action_btn)
        lay.addWidget(self.close_btn)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.hide()

    def show_message(self, text: str, level: str = "error", timeout_s: float = 0,
                     action=None, key: str = "") -> None:
        """Show ``text``; ``action`` = (button text, callable) adds a button (e.g. Restore);
        ``key`` names where an error came from, for :meth:`clear_error`."""
        self.history.append((time.time(), level, text))
        self.level, self.key = level, key
        self._action = action[1] if action else None
        self.action_btn.setText(action[0] if action else "")
        self.action_btn.setVisible(bool(action))
        del self.history[:-200]
        self.setStyleSheet(f"QFrame#messageArea {{{STYLES.get(level, STYLES['info'])}}}")
        self.label.setText(text)
        self.show()
        if timeout_s > 0:
            self._timer.start(int(timeout_s * 1000))
        else:
            self._timer.stop()

    def clear_error(self, key: Optional[str] = None) -> bool:
        """Hide the banner if it shows an error (of ``key``, when given): a later success
        makes it stale. Warnings and offers (Restore) stay. Returns whether it hid it."""
        if self.isHidden() or self.level != "error" or (key is not None and self.key != key):
            return False
        self._timer.stop()
        self.hide()
        return True

    def _run_action(self) -> None:
        fn, self._action = self._action, None
        self.hide()
        if fn is not None:
            fn()

    @property
    def errors(self) -> List[str]:
        return [t for _, lv, t in self.history if lv == "error"]

    @property
    def last(self) -> str:
        return self.history[-1][2] if self.history else ""


def install_excepthook(window) -> None:
    """Show exceptions that escape Qt slots in the window instead of losing them."""
    previous = sys.excepthook

    def hook(etype, value, tb):
        traceback.print_exception(etype, value, tb, file=sys.stderr)
        try:
            msg = str(value).splitlines()[0] if str(value) else ""
            window.show_error(f"Unexpected {etype.__name__}: {msg}")
        except Exception:  # noqa: BLE001
            previous(etype, value, tb)

    sys.excepthook = hook
