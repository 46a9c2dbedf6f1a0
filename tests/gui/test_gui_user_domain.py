"""The desktop app with a user's own domain files (here: a TorchScript segmenter)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from tests.gui.test_gui_app import image_of, make_window, to_u8  # noqa: E402


class Brightness(torch.nn.Module):
    """Per-pixel logits of two parts: 'dark' and 'bright' (by the mean of the channels)."""

    def forward(self, x):
        m = x.mean(1, keepdim=True) * 10
        return torch.cat([-m, m], 1)


@pytest.fixture
def parser_file(tmp_path):
    torch.jit.save(torch.jit.script(Brightness()), str(tmp_path / "parser.pt"))
    (tmp_path / "parser.json").write_text(json.dumps(["dark", "bright"]))
    return tmp_path / "parser.pt"


def test_fill_part_with_a_users_segmenter(qtbot, win, parser_file, reference):
    """'Segmenter: Choose file…' reads the part names beside the TorchScript file (on the UI
    side, without torch), lists them, and 'Fill part' segments the image with that file."""
    b = win.brush
    default_parts = [b.part.itemData(i) for i in range(b.part.count())]
    assert b.segmenter.currentText() == "Segmenter: default"
    assert b.set_segmenter(str(parser_file))  # what the file dialog calls
    assert [b.part.itemData(i) for i in range(b.part.count())] == ["dark", "bright"]
    assert b.segmenter.currentText() == "Segmenter: parser.pt"
    b.part.setCurrentIndex(b.part.findData("bright"))
    b.part_mode.setCurrentText("replace")
    got = []
    win.jobDone.connect(got.append)
    b.fill_btn.click()
    qtbot.waitUntil(lambda: any(isinstance(r.value, dict) and "mask" in r.value for r in got if r.ok)
                    or any(not r.ok for r in got), timeout=60_000)
    qtbot.waitUntil(lambda: win.idle, timeout=60_000)
    assert not win.messages.errors, win.messages.errors
    assert np.array_equal(image_of(win), to_u8(reference.x_0))
    bright = (reference.x_0.clamp(-1, 1).mean(0) > 0).numpy()
    assert 0 < bright.mean() < 1
    assert np.array_equal(win.mask.array, bright)
    # back to the default: its parts again; a file without part names is refused with a message
    assert b.set_segmenter(None)
    assert [b.part.itemData(i) for i in range(b.part.count())] == default_parts
    assert b.segmenter_spec is None
    (parser_file.parent / "lonely.pt").write_bytes(parser_file.read_bytes())
    assert not b.set_segmenter(str(parser_file.parent / "lonely.pt"))
    assert "lonely.json" in win.messages.last and b.segmenter_spec is None


def test_the_supervised_panel_says_what_works_for_an_attribute(qtbot, tmp_path):
    """On the default model a mean difference of 'smiling' examples flips few faces; the panel
    says so, with what works instead (the domain's advice), and hides it once that is ticked."""
    w = make_window(qtbot, "default", tmp_path)
    try:
        d = w.discovery
        d.sup_attr.setCurrentText("smiling")
        d.setCurrentIndex([d.tabText(i) for i in range(d.count())].index("Supervised"))
        assert not d.sup_advice.isHidden() and "Fit through the sampler" in d.sup_advice.text()
        d.sup_optimize.setChecked(True)
        assert d.sup_advice.isHidden()
        d.sup_optimize.setChecked(False)
        assert not d.sup_advice.isHidden()
        d.sup_attr.setCurrentText("beard")  # no advice: nothing shown
        assert d.sup_advice.isHidden()
    finally:
        w.shutdown()


def test_fill_part_lists_the_domains_parts_and_groups(qtbot, win):
    """The brush's part list is the domain's segmenter's parts and the domain's groups of
    them (the toy faces: 'eyes' = both eyes); the generic domain names none."""
    from hspace_studio.engine.domain import active_domain
    from hspace_studio.gui.brush import BrushPanel

    items = [win.brush.part.itemData(i) for i in range(win.brush.part.count())]
    assert "eyes" in items and "mouth" in items and "left_eye" in items
    assert set(active_domain().part_groups["eyes"]) == {"left_eye", "right_eye"}
    bare = BrushPanel(win.mask, win.canvas)  # before a domain gives it parts
    qtbot.addWidget(bare)
    assert bare.part.count() == 0
    bare.set_default_parts(["a", "b"], {"both": ("a", "b"), "a": ("a",)})
    assert [bare.part.itemData(i) for i in range(bare.part.count())] == ["both", "a", "b"]
