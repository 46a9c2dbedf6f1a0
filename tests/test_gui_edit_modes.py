"""The desktop app's edit modes and their exports: masked exports that replay exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from tests.test_gui_app import (export_and_replay, image_of, import_and_activate,  # noqa: E402
                                wait_idle)
from tests.test_gui_app import dir_file, reference, win  # noqa: E402,F401 - fixtures


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
