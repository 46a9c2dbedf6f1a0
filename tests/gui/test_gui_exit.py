"""The app exits cleanly however its window ends: a program that builds ``MainWindow`` and
ends without closing it must not abort with "QThread: Destroyed while thread ... is still
running" (exit status 134)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from hspace_studio.gui.main_window import MainWindow  # noqa: E402

SCRIPT = textwrap.dedent("""
    import sys, tempfile, pathlib
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv[:1])
    from hspace_studio.gui.main_window import MainWindow
    d = pathlib.Path(tempfile.mkdtemp())
    w = MainWindow(sys.argv[1], settings=QSettings(str(d / "s.ini"), QSettings.Format.IniFormat),
                   state_dir=d / "state", autosave_s=0)
    w.show()
    {ending}
    print("built", flush=True)
""")


def _run(model, ending):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", SCRIPT.format(ending=ending), str(model)],
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.parametrize("ending", [
    "",  # a script that just ends
    "from PySide6.QtCore import QTimer; QTimer.singleShot(200, app.quit); app.exec()",  # app quits, window open
    "w.shutdown()",  # closed properly: Python then destroys the window and its thread in any order
])
def test_program_that_never_closes_the_window_exits_cleanly(tiny_model_dir, ending):
    r = _run(tiny_model_dir, ending)
    assert "built" in r.stdout, r.stderr
    assert "Destroyed while thread" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr


def test_destroying_the_window_stops_the_engine_thread(qtbot, tiny_model_dir, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(str(tiny_model_dir), settings=settings, state_dir=tmp_path / "state", autosave_s=0)
    thread = w.engine.thread
    assert thread.isRunning()
    w.deleteLater()
    qtbot.waitUntil(lambda: not thread.isRunning(), timeout=30_000)
