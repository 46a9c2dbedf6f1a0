"""The desktop app, headless (pytest-qt, offscreen), on tiny models.

Covers: painting and undo, slider -> canvas, burst coalescing with an exact final image,
discovery into library and plot, Cancel within one step, export whose recipe re-creates
the image through the CLI, session round trip, model/steps changes, bad files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QSettings, Qt

from hspace_studio.engine.directions import DirectionSet
from hspace_studio.engine.sampler import EditSpec, edit

pytest.importorskip("pytestqt")

from hspace_studio.gui import jobs as J  # noqa: E402
from hspace_studio.gui.main_window import MainWindow  # noqa: E402

SEED = 3
TIMEOUT = 60_000


def wait_idle(qtbot, w, timeout=TIMEOUT):
    qtbot.waitUntil(lambda: w.idle, timeout=timeout)


def run_job(qtbot, w, handle, timeout=TIMEOUT):
    """Wait for a submitted job and return its JobResult."""
    got = {}

    def seen(res):
        if res.id == handle.id:
            got["res"] = res

    w.jobDone.connect(seen)
    try:
        qtbot.waitUntil(lambda: "res" in got, timeout=timeout)
    finally:
        w.jobDone.disconnect(seen)
    wait_idle(qtbot, w, timeout)
    return got["res"]


def make_window(qtbot, model_dir, tmp_path, name="w", **kw):
    settings = QSettings(str(tmp_path / f"{name}.ini"), QSettings.Format.IniFormat)
    w = MainWindow(str(model_dir), settings=settings, state_dir=tmp_path / "state",
                   autosave_s=0, seed=SEED, **kw)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitUntil(lambda: w.traj_info is not None, timeout=TIMEOUT)
    wait_idle(qtbot, w)
    return w


def import_and_activate(qtbot, w, path, rows=(0,)):
    res = run_job(qtbot, w, w.import_directions([path]))
    assert res.ok, res.error
    s = res.value[0]
    for r in rows:
        w.library.set_active((s.set_id, r), True)
    wait_idle(qtbot, w)
    return s


def export_and_replay(qtbot, w, folder, name="export.png"):
    """Export the window's image, replay its recipe through the CLI and check that the CLI
    writes the same pixels; returns the recipe."""
    from PIL import Image

    from hspace_studio.cli import main as cli_main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    out, again = folder / name, folder / f"again-{name}"
    res = run_job(qtbot, w, w.export_image(str(out)))
    assert res.ok, res.error
    recipe = read_recipe(out)
    assert cli_main(recipe_to_cli_args(recipe, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")), np.asarray(Image.open(out).convert("RGB")))
    return recipe


def image_of(w):
    return w.canvas.edited_array()


def to_u8(x0):
    """An x_0 as the canvas shows it: HxWx3 uint8."""
    return ((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def direct_edit(model, traj, ds_path, index, scale, window=None):
    ds = DirectionSet.load(ds_path).for_timesteps(traj.timesteps)
    return to_u8(edit(model, traj, [EditSpec(ds.steps_delta(index), scale, window)]))


# ----------------------------------------------------------------------------- tests

def test_window_contract(win):
    from PySide6.QtWidgets import QProgressBar, QWidget

    for name in ("canvas", "brush", "directionLibrary", "spectrumPlot", "jobProgress"):
        assert win.findChild(QWidget, name) is not None, name
    assert isinstance(win.findChild(QProgressBar, "jobProgress"), QProgressBar)
    assert win.traj_info.source == {"kind": "seed", "seed": SEED, "steps": 10, "eta": 1.0}
    assert image_of(win).shape == (16, 16, 3)


def test_ui_modules_do_not_import_torch():
    code = ("import sys; import hspace_studio.gui.main_window, hspace_studio.gui.worker; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_stroke_paints_mask_and_one_undo_removes_it(qtbot, win):
    c = win.canvas
    win.brush.size_box.setValue(1.5)
    a = c.image_to_widget(QPoint(2, 2).toPointF()).toPoint()
    b = c.image_to_widget(QPoint(12, 10).toPointF()).toPoint()
    # the brush starts off: a left drag pans and paints nothing; B turns it on
    assert not win.brush.enabled.isChecked()
    qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(c, b)
    qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=b)
    assert not win.mask.array.any() and win.mask.undo_stack.count() == 0
    c.fit()  # back to the whole image after the pan
    win.activateWindow()
    qtbot.keyClick(win, Qt.Key.Key_B)
    assert win.brush.enabled.isChecked()
    a = c.image_to_widget(QPoint(2, 2).toPointF()).toPoint()
    b = c.image_to_widget(QPoint(12, 10).toPointF()).toPoint()
    qtbot.mousePress(c, Qt.MouseButton.LeftButton, pos=a)
    for i in range(1, 9):
        qtbot.mouseMove(c, a + (b - a) * i / 8)
    qtbot.mouseRelease(c, Qt.MouseButton.LeftButton, pos=b)
    painted = win.mask.array.copy()
    assert painted.sum() > 10
    assert painted[2, 2] and painted[10, 12]
    assert win.mask.undo_stack.count() == 1
    # a second stroke erases with the right button
    qtbot.mousePress(c, Qt.MouseButton.RightButton, pos=a)
    qtbot.mouseRelease(c, Qt.MouseButton.RightButton, pos=a)
    assert win.mask.undo_stack.count() == 2
    assert not win.mask.array[2, 2]
    win.act["undo"].trigger()
    assert np.array_equal(win.mask.array, painted)
    win.act["undo"].trigger()  # Ctrl+Z again: the first stroke goes
    assert not win.mask.array.any()
    win.act["redo"].trigger()
    assert np.array_equal(win.mask.array, painted)
    assert win.act["undo"].shortcut().toString() == "Ctrl+Z"
    assert "Ctrl+Shift+Z" in [s.toString() for s in win.act["redo"].shortcuts()]


def test_slider_changes_canvas(qtbot, win, dir_file):
    before = image_of(win)
    import_and_activate(qtbot, win, dir_file)
    rows = win.slider_rows()
    assert len(rows) == 1 and rows[0].slider.objectName() == "directionSlider"
    rows[0].slider.setValue(800)
    wait_idle(qtbot, win)
    after = image_of(win)
    assert rows[0].scale() != 0
    assert not np.array_equal(before, after)
    assert "preview" in win.preview_label.text()


def test_burst_is_coalesced_and_final_image_is_exact(qtbot, win, dir_file, tiny_model, reference):
    from PySide6.QtWidgets import QApplication

    import_and_activate(qtbot, win, dir_file)
    row = win.slider_rows()[0]
    wk = win.worker
    started, completed = wk.renders_started, wk.renders_completed
    for v in range(1, 51):
        row.slider.setValue(v * 17)
        QApplication.processEvents()
    wait_idle(qtbot, win)
    n_started = wk.renders_started - started
    n_done = wk.renders_completed - completed
    # only a few renders run to the end; the others were abandoned after at most one step
    assert n_done <= 3, (n_started, n_done)
    assert n_started <= 25, (n_started, n_done)
    assert wk.renders_superseded >= n_started - n_done
    expected = direct_edit(tiny_model, reference, dir_file, 0, row.scale())
    assert row.scale() == pytest.approx(50 * 17 * row.range() / 1000, abs=1e-3)
    assert np.array_equal(image_of(win), expected)


def test_window_and_jacobian_discovery_update_plot(qtbot, win):
    from hspace_studio.gui.plots import PlotPanel

    job = J.DiscoverJacobian(k=2, steps=(0, 5), iterations=15)
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    s = res.value[0]
    assert s.method == "jacobian" and s.count == 2
    assert win.library.find_set(s.set_id) is s
    assert isinstance(win.plots, PlotPanel)
    assert win.plots.set_state is s and len(win.plots.items) == 2
    assert win.plots.plot.objectName() == "spectrumPlot"
    # clicking a curve selects its direction
    win.plots.directionClicked.emit((s.set_id, 1))
    assert win.library.selected() == (s.set_id, 1)
    # masked Jacobian: an empty mask is refused with a message, a painted one works
    assert win.run_discovery(J.DiscoverJacobian(k=1, steps=(0,), mask=np.zeros((16, 16), bool))) is None
    assert "mask is empty" in win.messages.last
    m = np.zeros((16, 16), bool)
    m[4:10, 4:10] = True
    res = run_job(qtbot, win, win.run_discovery(J.DiscoverJacobian(k=1, steps=(0,), mask=m, iterations=10)))
    assert res.ok, res.error
    # contained directions from the panel: need the mask; zero except at their step
    d = win.discovery
    d.jac_k.setValue(1)
    d.jac_iter.setValue(8)
    d.jac_contained.setChecked(True)
    d.jac_contained_step.setValue(6)
    d.jac_mask.setChecked(False)
    with pytest.raises(ValueError, match="needs 'Use the painted mask'"):
        d.make_jacobian_job()
    d.jac_mask.setChecked(True)
    win.mask.set_array(m)
    job = d.make_jacobian_job()
    assert job.contained == 6 and job.steps is None
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    cs = res.value[0]
    assert "contained" in cs.name
    delta = win.worker.state.sets[cs.set_id].delta_h
    assert torch.count_nonzero(delta[:, :6]) == 0 and torch.count_nonzero(delta[:, 6]) > 0
    d.jac_contained_step.setValue(50)
    with pytest.raises(ValueError, match="outside"):
        d.make_jacobian_job()


def test_pca_and_supervised_discovery(qtbot, win, tmp_path):
    from PIL import Image

    from hspace_studio.toyfaces.nets import ToyFaceClassifier, save_classifier

    win.discovery.pca_samples.setValue(6)
    win.discovery.pca_k.setValue(3)
    win.discovery.pca_solver.setCurrentText("incremental")  # exact for N <= kept; fast
    res = run_job(qtbot, win, win.run_discovery(win.discovery.pca_job()))
    assert res.ok, res.error
    s = res.value[0]
    assert s.method == "pca" and s.count == 3 and s.directions[0].range == 4.0
    assert win.plots.set_state is s and win.plots.data_items()  # bars + cumulative curve
    win.plots.mode.setCurrentIndex(1)  # per timestep: one curve per component
    assert len(win.plots.items) == 3
    # supervised from a (tiny, untrained) classifier folder
    torch.manual_seed(0)
    clf = tmp_path / "clf"
    save_classifier(clf, ToyFaceClassifier(2, width=4, feature_dim=8), ["smiling", "eyeglasses"])
    win.discovery.sup_classifier.setText(str(clf))
    win.discovery._reload_attributes()
    assert win.discovery.sup_attr.currentText() == "smiling"
    win.discovery.sup_index.setValue(6)
    win.discovery.sup_examples.setValue(2)
    res = run_job(qtbot, win, win.run_discovery(win.discovery.supervised_job()))
    assert res.ok, res.error
    assert res.value[0].method == "supervised" and res.value[0].values is not None
    assert list((win.autosave.dir / "indexes").glob("hspace-index-*.json"))
    # fitted through the sampler: the index controls give way to iterations and samples
    win.discovery.sup_optimize.setChecked(True)
    assert not win.discovery.sup_index.isEnabled() and win.discovery.sup_iters.isEnabled()
    win.discovery.sup_iters.setValue(2)
    win.discovery.sup_train.setValue(3)
    job = win.discovery.supervised_job()
    assert job.optimize == 2 and job.train_samples == 3
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    assert res.value[0].name == "smiling (optimised on 3)"
    assert res.value[0].method == "supervised" and win.library.ordered_sets()[-1] is res.value[0]
    # ... only where the mask is painted: refused without a mask, zero at h's other positions
    win.discovery.sup_region.setChecked(True)
    win.mask.clear()
    with pytest.raises(ValueError, match="needs a painted mask"):
        win.discovery.supervised_job()
    m = np.zeros(win.mask.array.shape, bool)
    m[0, 0] = True  # the top left corner: h's top left position only
    win.mask.set_array(m)
    job = win.discovery.supervised_job()
    assert job.region is not None and job.region.sum() == 1
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    assert res.value[0].name == "smiling (optimised on 3, in the mask)"
    delta = win.worker.state.sets[res.value[0].set_id].delta_h.clone()
    assert torch.count_nonzero(delta[..., 0, 0]) > 0
    delta[..., 0, 0] = 0
    assert torch.count_nonzero(delta) == 0
    win.discovery.sup_region.setChecked(False)
    # ... for edits kept inside the mask: needs the edit region in force, records it
    win.discovery.sup_keep_in.setChecked(True)
    job = win.discovery.supervised_job()
    assert job.keep_in and job.region is None
    res = run_job(qtbot, win, win.run_discovery(job))
    assert not res.ok and "Keep edits inside the mask" in res.error
    win.brush.keep_inside.setChecked(True)
    win.brush.free_steps.setValue(0)
    wait_idle(qtbot, win)
    res = run_job(qtbot, win, win.run_discovery(win.discovery.supervised_job()))
    assert res.ok, res.error
    assert res.value[0].name == "smiling (optimised on 3, for edits kept in the mask)"
    kept = win.worker.state.sets[res.value[0].set_id].params["kept_in"]
    assert kept["free_steps"] == 0 and kept["pixels"] >= 1
    # ... for edits kept in each face's own part: not with the mask's; recorded with its growth
    win.discovery.sup_own.setChecked(True)
    with pytest.raises(ValueError, match="tick one"):
        win.discovery.supervised_job()
    win.brush.keep_inside.setChecked(False)
    win.discovery.sup_keep_in.setChecked(False)
    win.discovery.sup_own_part.setCurrentText("eyes")
    win.discovery.sup_own_grow.setValue(2)
    job = win.discovery.supervised_job()
    assert job.keep_in_part == ("left_eye", "right_eye") and job.keep_in_grow == 2 and not job.keep_in
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    assert res.value[0].name == "smiling (optimised on 3, for edits kept in each face's left_eye+right_eye (+2 px))"
    kept = win.worker.state.sets[res.value[0].set_id].params["kept_in"]
    assert kept == {"per_sample": True, "free_steps": 1, "parts": ["left_eye", "right_eye"], "grow": 2}
    win.discovery.sup_own.setChecked(False)
    # ... with the segmenter's check of the part: recorded; refused for an attribute without one
    win.discovery.sup_part_check.setChecked(True)
    job = win.discovery.supervised_job()
    assert dict(job.terms)["part-check"] > 0
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    assert res.value[0].name == "smiling (optimised on 3, part-check)"
    assert win.worker.state.sets[res.value[0].set_id].params["part_term"]["weight"] == dict(job.terms)["part-check"]
    import dataclasses

    res = run_job(qtbot, win, win.run_discovery(dataclasses.replace(job, attribute="bald")))
    assert not res.ok and "checks the parts of" in res.error
    win.discovery.sup_part_check.setChecked(False)
    # ... a preset of the domain, the toy faces' recolouring of the hair: choosing it sets the
    # panel's options (a hair colour, every step, kept in each face's own hair +1 px) and adds
    # the pull to the hair's colour, the hold outside the hair, the other hair colours freed and
    # bald faces left out; it is for hair colours only. All recorded
    d = win.discovery
    assert [d.sup_preset.itemText(i) for i in range(d.sup_preset.count())] == \
        ["none", "smiling", "eyeglasses", "mouth-open", "hair-colour"]
    win.discovery.sup_classifier.setText("")  # the shipped classifier, which reads hair colours
    win.discovery._reload_attributes()
    win.discovery.sup_attr.setCurrentText("blond_hair")
    d.sup_preset.setCurrentText("hair-colour")
    assert d.sup_optimize.isChecked() and d.sup_iters.value() == 100 and d.sup_every_step.isChecked()
    assert d.sup_own.isChecked() and d.sup_own_part.currentText() == "hair" and d.sup_own_grow.value() == 1
    assert d.sup_part_check.isChecked() and "recolour the hair" in d.sup_preset_info.text()
    # the options it set can be changed: a short fit at the default window, in the whole image
    d.sup_iters.setValue(2)
    d.sup_every_step.setChecked(False)
    d.sup_own.setChecked(False)
    d.sup_part_check.setChecked(False)
    win.discovery.sup_attr.setCurrentText("smiling")
    with pytest.raises(ValueError, match="is for black_hair, blond_hair, red_hair, grey_hair, not 'smiling'"):
        win.discovery.supervised_job()
    win.discovery.sup_attr.setCurrentText("blond_hair")
    job = win.discovery.supervised_job()
    terms = dict(job.terms)
    assert terms["hair-colour"] > 0 and terms["outside-hair"] > 0 and job.skip == ("bald",)
    assert terms["part-check"] == 0 and job.optimize == 2 and not job.keep_in_part and not job.every_step
    assert sorted(job.free) == ["black_hair", "grey_hair", "red_hair"]
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    assert res.value[0].name == "blond_hair (optimised on 3, hair-colour, outside-hair, bald left out)"
    params = win.worker.state.sets[res.value[0].set_id].params
    assert params["part_term"] == {"name": f"hair pulled to its palette colour x{terms['hair-colour']:g} + pixels "
                                           f"outside the hair held x{terms['outside-hair']:g}", "weight": 1.0}
    assert params["skip"] == ["bald"] and sorted(params["free"]) == ["black_hair", "grey_hair", "red_hair"]
    assert job.preset == "hair-colour" and params["preset"] == {"name": "hair-colour"}
    d.sup_preset.setCurrentText("none")  # back to none: the fit the preset ticked is off again
    assert not d.sup_optimize.isChecked()
    job = win.discovery.supervised_job()
    assert dict(job.terms) == {"part-check": 0.0} and job.free == () and job.skip == () and job.preset is None
    assert not job.optimize
    d.sup_optimize.setChecked(True)  # a fit without a preset
    win.discovery.sup_classifier.setText(str(clf))
    win.discovery._reload_attributes()
    win.discovery.sup_attr.setCurrentText("smiling")
    # ... at every step: the fitted change reaches the first steps, which the default window leaves
    win.discovery.sup_every_step.setChecked(True)
    job = win.discovery.supervised_job()
    assert job.every_step
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    assert res.value[0].name == "smiling (optimised on 3, every step)"
    fitted = win.worker.state.sets[res.value[0].set_id]
    assert fitted.params["window"] == [999, 0]
    assert torch.count_nonzero(fitted.delta_h[:, 0]) > 0  # step 0 (t = 999) changed
    default = win.worker.state.sets[win.library.ordered_sets()[-2].set_id]
    assert default.params["window"] == [699, 0] and torch.count_nonzero(default.delta_h[:, 0]) == 0
    win.discovery.sup_every_step.setChecked(False)
    win.discovery.sup_optimize.setChecked(False)
    assert not win.discovery.sup_region.isEnabled() and not win.discovery.sup_keep_in.isEnabled()
    assert not win.discovery.sup_part_check.isEnabled() and not win.discovery.sup_own.isEnabled()
    assert win.discovery.sup_preset.isEnabled()  # choosing a preset ticks the fit ...
    win.discovery.sup_preset.setCurrentText("smiling")
    assert win.discovery.sup_optimize.isChecked() and win.discovery.sup_iters.value() == 80
    win.discovery.sup_optimize.setChecked(False)  # ... and unticking it leaves the preset
    assert win.discovery.sup_preset.currentText() == "none"
    assert not win.discovery.sup_every_step.isEnabled()
    # supervised from two folders of labelled images
    for name, v in (("pos", 200), ("neg", 50)):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((16, 16, 3), v + 10 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    win.discovery.sup_by_folders.setChecked(True)
    win.discovery.sup_pos.setText(str(tmp_path / "pos"))
    win.discovery.sup_neg.setText(str(tmp_path / "neg"))
    res = run_job(qtbot, win, win.run_discovery(win.discovery.supervised_job()))
    assert res.ok, res.error
    assert res.value[0].name == "pos vs neg"
    assert [g.method for g in win.library.ordered_sets()] == ["pca"] + ["supervised"] * 9


def test_cancel_stops_within_one_step(qtbot, win):
    h = win.submit(J.Sample(seed=11, steps=400, eta=1.0))
    qtbot.waitUntil(lambda: win.running_job == h.id and win.job_progress.value() >= 2, timeout=TIMEOUT)
    assert win.cancel_button.isVisible() and win.job_progress.isVisible()
    win.cancel_button.click()
    res = run_job(qtbot, win, h)
    assert res.cancelled
    assert res.steps_after_cancel <= 1
    assert win.traj_info.source["seed"] == SEED  # the image is unchanged
    assert not win.job_progress.isVisible()


def test_export_recipe_recreates_image_through_cli(qtbot, win, dir_file, tmp_path):
    from hspace_studio.cli import main as cli_main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    s = import_and_activate(qtbot, win, dir_file, rows=(0, 2))
    rows = win.slider_rows()
    rows[0].slider.setValue(600)
    rows[1].box.setValue(-1.25)
    rows[1].set_window((rows[1]._timesteps[0], rows[1]._timesteps[4]))
    # an in-memory direction (no file): disentangled pc1 against pc0
    res = run_job(qtbot, win, win.disentangle((s.set_id, 1), [(s.set_id, 0)]))
    assert res.ok, res.error
    d = res.value[0]
    win.library.set_active((d.set_id, 0), True)
    win.sliders.row((d.set_id, 0)).box.setValue(0.75)
    wait_idle(qtbot, win)
    shown = image_of(win)

    out = tmp_path / "edited.png"
    res = run_job(qtbot, win, win.export_image(str(out)))
    assert res.ok, res.error
    recipe = read_recipe(out)
    assert recipe["fingerprint"] == win.model_info.fingerprint
    assert len(recipe["edits"]) == 3
    assert recipe["edits"][0]["direction"] == str(dir_file.resolve())
    assert recipe["edits"][1]["window"] is not None
    assert recipe["edits"][2]["direction"].endswith("edited.directions.safetensors")
    from PIL import Image

    exported = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(exported, shown)
    again = tmp_path / "again.png"
    assert cli_main(recipe_to_cli_args(recipe, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")), exported)

    # a strip too (the CLI's --strip)
    win.library.select(s.set_id, 0)
    strip = tmp_path / "strip.png"
    res = run_job(qtbot, win, win.export_strip(str(strip), factors=(-1.0, 0.0, 1.0)))
    assert res.ok, res.error
    rec = read_recipe(strip)
    assert len(rec["strip"]) == 3
    again = tmp_path / "strip_again.png"
    assert cli_main(recipe_to_cli_args(rec, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(strip)))
    res = run_job(qtbot, win, win.export_grid(str(tmp_path / "grid.png"), factors=(-1.0, 1.0)))
    assert res.ok, res.error


def test_session_round_trip(qtbot, win, dir_file, tmp_path, tiny_model_dir):
    s = import_and_activate(qtbot, win, dir_file, rows=(0, 1))
    rows = win.slider_rows()
    rows[0].slider.setValue(-500)
    rows[1].set_window((rows[1]._timesteps[2], rows[1]._timesteps[7]))
    rows[1].box.setValue(0.4)
    win.library.rename(s.set_id, 1, "renamed")
    win.mask.set_array(np.eye(16, dtype=bool))
    win.set_view("split")
    wait_idle(qtbot, win)
    shown = image_of(win)
    path = tmp_path / "sess" / "my.json"
    res = run_job(qtbot, win, win.save_session(str(path)))
    assert res.ok, res.error
    assert path.is_file() and len(list(path.parent.glob("my.*.safetensors"))) == 1
    assert not win.dirty
    lib = [x.to_json() for x in win.library.sets]

    w2 = make_window(qtbot, tiny_model_dir, tmp_path, name="w2")
    try:
        res = run_job(qtbot, w2, w2.open_session(str(path)))
        assert res.ok, res.error
        wait_idle(qtbot, w2)
        assert [x.to_json() for x in w2.library.sets] == lib
        assert np.array_equal(w2.mask.array, np.eye(16, dtype=bool))
        assert w2.canvas.view == "split"
        assert [r.scale() for r in w2.slider_rows()] == [r.scale() for r in rows]
        assert w2.slider_rows()[1].window() == rows[1].window()
        assert np.array_equal(image_of(w2), shown)
        assert w2.session_path == str(path) and not w2.dirty
    finally:
        w2.shutdown()


def test_model_and_steps_changes_mark_directions(qtbot, win, dir_file, tiny_model_b_dir):
    s = import_and_activate(qtbot, win, dir_file)
    # more steps: the set is mapped by nearest timestep (usable, marked)
    win.source_panel.steps.setValue(12)
    qtbot.waitUntil(lambda: win.traj_info is not None and len(win.traj_info.timesteps) == 12, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    assert win.library.find_set(s.set_id).status == "remapped"
    assert win.slider_rows()[0].slider.isEnabled()
    # another model: kept in the library, marked, its slider disabled
    src = win.model_info.source
    res = run_job(qtbot, win, win.load_model(str(tiny_model_b_dir)))
    assert res.ok, res.error
    qtbot.waitUntil(lambda: win.traj_info is not None, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    st = win.library.find_set(s.set_id)
    assert st.status == "mismatch" and "model" in st.status_text
    assert not win.slider_rows()[0].slider.isEnabled()
    assert win.current_edits() == ()
    res = run_job(qtbot, win, win.load_model(src))
    qtbot.waitUntil(lambda: win.traj_info is not None, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    assert win.library.find_set(s.set_id).status in ("ok", "remapped")


def test_bad_files_give_messages(qtbot, win, tmp_path, tiny_model, reference):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    res = run_job(qtbot, win, win.import_directions([junk]))
    assert not res.ok and "readable" in res.error
    assert any("readable" in e for e in win.messages.errors)

    other = DirectionSet(delta_h=torch.randn((1, *reference.hs.shape)), timesteps=reference.timesteps,
                         fingerprint="0123456789abcdef", h_space="after", method="pca")
    other.save(tmp_path / "other.safetensors")
    res = run_job(qtbot, win, win.import_directions([tmp_path / "other.safetensors"]))
    assert not res.ok and "made for model 0123456789abcdef" in win.messages.last

    bad_img = tmp_path / "photo.png"
    bad_img.write_text("hello")
    res = run_job(qtbot, win, win.open_image(str(bad_img)))
    assert not res.ok and "not a readable image" in win.messages.last

    bad_session = tmp_path / "s.json"
    bad_session.write_text("{ nope")
    res = run_job(qtbot, win, win.open_session(str(bad_session)))
    assert not res.ok and "session" in win.messages.last
    bad_session.write_text(json.dumps({"kind": "hspace-session", "sidecar": "gone.safetensors"}))
    res = run_job(qtbot, win, win.open_session(str(bad_session)))
    assert not res.ok and "missing" in win.messages.last

    assert not win.load_mask(str(bad_img))
    res = run_job(qtbot, win, win.load_model(str(tmp_path / "no-such-model")))
    assert not res.ok and win.model_info is not None  # the old model stays
    # still responsive: a new sample works
    res = run_job(qtbot, win, win.submit(J.Sample(seed=5, steps=10, eta=1.0)))
    assert res.ok and win.traj_info.source["seed"] == 5


def test_invert_image_export_and_fill_part(qtbot, win, tmp_path, dir_file):
    from PIL import Image

    from hspace_studio.cli import main as cli_main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    img = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(img)
    res = run_job(qtbot, win, win.open_image(str(img)))
    assert res.ok, res.error
    assert win.traj_info.source["kind"] == "image"
    assert "centre-cropped" in win.source_panel.info.text()
    import_and_activate(qtbot, win, dir_file)
    win.slider_rows()[0].box.setValue(1.0)
    wait_idle(qtbot, win)
    out = tmp_path / "inv.png"
    assert run_job(qtbot, win, win.export_image(str(out))).ok
    rec = read_recipe(out)
    assert rec["source"]["image"] == str(img) and rec["source"]["inversion"] == "ddpm"
    assert cli_main(recipe_to_cli_args(rec, str(tmp_path / "inv2.png"))) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "inv2.png")), np.asarray(Image.open(out)))
    win.library.remove([(win.library.sets[0].set_id, None)])
    # segmenter fill: works where the shipped segmenter exists, else a readable message
    h = win.fill_part("mouth", "replace")
    res = run_job(qtbot, win, h)
    if res.ok:
        assert np.array_equal(win.mask.array, res.value["mask"])
        assert win.mask.undo_stack.count() == (1 if res.value["mask"].any() else 0)
    else:
        assert "segmenter" in win.messages.last


def test_filling_a_part_the_image_lacks_keeps_the_mask(qtbot, win, tmp_path):
    """A part the segmenter does not find (hair on a bald head; here anything on a flat light
    image, all background to it) leaves the painted mask as it was and says so."""
    from PIL import Image

    img = tmp_path / "flat.png"
    Image.new("RGB", (64, 64), (191, 191, 191)).save(img)
    assert run_job(qtbot, win, win.open_image(str(img))).ok
    painted = np.zeros(win.mask.array.shape, bool)
    painted[2:6, 3:9] = True
    win.mask.set_array(painted)
    res = run_job(qtbot, win, win.fill_part("hair", "replace"))
    assert res.ok, res.error
    assert not res.value["mask"].any()
    assert np.array_equal(win.mask.array, painted)
    assert "finds no hair in this image: the mask is unchanged" in win.messages.last


def test_autosave_is_offered_after_a_crash(qtbot, tiny_model_dir, tmp_path, dir_file):
    w = make_window(qtbot, tiny_model_dir, tmp_path, name="a")
    import_and_activate(qtbot, w, dir_file)
    # a window that died: its lock names a process that is gone, its autosave is there
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = tmp_path / "state"
    auto = state / f"autosave-{dead.pid}.json"
    res = run_job(qtbot, w, w.save_session(str(auto), quiet=True))
    assert res.ok, res.error
    (state / f"lock-{dead.pid}.json").write_text(json.dumps({"pid": dead.pid, "heartbeat": 0,
                                                              "autosave": auto.name}))
    # the periodic autosave of this window
    w.autosave.timer.start(100)
    qtbot.waitUntil(lambda: w.autosave.path.exists(), timeout=TIMEOUT)
    wait_idle(qtbot, w)
    w.shutdown()
    assert not (state / f"lock-{os.getpid()}.json").exists()  # a clean exit leaves no lock
    assert not w.autosave.path.exists()

    w2 = make_window(qtbot, tiny_model_dir, tmp_path, name="b")
    try:
        qtbot.waitUntil(lambda: "did not exit cleanly" in w2.messages.last, timeout=5000)
        assert w2.messages.action_btn.text() == "Restore"
        w2.messages.action_btn.click()
        qtbot.waitUntil(lambda: len(w2.library.sets) == 1, timeout=TIMEOUT)
        wait_idle(qtbot, w2)
        assert not auto.exists() and not (state / f"lock-{dead.pid}.json").exists()
    finally:
        w2.shutdown()


def test_library_edit_operations(qtbot, win, dir_file, tmp_path):
    s = import_and_activate(qtbot, win, dir_file, rows=(0,))
    # tick a check box and edit a label in the tree itself
    item = win.library._item_for(s.set_id, 1)
    item.setCheckState(0, Qt.CheckState.Checked)
    qtbot.waitUntil(lambda: len(win.slider_rows()) == 2, timeout=5000)
    win.library._item_for(s.set_id, 1).setText(0, "edited label")
    qtbot.waitUntil(lambda: win.library.direction((s.set_id, 1))[1].label == "edited label", timeout=5000)
    win.library.rename(s.set_id, 1, "pc 1")
    assert [r.key for r in win.slider_rows()] == [(s.set_id, 0), (s.set_id, 1)]
    win.library.move(s.set_id, 1, -1)  # reorder: the sliders follow
    assert [r.key for r in win.slider_rows()] == [(s.set_id, 1), (s.set_id, 0)]
    win.library.rename(s.set_id, None, "my set")
    assert win.library.find_set(s.set_id).name == "my set"
    win.library.remove([(s.set_id, 1)])
    assert [d.index for d in win.library.find_set(s.set_id).directions] == [0, 2]
    assert len(win.slider_rows()) == 1
    out = tmp_path / "exported.safetensors"
    res = run_job(qtbot, win, win.export_directions(s.set_id, str(out)))
    assert res.ok, res.error
    ds = DirectionSet.load(out)
    assert len(ds) == 2 and ds.labels == ["pc 0", "pc 2"]
    # strip of the selected direction, and clicking a thumbnail sets that scale
    win.library.select(s.set_id, 2)
    qtbot.waitUntil(lambda: len(win.library.strip.images) == 5, timeout=TIMEOUT)
    win._strip_clicked(win.library.strip.scales[-1])
    wait_idle(qtbot, win)
    assert win.sliders.row((s.set_id, 2)).scale() == pytest.approx(win.library.strip.scales[-1])
    win.library.remove([(s.set_id, None)])
    assert win.library.sets == [] and win.slider_rows() == []


def test_session_survives_a_retrained_model(qtbot, tiny_model_dir, tiny_model_b_dir, tmp_path, dir_file):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    w = make_window(qtbot, folder, tmp_path, name="r1")
    try:
        import_and_activate(qtbot, w, dir_file)
        res = run_job(qtbot, w, w.save_session(str(tmp_path / "s.json")))
        assert res.ok, res.error
    finally:
        w.shutdown()
    shutil.rmtree(folder)
    shutil.copytree(tiny_model_b_dir, folder)  # "retrained": same folder, other weights
    w2 = make_window(qtbot, tiny_model_dir, tmp_path, name="r2")
    try:
        res = run_job(qtbot, w2, w2.open_session(str(tmp_path / "s.json")))
        assert res.ok, res.error
        wait_idle(qtbot, w2)
        assert w2.model_info.source == str(folder)
        assert w2.library.sets[0].status == "mismatch"
        assert not w2.slider_rows()[0].slider.isEnabled()
        assert any("has changed since" in t for _, _, t in w2.messages.history)
        assert w2.traj_info.source["seed"] == SEED  # sampled again from its seed
        assert not w2.messages.errors
    finally:
        w2.shutdown()


def test_cycles_are_collected_in_the_ui_thread(qtbot, tiny_model_dir, tmp_path, dir_file):
    """While a window's engine thread runs, Python's cycle collector runs only in the UI
    thread (a cycle holding Qt objects must not be destroyed on the worker); closing the
    window gives the collector back as it was."""
    import gc
    import threading

    from hspace_studio.gui import main_thread_gc

    was = gc.isenabled()
    w = make_window(qtbot, tiny_model_dir, tmp_path, name="gc")
    try:
        assert main_thread_gc.active() and not gc.isenabled()
        died = []

        class Node:
            def __del__(self):
                died.append(threading.current_thread() is threading.main_thread())

        for _ in range(200):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        import_and_activate(qtbot, w, dir_file)  # the worker allocates while they wait
        w.slider_rows()[0].slider.setValue(700)
        wait_idle(qtbot, w)
        qtbot.waitUntil(lambda: len(died) == 400, timeout=TIMEOUT)
        assert all(died)
    finally:
        w.shutdown()
    assert gc.isenabled() == was and not main_thread_gc.active()


def test_scrubbing_seeds_samples_the_last_one(qtbot, win):
    done = []
    win.jobDone.connect(lambda r: isinstance(r.job, J.Sample) and done.append(r))
    for seed in range(20, 30):
        win.source_panel.seed.setValue(seed)
    qtbot.waitUntil(lambda: win.traj_info.source["seed"] == 29, timeout=TIMEOUT)
    wait_idle(qtbot, win)
    assert sum(r.ok for r in done) <= 2
    assert all(r.ok or r.error == "replaced by a newer request" for r in done)
    assert not win.messages.errors
    win.source_panel.randomize()
    qtbot.waitUntil(lambda: win.traj_info.source["seed"] == win.source_panel.seed.value(), timeout=TIMEOUT)


def test_keep_edits_inside_the_mask(qtbot, win, dir_file, tiny_model, reference, tmp_path):
    """The brush panel's 'Keep edits inside the mask' decodes the preview with the painted
    mask as a region (the engine's result, pixel for pixel), follows mask changes, and is
    stored in the session."""
    from hspace_studio.engine.sampler import Region, region_weights

    import_and_activate(qtbot, win, dir_file)
    row = win.slider_rows()[0]
    row.slider.setValue(900)
    wait_idle(qtbot, win)
    free = image_of(win)
    mask = np.zeros((16, 16), bool)
    mask[3:9, 4:12] = True
    win.mask.restore(mask)
    win.brush.keep_inside.setChecked(True)
    wait_idle(qtbot, win)
    ds = DirectionSet.load(dir_file).for_timesteps(reference.timesteps)
    region = Region(region_weights(tiny_model, mask.astype(np.float32)), 1)
    x0 = edit(tiny_model, reference, [EditSpec(ds.steps_delta(0), row.scale())], region=region)
    expected = to_u8(x0)
    kept = image_of(win)
    assert np.array_equal(kept, expected) and not np.array_equal(kept, free)
    # no free steps: outside the mask every pixel is the unedited image's
    assert win.brush.free_steps.isEnabled()  # follows the check box
    win.brush.free_steps.setValue(0)
    wait_idle(qtbot, win)
    hard = image_of(win)
    x0 = edit(tiny_model, reference, [EditSpec(ds.steps_delta(0), row.scale())],
              region=Region(region_weights(tiny_model, mask.astype(np.float32)), 0))
    assert np.array_equal(hard, to_u8(x0))
    plain = to_u8(reference.x_0)
    assert np.array_equal(hard[~mask], plain[~mask]) and not np.array_equal(hard, plain)
    win.mask.restore(np.zeros((16, 16), bool))  # an empty mask: the whole image again
    wait_idle(qtbot, win)
    assert np.array_equal(image_of(win), free)
    win.mask.restore(mask)
    wait_idle(qtbot, win)
    view = win.session_doc()["view"]
    assert view["keep_edits_in_mask"] is True and view["free_steps"] == 0
    assert run_job(qtbot, win, win.save_session(str(tmp_path / "region.json"))).ok
    win.brush.free_steps.setValue(3)
    win.brush.keep_inside.setChecked(False)
    assert not win.brush.free_steps.isEnabled()
    assert run_job(qtbot, win, win.open_session(str(tmp_path / "region.json"))).ok
    wait_idle(qtbot, win)
    assert win.brush.keep_inside.isChecked() and win.brush.free_steps.value() == 0
    assert np.array_equal(image_of(win), hard)
    win.brush.keep_inside.setChecked(False)
    wait_idle(qtbot, win)
    assert np.array_equal(image_of(win), free)
