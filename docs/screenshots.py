"""Screenshots of the desktop app's main states, written into docs/.

    OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen python docs/screenshots.py [--model default]

Uses the embedded default model when it exists (else a tiny untrained model, which
makes noise images but shows the layout). States: a sampled image, a painted mask,
the library with active sliders and the thumbnail strip (side-by-side view), and the
spectrum plots (Jacobian singular values, PCA explained variance).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: the embedded model if present")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pca-samples", type=int, default=48)
    ap.add_argument("--out", default=str(DOCS))
    args = ap.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QPointF, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from hspace_studio.engine.model import DEFAULT_MODEL_DIR
    from hspace_studio.gui import jobs as J
    from hspace_studio.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="hspace-shots-"))
    model = args.model
    if model is None:
        if (DEFAULT_MODEL_DIR / "config.json").is_file() or (DEFAULT_MODEL_DIR / "unet").is_dir():
            model = "default"
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from tests.tiny_models import save_pixel_model

            model = str(save_pixel_model(tmp / "tiny", "a"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def wait(cond, timeout=900.0):
        end = time.perf_counter() + timeout
        loop = QEventLoop()
        t = QTimer()
        t.timeout.connect(lambda: (cond() or time.perf_counter() > end) and loop.quit())
        t.start(20)
        if not cond():
            loop.exec()
        t.stop()
        for _ in range(5):
            app.processEvents()
        if not cond():
            raise TimeoutError("timed out")

    def job(h):
        done = {}
        win.jobDone.connect(lambda r: r.id == h.id and done.setdefault("r", r))
        wait(lambda: "r" in done)
        wait(lambda: win.idle)
        r = done["r"]
        if not r.ok:
            raise RuntimeError(f"{J.describe(r.job)}: {r.error}")
        return r.value

    def shot(name):
        wait(lambda: win.idle)
        app.processEvents()
        p = out / name
        win.grab().save(str(p))
        print(f"wrote {p}", flush=True)

    settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(model, settings=settings, state_dir=tmp / "state", autosave_s=0, seed=args.seed)
    win.resize(1600, 1000)
    win.show()
    wait(lambda: win.traj_info is not None and win.idle)
    win.canvas.fit()
    shot("gui-sampled.png")

    # mask: the eyes from the segmenter (where there is one) plus a brush stroke
    c = win.canvas
    h = win.fill_part("eyes", "add")
    if h is not None:
        done = {}
        win.jobDone.connect(lambda r: r.id == h.id and done.setdefault("r", r))
        wait(lambda: "r" in done)
    H, W = win.mask.doc.shape
    win.brush.size_box.setValue(max(1.0, W / 32))
    win.mask.begin_stroke(QPointF(W * 0.35, H * 0.78), False)
    for i in range(1, 11):
        win.mask.move_stroke(QPointF(W * (0.35 + 0.03 * i), H * (0.78 + 0.004 * i)))
    win.mask.end_stroke()
    c._cursor = c.image_to_widget(QPointF(W * 0.7, H * 0.3))
    c.update()
    shot("gui-mask.png")
    c._cursor = None

    # library: PCA (global directions) and a masked Jacobian on this image
    win.discovery.pca_samples.setValue(args.pca_samples)
    win.discovery.pca_k.setValue(6)
    win.discovery.pca_solver.setCurrentText("incremental")
    pca = job(win.run_discovery(win.discovery.pca_job()))[0]
    mask = win.mask.array.copy() if win.mask.array.any() else None
    jac = job(win.run_discovery(J.DiscoverJacobian(k=3, steps=(0, 3, 6), mask=mask, iterations=20)))[0]
    for idx, scale in ((0, 4.0), (1, -3.5)):
        win.library.set_active((pca.set_id, idx), True)
        win.sliders.row((pca.set_id, idx)).set_scale(scale)
    win.library.set_active((jac.set_id, 0), True)
    row = win.sliders.row((jac.set_id, 0))
    row.at_combo.setCurrentIndex(1)
    row.set_scale(row.range())
    win.library.select(pca.set_id, 1)
    win.set_view("split")
    win.canvas.fit()
    wait(lambda: win.idle and len(win.library.strip.images) == 5)
    shot("gui-library.png")

    win.library.select(jac.set_id, 0)
    win.set_view("edited")
    wait(lambda: win.idle and len(win.library.strip.images) == 5)
    shot("gui-plots-jacobian.png")
    win.library.select(pca.set_id, 0)
    wait(lambda: win.idle)
    shot("gui-plots-pca.png")
    win.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
