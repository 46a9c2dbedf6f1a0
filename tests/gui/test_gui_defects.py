"""Defects a new user found in the desktop app (one test each; headless, tiny models)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.test_gui_app import TIMEOUT, make_window, run_job, wait_idle  # noqa: E402,F401


def _good_image(path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_error_bar_is_cleared_by_a_later_success(qtbot, win, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("hello")
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    assert not win.messages.isHidden() and "not a readable image" in win.messages.label.text()
    # the good image clears the error: it is about a file the user has moved on from
    assert run_job(qtbot, win, win.open_image(str(_good_image(tmp_path / "good.png")))).ok
    assert win.messages.isHidden()
    # the same after a failure followed by another kind of success (a saved session)
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    assert not win.messages.isHidden()
    assert run_job(qtbot, win, win.save_session(str(tmp_path / "s.json"))).ok
    assert win.messages.isHidden()
    # an error stays up while nothing succeeds, and the user can dismiss it
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    win.request_preview()
    wait_idle(qtbot, win)
    assert not win.messages.isHidden()
    win.messages.close_btn.click()
    assert win.messages.isHidden()


# ----------------------------------------------------------------------------- window size

FIT_SCRIPT = """
import json, sys, tempfile, pathlib
from PySide6.QtCore import QPoint, QRect, QSettings
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from hspace_studio.gui.main_window import MainWindow
d = pathlib.Path(tempfile.mkdtemp())
w = MainWindow(sys.argv[1], settings=QSettings(str(d / "s.ini"), QSettings.Format.IniFormat),
               state_dir=d / "state", autosave_s=0)
w.show()
for _ in range(10):
    app.processEvents()
w.discovery.setCurrentIndex(2)
adv = w.discovery.sup_advice  # the domain's advice, as long as the toy faces' for 'smiling'
adv.setText("smiling: a mean difference of examples flips 9% of faces here; choose the preset 'smiling' "
            "(Fit through the sampler, 80 iterations, and Check the part): 95% flipped in the model card")
adv.setVisible(True)
for _ in range(5):
    app.processEvents()
area = adv
while type(area).__name__ != "QScrollArea":
    area = area.parentWidget()
def glob(wd):
    r = QRect(wd.mapToGlobal(QPoint(0, 0)), wd.size())
    return [r.x(), r.y(), r.width(), r.height()]
a, f = app.primaryScreen().availableGeometry(), w.frameGeometry()
print(json.dumps({"avail": [a.x(), a.y(), a.width(), a.height()], "frame": [f.x(), f.y(), f.width(), f.height()],
                  "status": glob(w.statusBar()), "run": glob(w.discovery.sup_run),
                  "run_visible": w.discovery.sup_run.visibleRegion().boundingRect().height(),
                  "run_height": w.discovery.sup_run.height(),
                  "sup_hscroll": area.horizontalScrollBar().isVisible()}))
w.shutdown()
"""


def _inside(inner, outer):
    x, y, wd, h = inner
    X, Y, W, H = outer
    return X <= x and Y <= y and x + wd <= X + W and y + h <= Y + H


@pytest.mark.parametrize("screen", [(1366, 768), (1600, 1000)])
def test_window_fits_the_screen_with_its_status_bar(tmp_path, tiny_model_dir, screen):
    import json
    import os
    import subprocess
    import sys

    cfg = tmp_path / "screen.json"
    cfg.write_text(json.dumps({"windowFrameMargins": True, "screens": [
        {"name": "S", "x": 0, "y": 0, "width": screen[0], "height": screen[1],
         "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={cfg}", HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", FIT_SCRIPT, str(tiny_model_dir)], env=env,
                       capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["avail"] == [0, 0, *screen]  # the offscreen plugin took the configured screen
    assert _inside(m["frame"], m["avail"]), m
    assert _inside(m["status"], m["avail"]), m  # progress and Cancel live there
    assert _inside(m["run"], m["avail"]) and m["run_visible"] == m["run_height"], m
    assert not m["sup_hscroll"], m  # the supervised form fits the dock's width: nothing cut at its right


def test_caption_wrapping_does_not_move_the_plot(qtbot):
    from hspace_studio.gui.plots import PlotPanel

    p = PlotPanel()
    qtbot.addWidget(p)
    p.resize(300, 400)
    p.show()
    p.caption.setText("short")
    qtbot.wait(20)
    y = p.plot.geometry().top()
    p.caption.setText("a much longer caption that certainly wraps onto a second line at this width")
    qtbot.wait(20)
    assert p.plot.geometry().top() == y


# ----------------------------------------------------------------------------- progress

def test_progress_shows_percentage_step_and_time_left(qtbot, win):
    import time

    from hspace_studio.gui import jobs as J
    from hspace_studio.gui.progress_text import duration

    # a known report: 3 of 10 steps after 30 s -> 30%, step 3 of 10, 70 s left
    win._job_started(10_000, "Jacobian")
    win._job_t0 = time.monotonic() - 30
    win._job_progress(10_000, 3, 10, "jacobian: step 3/10 (12 iterations)")
    text = win.job_progress.text()
    assert "30%" in text and "step 3 of 10" in text, text
    assert "left" in text and win._job_left == pytest.approx(70, abs=2)
    assert "1 min 1" in text or "1 min 09 s" in text, text  # ~70 s
    assert "jacobian: step 3/10" in win.job_label.text() and "30 s" in win.job_label.text()
    win._running = None
    win._update_job_ui()
    assert duration(0.2) == "< 1 s" and duration(42) == "42 s" and duration(185) == "3 min 05 s"
    assert duration(4320) == "1 h 12 min"

    # a real job: the bar reports its steps while it runs
    h = win.submit(J.Sleep(steps=20, seconds_per_step=0.1))
    qtbot.waitUntil(lambda: "step " in win.job_progress.text() and win.job_progress.value() >= 3,
                    timeout=TIMEOUT)
    text = win.job_progress.text()
    assert "of 20" in text and "%" in text and "left" in text, text
    res = run_job(qtbot, win, h)
    assert res.ok


# ----------------------------------------------------------------------------- small ones

def test_restored_autosave_keeps_the_session_name(qtbot, tiny_model_dir, tmp_path):
    import json
    import subprocess
    import sys

    w = make_window(qtbot, tiny_model_dir, tmp_path, name="a")
    named = tmp_path / "portrait.json"
    assert run_job(qtbot, w, w.save_session(str(named))).ok
    assert w.session_path == str(named)
    w.source_panel.seed.setValue(7)  # an unsaved change
    wait_idle(qtbot, w)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = tmp_path / "state"
    auto = state / f"autosave-{dead.pid}.json"
    assert run_job(qtbot, w, w.save_session(str(auto), quiet=True)).ok  # what the autosave timer does
    assert w.session_path == str(named)  # an autosave does not rename the session
    (state / f"lock-{dead.pid}.json").write_text(json.dumps({"pid": dead.pid, "heartbeat": 0,
                                                              "autosave": auto.name}))
    w.shutdown()

    w2 = make_window(qtbot, tiny_model_dir, tmp_path, name="b")
    try:
        qtbot.waitUntil(lambda: "did not exit cleanly" in w2.messages.last, timeout=5000)
        res = run_job(qtbot, w2, w2.restore_autosave(auto))
        assert res.ok, res.error
        assert w2.session_path == str(named)
        assert "portrait.json" in w2.windowTitle() and "untitled" not in w2.windowTitle()
        assert w2.dirty and w2.traj_info.source["seed"] == 7
    finally:
        w2.shutdown()


def test_only_files_that_opened_are_added_to_open_recent(qtbot, win, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("hello")
    assert not run_job(qtbot, win, win.open_image(str(bad))).ok
    assert str(bad) not in win.recent.get("images")
    bad_session = tmp_path / "broken.json"
    bad_session.write_text("{ nope")
    assert not run_job(qtbot, win, win.open_session(str(bad_session))).ok
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    assert not run_job(qtbot, win, win.import_directions([junk])).ok
    assert str(bad_session) not in win.recent.get("sessions")
    assert str(junk) not in win.recent.get("directions")
    good = _good_image(tmp_path / "good.png")
    assert run_job(qtbot, win, win.open_image(str(good))).ok
    assert win.recent.get("images")[0] == str(good)


def _truncated(path, tensors):
    import torch
    from safetensors.torch import save_file

    save_file({k: torch.ones(v) for k, v in tensors.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 64])  # the header survives, the data is cut short
    return path


def test_truncated_direction_file_on_the_command_line_is_called_a_direction_file(qtbot, win, tmp_path):
    dirs = _truncated(tmp_path / "dirs.safetensors", {"delta_h": (2, 10, 4, 4, 4), "timesteps": (10,)})
    n = len(win.messages.errors)
    win.open_paths([str(dirs)])
    qtbot.waitUntil(lambda: len(win.messages.errors) > n, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    msg = win.messages.errors[-1]
    assert "direction" in msg.lower() and "trajectory" not in msg.lower(), msg
    assert "truncated" in msg, msg

    traj = _truncated(tmp_path / "traj.safetensors", {"x_T": (1, 3, 8, 8), "zs": (10, 3, 8, 8)})
    n = len(win.messages.errors)
    win.open_paths([str(traj)])
    qtbot.waitUntil(lambda: len(win.messages.errors) > n, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    assert "trajectory" in win.messages.errors[-1], win.messages.errors[-1]

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3)
    n = len(win.messages.errors)
    win.open_paths([str(junk)])
    qtbot.waitUntil(lambda: len(win.messages.errors) > n, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    assert "direction, trajectory" in win.messages.errors[-1], win.messages.errors[-1]


def test_direction_sets_in_the_library_have_unique_names(qtbot, win, dir_file):  # noqa: F811
    for _ in range(3):
        assert run_job(qtbot, win, win.import_directions([dir_file])).ok
    names = [s.name for s in win.library.sets]
    assert len(set(names)) == 3, names
    first = names[0]
    assert names == [first, f"{first} (2)", f"{first} (3)"]
    # renaming a set to a name another set has keeps the names apart too
    a, b, c = win.library.sets
    win.library.rename(c.set_id, None, a.name)
    assert len({s.name for s in win.library.sets}) == 3
    win.library.rename(a.set_id, None, a.name)  # its own name: unchanged
    assert win.library.sets[0].name == first


def test_directions_are_numbered_from_one_in_library_sliders_and_plot(qtbot, win, tmp_path, tiny_model,
                                                                       reference):  # noqa: F811
    import torch

    from hspace_studio.engine.directions import DirectionSet
    from hspace_studio.gui.labels import shown_label

    K = 3
    ds = DirectionSet(delta_h=torch.randn((K, *reference.hs.shape)) * 0.1, timesteps=reference.timesteps.clone(),
                      fingerprint=tiny_model.fingerprint, h_space="after", method="pca",
                      labels=[f"PC {i}" for i in range(K)], values=[[0.3 / (i + 1)] * reference.hs.shape[0]
                                                                    for i in range(K)])
    p = tmp_path / "pcs.safetensors"
    ds.save(p)
    res = run_job(qtbot, win, win.import_directions([p]))
    assert res.ok, res.error
    s = res.value[0]
    tree = [win.library._item_for(s.set_id, i).text(0) for i in range(K)]
    assert tree == ["PC 1", "PC 2", "PC 3"]
    win.library.select(s.set_id, None)
    xs = list(win.plots.items[0].getData()[0])
    assert xs == [1, 2, 3]  # the plot numbers the same components the same way
    ticks = win.plots.plot.getPlotItem().getAxis("bottom")._tickLevels
    assert ticks and [label for _x, label in ticks[0]] == ["1", "2", "3"]
    win.library.set_active((s.set_id, 0), True)
    wait_idle(qtbot, win)
    assert win.library.title(s, s.directions[0]).startswith("PC 1")
    # what is stored is unchanged: labels and rows as the engine wrote them
    assert [d.label for d in s.directions] == ["PC 0", "PC 1", "PC 2"]
    out = tmp_path / "again.safetensors"
    assert run_job(qtbot, win, win.export_directions(s.set_id, str(out))).ok
    assert DirectionSet.load(out).labels == ["PC 0", "PC 1", "PC 2"]
    # editing a label in the tree without changing it stores nothing new
    item = win.library._item_for(s.set_id, 1)
    item.setText(0, item.text(0))
    qtbot.wait(20)
    assert s.directions[1].label == "PC 1"
    assert shown_label(0, "J 0 (masked)") == "J 1 (masked)"
    assert shown_label(2, "J 2 (contained, step 5)") == "J 3 (contained, step 5)"
    assert shown_label(0, "PC 4") == "PC 4" and shown_label(0, "smiling") == "smiling"


def test_about_names_version_torch_device_and_threads(qtbot, win):
    import importlib.metadata
    import os

    import torch
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    text = win.about_text()
    assert importlib.metadata.version("hspace-studio") in text
    assert f"torch {torch.__version__}" in text
    assert "device: cpu" in text  # the tiny model runs on the CPU here
    assert f"torch threads: {torch.get_num_threads()}" in text
    assert f"CPU cores: {os.cpu_count()}" in text and "engine thread: running" in text
    assert win.model_info.source in text

    # Help > About shows it (closed again by a timer: the box is modal)
    seen = {}

    def close_box():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QMessageBox) and w.isVisible():
                seen["text"] = w.text()
                w.accept()

    QTimer.singleShot(200, close_box)
    win.show_about()
    assert "torch threads" in seen.get("text", "")


def test_slider_keys_move_one_percent_ten_with_page_and_finer_with_shift(qtbot):
    from PySide6.QtCore import Qt

    from hspace_studio.core.session import DirectionState
    from hspace_studio.gui.sliders import DirectionSliderRow

    row = DirectionSliderRow(("s", 0), "PC 1", "pca", DirectionState(index=0, label="PC 1", range=4.0), [900, 500])
    qtbot.addWidget(row)
    for _ in range(3):
        qtbot.keyClick(row.slider, Qt.Key.Key_Right)
    assert row.box.value() == pytest.approx(0.24)  # 1 % of the -4..4 span a press
    qtbot.keyClick(row.slider, Qt.Key.Key_PageUp)
    assert row.box.value() == pytest.approx(1.04)  # 10 % with Page Up
    qtbot.keyClick(row.slider, Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier)
    assert row.box.value() == pytest.approx(1.036)  # the finest step with Shift


def test_added_directions_are_counted_in_good_english(qtbot, win, dir_file, tmp_path):  # noqa: F811
    from hspace_studio.engine import DirectionSet

    one = tmp_path / "one.safetensors"
    DirectionSet.load(dir_file).subset([0]).save(one)
    assert run_job(qtbot, win, win.import_directions([one])).ok
    text = win.statusBar().currentMessage()
    assert "(1 direction," in text, text


def test_preset_none_unticks_the_fit_a_preset_ticked(qtbot, win):
    disc = win.discovery
    assert disc.sup_preset.count() > 1
    disc.sup_preset.setCurrentIndex(1)
    assert disc.sup_optimize.isChecked()
    disc.sup_preset.setCurrentIndex(0)  # "none"
    assert not disc.sup_optimize.isChecked() and not disc.sup_own.isChecked()


def test_disentangling_names_the_directions_as_the_library_shows_them(qtbot, win, dir_file, tmp_path):  # noqa: F811
    from hspace_studio.engine import DirectionSet

    ds = DirectionSet.load(dir_file)
    pcs = tmp_path / "pcs.safetensors"  # the engine's own labels, "pca 0", "pca 1" (shown from one)
    DirectionSet(delta_h=ds.delta_h, timesteps=ds.timesteps, fingerprint=ds.fingerprint, h_space=ds.h_space,
                 method="pca").save(pcs)
    res = run_job(qtbot, win, win.import_directions([pcs]))
    s = res.value[0]
    from hspace_studio.gui.labels import shown_label

    want = [shown_label(d.index, d.label) for d in s.directions[:2]]
    res = run_job(qtbot, win, win.disentangle((s.set_id, 1), [(s.set_id, 0)]))
    assert res.ok, res.error
    made = res.value[0] if isinstance(res.value, list) else res.value
    assert made.directions[0].label == f"{want[1]} ⟂ {want[0]}"


def test_the_copied_command_line_runs_as_pasted_and_writes_beside_the_export(qtbot, win, tmp_path):
    import os
    import shlex
    import subprocess
    from pathlib import Path

    from PIL import Image
    from PySide6.QtWidgets import QApplication

    out = tmp_path / "export.png"
    assert run_job(qtbot, win, win.export_image(str(out))).ok
    win.copy_command_line()
    cmd = QApplication.clipboard().text()
    words = shlex.split(cmd)
    assert Path(words[0]).is_absolute()  # the console script or the interpreter, not a bare name
    again = tmp_path / "export-again.png"
    assert f"--out={again}" in words
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"  # as pasted into a shell where the environment is not active
    r = subprocess.run(words, capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")), np.asarray(Image.open(out).convert("RGB")))


def test_the_copied_command_line_of_a_grid_makes_the_grid_again(qtbot, win, dir_file, tmp_path):  # noqa: F811
    import shlex

    from PIL import Image
    from PySide6.QtWidgets import QApplication

    from hspace_studio.cli import main as cli_main
    from tests.gui.test_gui_app import import_and_activate

    import_and_activate(qtbot, win, dir_file, rows=(0, 1))
    out = tmp_path / "grid.png"
    assert run_job(qtbot, win, win.export_grid(str(out), factors=(-1.0, 0.0, 1.0))).ok
    win.copy_command_line()
    words = shlex.split(QApplication.clipboard().text())
    i = words.index("replay")
    assert words[i + 1] == str(out.resolve())
    assert cli_main(words[i:]) == 0  # the words after the program
    again = tmp_path / "grid-again.png"
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape[0] > grid.shape[1] // 3  # two rows of three
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")), grid)


def test_pca_with_more_components_than_samples_warns(qtbot, win):
    from hspace_studio.gui import jobs as J

    res = run_job(qtbot, win, win.run_discovery(J.DiscoverPCA(samples=3, k=3, steps=10, eta=1.0)))
    assert res.ok, res.error
    assert not win.messages.isHidden() and "3 samples give at most 2 components" in win.messages.label.text()


def test_a_fresh_window_is_not_marked_changed(qtbot, tiny_model_dir, tmp_path):
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    try:
        assert not w.dirty and "*" not in w.windowTitle()
        w.source_panel.seed.setValue(w.source_panel.seed.value() + 1)  # a change of the user's
        qtbot.waitUntil(lambda: w.dirty, timeout=TIMEOUT)
        assert "untitled *" in w.windowTitle()
    finally:
        w.shutdown()


def test_the_seed_box_shows_the_images_seed_after_a_sample_is_cancelled(qtbot, win):
    from hspace_studio.gui import jobs as J

    shown = win.traj_info.source["seed"]
    win.source_panel.set_values(seed=shown + 5)  # what Random does before the sample starts
    h = win.submit(J.Sample(seed=shown + 5, steps=1000, eta=1.0))  # long enough to be stopped
    qtbot.wait(100)
    h.cancel()
    wait_idle(qtbot, win)
    assert win.traj_info.source["seed"] == shown
    assert win.source_panel.seed.value() == shown


def test_a_masked_jacobian_direction_offers_to_keep_the_edit_inside_the_mask(qtbot, win):
    from hspace_studio.gui import jobs as J

    mask = np.zeros((16, 16), dtype=bool)
    mask[4:10, 4:10] = True
    win.mask.set_array(mask)
    assert not win.brush.keep_inside.isChecked()
    res = run_job(qtbot, win, win.run_discovery(J.DiscoverJacobian(k=1, steps=(0,), mask=mask, iterations=3)))
    assert res.ok, res.error
    s = res.value[0]
    win.library.set_active((s.set_id, 0), True)
    assert not win.messages.isHidden() and "whole image" in win.messages.label.text()
    win.messages.action_btn.click()
    assert win.brush.keep_inside.isChecked()


def test_brush_size_keys_work_while_a_spin_box_has_the_focus(qtbot, win):
    from PySide6.QtCore import Qt

    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    box = win.source_panel.steps
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=5000)
    before = win.brush.size_box.value()
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_BracketRight)
    assert win.brush.size_box.value() > before
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_BracketLeft)
    assert win.brush.size_box.value() == pytest.approx(before, rel=0.05)
    assert box.value() == 10  # the spin box took no bracket as input


def test_an_exported_png_reopens_as_its_edit(qtbot, win, dir_file, tiny_model_dir, tmp_path):  # noqa: F811
    from PIL import Image

    from tests.gui.test_gui_app import image_of, import_and_activate

    win.source_panel.seed.setValue(win.source_panel.seed.value() + 3)
    wait_idle(qtbot, win)
    s = import_and_activate(qtbot, win, dir_file, rows=(1,))
    win.slider_rows()[0].slider.setValue(700)
    wait_idle(qtbot, win)
    out = tmp_path / "edit.png"
    assert run_job(qtbot, win, win.export_image(str(out))).ok
    exported = np.asarray(Image.open(out).convert("RGB"))
    w2 = make_window(qtbot, tiny_model_dir, tmp_path, name="w2")
    try:
        w2.open_paths([str(out)])
        qtbot.waitUntil(lambda: len(w2.slider_rows()) == 1, timeout=TIMEOUT)
        wait_idle(qtbot, w2)
        assert w2.traj_info.source["seed"] == win.traj_info.source["seed"]  # its seed, not inverted
        assert w2.slider_rows()[0].scale() == pytest.approx(win.slider_rows()[0].scale())
        assert np.array_equal(image_of(w2), exported)
        assert s.name in w2.slider_rows()[0].title.text()
    finally:
        w2.shutdown()


def test_an_exported_png_reopens_with_its_region_and_its_one_step_vector(qtbot, win, dir_file, tiny_model_dir,  # noqa: F811
                                                                         tmp_path):
    """An edit kept inside a painted mask, with one step's vector applied at every step, reopens
    with the mask, 'keep inside', its free steps and that step: the same pixels."""
    from PIL import Image

    from tests.gui.test_gui_app import image_of, import_and_activate

    s = import_and_activate(qtbot, win, dir_file, rows=(1,))
    h, w = image_of(win).shape[:2]
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, : w // 2] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    assert win.load_mask(str(tmp_path / "left.png"))
    win.brush.free_steps.setValue(2)
    win.brush.keep_inside.setChecked(True)
    row = win.slider_rows()[0]
    t3 = int(win.traj_info.timesteps[3])
    row.at_combo.setCurrentIndex(row.at_combo.findData(t3))
    row.slider.setValue(900)
    wait_idle(qtbot, win)
    out = tmp_path / "region.png"
    assert run_job(qtbot, win, win.export_image(str(out))).ok
    exported = np.asarray(Image.open(out).convert("RGB"))
    w2 = make_window(qtbot, tiny_model_dir, tmp_path, name="w2")
    try:
        w2.open_paths([str(out)])
        qtbot.waitUntil(lambda: len(w2.slider_rows()) == 1, timeout=TIMEOUT)
        wait_idle(qtbot, w2)
        assert w2.brush.keep_inside.isChecked() and w2.brush.free_steps.value() == 2
        assert np.array_equal(w2.mask.array, win.mask.array)
        assert w2.slider_rows()[0].at_timestep() == t3
        assert np.array_equal(image_of(w2), exported)
        assert s.name in w2.slider_rows()[0].title.text()
    finally:
        w2.shutdown()


def test_a_png_made_with_another_model_opens_as_a_photo_when_the_user_declines(qtbot, win, tmp_path):
    import json

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("hspace-recipe", json.dumps({"model": str(tmp_path / "elsewhere"), "h_space": "after",
                                               "source": {"seed": 3, "steps": 10, "eta": 1.0}, "edits": []}))
    png = tmp_path / "other.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(png, pnginfo=info)
    assert win.open_recipe_image(str(png), switch_model=False) is False  # then it is inverted as a photo
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(plain)
    assert win.open_recipe_image(str(plain)) is False  # no recipe


def test_no_time_left_is_shown_once_the_estimate_has_run_out():
    from hspace_studio.gui.progress_text import bar_format, time_left

    # the compile build: stage 1 of 3 took 1 s, stage 2 has run for 20 s
    left = time_left(1, 3, elapsed_at_report=1.0, elapsed_now=21.0)
    assert left is None and "left" not in bar_format(1, 3, left)
    assert time_left(1, 3, elapsed_at_report=10.0, elapsed_now=12.0) == pytest.approx(18.0)


def test_the_toy_segmenter_is_offered_only_on_models_that_make_toy_faces(qtbot, tmp_path):
    """Issue 42, defect 11: a text-to-image model (or a larger-image one) gets no toy-face
    parts; the default model's kind gets them back after a switch."""
    from hspace_studio.engine.domain import active_domain
    from hspace_studio.gui import jobs as J
    from tests.tiny_models import save_pixel_model, save_sd_model

    dom = active_domain()
    assert dom.makes_its_images((64, 64), False, False) and dom.makes_its_images((16, 16), False, False)
    assert not dom.makes_its_images((256, 256), False, False)
    assert not dom.makes_its_images((64, 64), True, True)
    w = make_window(qtbot, save_sd_model(tmp_path / "sd"), tmp_path)
    try:
        b = w.brush
        assert b.part.count() == 0 and not b.fill_btn.isEnabled()
        assert "none for this model" in b.segmenter.itemText(0)
        run_job(qtbot, w, w.submit(J.LoadModel(str(save_pixel_model(tmp_path / "px", "a")), h_space="after")))
        wait_idle(qtbot, w)
        assert b.part.count() > 0 and b.fill_btn.isEnabled() and b.segmenter.itemText(0) == "Segmenter: default"
        assert b.part.findData("mouth") >= 0
    finally:
        w.shutdown()


def test_a_two_phase_job_shows_each_phases_own_time_left(qtbot, win, monkeypatch):
    """Issue 42, defect 5: the second phase's time left is from its own steps (not the whole
    job's time over its steps), and says it is the phase's."""
    import hspace_studio.gui.job_queue as jq

    clock = [100.0]
    monkeypatch.setattr(jq.time, "monotonic", lambda: clock[0])
    win._job_started(99, "fit")
    for i in range(1, 5):  # phase 1: 4 steps of 10 s (an index of samples)
        clock[0] += 10
        win._job_progress(99, i, 4, "index")
    clock[0] += 2
    win._job_progress(99, 1, 10, "fit")  # phase 2: 10 steps of 2 s
    clock[0] += 2
    win._job_progress(99, 2, 10, "fit")
    text = win.job_progress.format()
    # 8 steps of 2 s: 16 s (the whole job's time over 2 steps would say 3 min 4 s)
    assert "phase 2: step 2 of 10" in text and "16 s left in this phase" in text, text
    win._running = None


def test_a_slider_moved_while_a_job_runs_says_the_edit_is_pending(qtbot, win, dir_file):  # noqa: F811
    """Issue 42, defect 4: the canvas says the exact image waits for the running job (and
    that Esc cancels it); the exact image comes when the job ends."""
    from hspace_studio.gui import jobs as J
    from tests.gui.test_gui_app import image_of, import_and_activate

    import_and_activate(qtbot, win, dir_file)
    before = image_of(win)
    h = win.submit(J.Sleep(steps=30, seconds_per_step=0.1))
    qtbot.waitUntil(lambda: win.running_job is not None, timeout=TIMEOUT)
    win.slider_rows()[0].slider.setValue(800)
    assert "the exact image after" in win.canvas.info_text and "Esc" in win.canvas.info_text
    assert win.canvas._edited_interim
    run_job(qtbot, win, h)
    wait_idle(qtbot, win)
    assert not win.canvas._edited_interim and not np.array_equal(image_of(win), before)


@pytest.mark.parametrize("log", [False, True])
def test_the_spectrum_legend_does_not_cover_the_curves(qtbot, log):
    """Issue 42, defect 7: no point of a curve lies under the legend (a small dock)."""
    from PySide6.QtCore import QPointF

    from hspace_studio.core.session import DirectionState, SetState
    from hspace_studio.gui.plots import PlotPanel

    p = PlotPanel()
    qtbot.addWidget(p)
    p.resize(400, 260)
    p.show()
    ts = list(range(900, -1, -100))
    values = [[3.0 - 0.1 * j + 0.05 * i for i in range(len(ts))] for j in range(5)]  # rising to the right
    s = SetState("s", "J", "jacobian", "f", "after", (1,), ts, values=values,
                 directions=[DirectionState(index=j, label=f"J {j}") for j in range(5)])
    p.logy.setChecked(log)
    p.show_set(s)
    qtbot.wait(50)
    vb = p.plot.getPlotItem().getViewBox()
    box = p.legend.sceneBoundingRect()
    assert box.width() > 0
    for item in p.items.values():
        xs, ys = item.getData()
        for x, y in zip(xs, ys):
            scene = vb.mapViewToScene(QPointF(float(x), float(y)))
            assert not box.contains(scene), (x, y)
