"""Application entry point: a QApplication with the main window."""
from __future__ import annotations

import signal
import sys


def run(model: str = "default", files=()) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("hspace-studio")
    app.setOrganizationName("hspace-studio")

    from .errors import install_excepthook
    from .main_window import MainWindow

    win = MainWindow(model=model, confirm_close=True)
    install_excepthook(win)
    win.show()
    if files:
        QTimer.singleShot(0, lambda: win.open_paths(list(files)))

    # Ctrl+C / SIGTERM close the window cleanly (settings saved, no crash marker left);
    # a periodic no-op timer lets the Python signal handler run inside the Qt loop.
    def stop(*_a):
        win.shutdown()
        app.quit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread, or not supported
            pass
    tick = QTimer()
    tick.timeout.connect(lambda: None)
    tick.start(250)
    return app.exec()
