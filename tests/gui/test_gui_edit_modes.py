"""The desktop app's edit modes and their exports: masked exports that replay exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from tests.gui.test_gui_app import (export_and_replay, image_of, import_and_activate,  # noqa: E402
                                wait_idle)


def test_masked_export_replays_exactly(qtbot, win, dir_file, tmp_path):
    """An export with 'Keep edits inside the mask' writes the mask beside the image, records
    it in the recipe, and the command line renders the masked edit, pixel for pixel."""
    from PIL import Image

    from hspace_studio.core.recipe import recipe_to_cli_args

    import_and_activate(qtbot, win, dir_file)
    win.slider_rows()[0].slider.setValue(900)
    wait_idle(qtbot, win)
    free = image_of(win)
    mask = np.zeros((16, 16), bool)
    mask[3:9, 4:12] = True
    win.mask.set_array(mask)
    win.brush.keep_inside.setChecked(True)
    win.brush.free_steps.setValue(2)
    wait_idle(qtbot, win)
    assert not np.array_equal(image_of(win), free)
    rec = export_and_replay(qtbot, win, tmp_path, "masked.png")
    side = tmp_path / "masked-region.png"
    assert rec["region"]["mask"] == str(side.resolve()) and rec["region"]["free_steps"] == 2
    assert np.array_equal(np.asarray(Image.open(side).convert("L")) > 127, mask)
    args = recipe_to_cli_args(rec, "x.png")
    assert f"--region={side.resolve()}" in args and "--free-steps=2" in args
    # the export is the masked image, not the free one
    assert np.array_equal(np.asarray(Image.open(tmp_path / "masked.png").convert("RGB")), image_of(win))


class Brightness(torch.nn.Module):
    def forward(self, x):
        m = x.mean(1, keepdim=True) * 10
        return torch.cat([-m, m], 1)


def test_a_region_from_recipe_replays(tiny_model_dir, dir_file, tmp_path):
    """A recipe written by ``edit --region-from SEG:PARTS`` gives back its command line, with
    the segmenter, the parts, the growth and the free steps."""
    from PIL import Image

    from hspace_studio.cli import main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    torch.jit.save(torch.jit.script(Brightness()), str(tmp_path / "parser.pt"))
    (tmp_path / "parser.json").write_text(json.dumps(["dark", "bright"]))
    out, again = tmp_path / "e.png", tmp_path / "again.png"
    assert main(["edit", "--model", str(tiny_model_dir), "--seed", "3", "--steps", "10",
                 "--direction", f"{dir_file}:0", "--scale", "3",
                 "--region-from", f"{tmp_path / 'parser.pt'}:bright", "--grow", "1", "--free-steps", "2",
                 "--out", str(out)]) == 0
    args = recipe_to_cli_args(read_recipe(out), str(again))
    assert f"--region-from={tmp_path / 'parser.pt'}:bright" in args
    assert "--grow=1" in args and "--free-steps=2" in args
    assert main(args) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out)))
    unmasked = tmp_path / "free.png"
    assert main(["edit", "--model", str(tiny_model_dir), "--seed", "3", "--steps", "10",
                 "--direction", f"{dir_file}:0", "--scale", "3", "--out", str(unmasked)]) == 0
    assert not np.array_equal(np.asarray(Image.open(unmasked)), np.asarray(Image.open(out)))


def test_asymmetric_toggle_changes_the_image_and_replays(qtbot, win, dir_file, tmp_path):
    """A slider row's 'Asym' toggle (also in its context menu) decodes that direction the
    Asyrp way; the export records "asymmetric": true and the CLI renders the same pixels."""
    import_and_activate(qtbot, win, dir_file)
    row = win.slider_rows()[0]
    row.slider.setValue(900)
    wait_idle(qtbot, win)
    plain = image_of(win)
    assert not row.asymmetric()
    row.asym_btn.setChecked(True)
    wait_idle(qtbot, win)
    asym = image_of(win)
    assert not np.array_equal(plain, asym)
    assert win.current_edits()[0].asymmetric
    rec = export_and_replay(qtbot, win, tmp_path, "asym.png")
    assert rec["edits"][0]["asymmetric"] is True
    assert win.session_doc()["library"][0]["directions"][0]["asymmetric"] is True
    row.asym_btn.setChecked(False)
    wait_idle(qtbot, win)
    assert np.array_equal(image_of(win), plain)
    rec = export_and_replay(qtbot, win, tmp_path, "sym.png")
    assert "asymmetric" not in rec["edits"][0]


@pytest.fixture
def noise_file(tmp_path, tiny_model, reference):
    """A noise-space direction file for the tiny model: random changes of x_T and of z_t."""
    from hspace_studio.engine.noise_edits import noise_direction_set

    g = torch.Generator().manual_seed(1)
    shape = tuple(tiny_model.sample_shape)
    T = reference.steps
    ds = noise_direction_set(torch.randn((2, *shape), generator=g) * 0.5,
                             torch.randn((2, T, *shape), generator=g) * 0.5, reference.timesteps,
                             tiny_model.weights_fingerprint, labels=["noise a", "noise b"])
    p = tmp_path / "noise.safetensors"
    ds.save(p)
    return p


def test_noise_direction_imports_edits_and_replays(qtbot, win, noise_file, dir_file, tmp_path, tiny_model,
                                                   reference):
    """A noise-space direction file is accepted by the library (with a 'noise' badge), its
    slider (no window, no step, no Asyrp) changes the image as the engine's noise edit does,
    it mixes with h-space edits, and the export replays through the CLI."""
    from hspace_studio.engine.directions import DirectionSet
    from hspace_studio.engine.noise_edits import noise_edit
    from hspace_studio.engine.sampler import edit
    from tests.gui.test_gui_app import to_u8

    before = image_of(win)
    s = import_and_activate(qtbot, win, noise_file, rows=(1,))
    assert s.status == "ok" and s.h_space == "noise"
    assert "noise" in win.library.tree.topLevelItem(0).child(0).text(1)
    row = win.slider_rows()[0]
    assert "[noise]" in row.title.text()
    assert not row.window_slider.isEnabled() and not row.at_combo.isVisible() and not row.asym_btn.isVisible()
    row.box.setValue(1.0)
    wait_idle(qtbot, win)
    assert not win.messages.errors, win.messages.errors
    got = image_of(win)
    assert not np.array_equal(got, before)
    ds = DirectionSet.load(noise_file)
    assert np.array_equal(got, to_u8(edit(tiny_model, reference, [noise_edit(ds, 1, 1.0, reference)])))
    rec = export_and_replay(qtbot, win, tmp_path, "noise.png")
    assert rec["edits"] == [{"space": "noise", "direction": str(noise_file.resolve()), "index": 1,
                             "scale": 1.0, "label": "noise b"}]
    # with an h-space direction as well: a mixed edit, replayed too
    import_and_activate(qtbot, win, dir_file)
    [r for r in win.slider_rows() if not r.noise][0].box.setValue(1.5)
    wait_idle(qtbot, win)
    rec = export_and_replay(qtbot, win, tmp_path, "mixed.png")
    assert sorted(e.get("space", "h") for e in rec["edits"]) == ["h", "noise"]
    assert not np.array_equal(image_of(win), got)


# ----------------------------------------------------------------------------- smaller defects

def test_use_the_painted_mask_follows_the_mask_until_the_user_sets_it(qtbot, win):
    d = win.discovery
    assert not d.jac_mask.isChecked()
    m = np.zeros((16, 16), bool)
    m[4:10, 4:10] = True
    win.mask.set_array(m)
    assert d.jac_mask.isChecked()  # on by default once a mask is painted
    assert d.make_jacobian_job().mask is not None
    win.mask.clear()
    assert not d.jac_mask.isChecked()
    win.mask.set_array(m)
    assert d.jac_mask.isChecked()
    d.jac_mask.click()  # the user turns it off: painting no longer turns it on
    assert not d.jac_mask.isChecked()
    win.mask.clear()
    win.mask.set_array(m)
    assert not d.jac_mask.isChecked()


def test_keep_inside_has_a_hint(win):
    hint = win.brush.keep_inside_hint
    assert hint.isVisible() and "confines" in hint.text().lower() and "mask" in hint.text()


def test_stale_thumbnails_are_marked_until_redrawn(qtbot, win, dir_file):
    """After a seed change the strip's old thumbnails are greyed with 'updating…' until the
    new ones arrive."""
    strip = win.library.strip
    s = import_and_activate(qtbot, win, dir_file)
    win.library.select(s.set_id, 0)
    qtbot.waitUntil(lambda: len(strip.images) == 5 and not strip.stale, timeout=60_000)
    seen = []
    show = strip.show_images

    def spy(images, scales):
        seen.append((strip.stale, strip._note.isVisible(), strip._note.text(),
                     [b.graphicsEffect() is not None for b in strip._labels]))
        show(images, scales)

    strip.show_images = spy
    win.source_panel.seed.setValue(win.source_panel.seed.value() + 1)
    qtbot.waitUntil(lambda: bool(seen) and win.idle, timeout=60_000)
    qtbot.waitUntil(lambda: not strip.stale, timeout=60_000)
    stale, note_shown, note, greyed = seen[0]
    assert stale and note_shown and "updating" in note and greyed and all(greyed)
    assert not strip._note.isVisible()
    assert all(b.graphicsEffect() is None for b in strip._labels)
