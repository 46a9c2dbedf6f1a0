"""`hspace-studio gui --smoke-test OUT.png`: start the app headless-capable, load the
model, sample, find a PCA direction, apply it with a slider, save a screenshot, quit.

Used by the packaged app's smoke test; exits non-zero if any step fails or times out.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def run_smoke(model: str, out_png: str, timeout_s: float = 600.0) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="hspace-smoke-"))
    settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(model, settings=settings, state_dir=tmp / "state", autosave_s=0, seed=7)
    w.resize(1400, 900)
    w.show()
    deadline = time.monotonic() + timeout_s

    def wait(cond, what):
        while not cond():
            app.processEvents()
            time.sleep(0.01)
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")

    try:
        wait(lambda: w.traj_info is not None and w.idle, "the model and the first image")
        w.discovery.pca_samples.setValue(8)
        w.discovery.pca_k.setValue(2)
        w.discovery.pca_solver.setCurrentText("incremental")
        got = {}
        w.jobDone.connect(lambda res: got.setdefault("res", res))
        w.run_discovery(w.discovery.pca_job())
        wait(lambda: "res" in got and w.idle, "PCA")
        if not got["res"].ok:
            raise RuntimeError(f"PCA failed: {got['res'].error}")
        s = got["res"].value[0]
        before = w.canvas.edited_array().copy()
        w.library.set_active((s.set_id, 0), True)
        wait(lambda: w.idle, "activation")
        w.slider_rows()[0].slider.setValue(900)
        wait(lambda: w.idle, "the edit")
        if (w.canvas.edited_array() == before).all():
            raise RuntimeError("the edit did not change the image")
        w.grab().save(out_png)
        print(f"smoke test: edited image rendered, screenshot {out_png}", file=sys.stderr)
        return 0
    except Exception as e:  # noqa: BLE001 - report and fail
        print(f"smoke test failed: {e}", file=sys.stderr)
        return 1
    finally:
        w.shutdown()
