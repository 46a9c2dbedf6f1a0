"""Application entry point: a QApplication with the main window."""
from __future__ import annotations

import sys


def run(model: str = "default") -> int:
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("hspace-studio")
    app.setOrganizationName("hspace-studio")
    win = MainWindow(model=model)
    win.show()
    return app.exec()
