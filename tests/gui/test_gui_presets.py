"""The supervised panel takes what it offers for a subject from the domain: the toy faces'
presets, parts and classifier; with the generic domain, no preset but 'none'."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from hspace_studio.engine.domain import GENERIC, Domain, Preset  # noqa: E402
from hspace_studio.gui.discovery import DiscoveryPanel  # noqa: E402
from hspace_studio.toyfaces.domain import TOY_FACES  # noqa: E402


def panel(qtbot, domain):
    p = DiscoveryPanel(lambda: (10, 1.0), lambda: None, lambda: 10, domain=domain)
    qtbot.addWidget(p)
    return p


def items(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def test_the_generic_domain_offers_no_preset(qtbot):
    p = panel(qtbot, GENERIC)
    assert items(p.sup_preset) == ["none"] and not p.sup_preset.isEnabled()
    assert items(p.sup_attr) == [] and "generic domain has none" in p.sup_classifier.placeholderText()
    p.sup_optimize.setChecked(True)
    assert not p.sup_own.isEnabled() and not p.sup_part_check.isEnabled()  # no segmenter, no part check
    p.sup_attr.setCurrentText("bright")
    job = p.supervised_job()
    assert job.keep_in_part == () and job.free == () and job.skip == () and dict(job.terms) == {"part-check": 0.0}


def test_the_toy_faces_presets_set_the_panel_and_the_job(qtbot):
    p = panel(qtbot, GENERIC)
    p.set_domain(TOY_FACES)
    assert items(p.sup_preset) == ["none"] + [x.name for x in TOY_FACES.presets] and p.sup_preset.isEnabled()
    assert items(p.sup_own_part) == list(TOY_FACES.part_groups)
    assert "blond_hair" in items(p.sup_attr) and p.sup_classifier.placeholderText() == "toyfaces: toyfaces-classifier"
    p.sup_attr.setCurrentText("smiling")
    p.sup_preset.setCurrentText("hair-colour")  # for hair colours: the attribute follows
    assert p.sup_attr.currentText() == "black_hair" and p.sup_preset.toolTip()
    p.sup_attr.setCurrentText("blond_hair")
    p.sup_preset.setCurrentText("none")
    p.sup_preset.setCurrentText("hair-colour")
    assert p.sup_optimize.isChecked() and p.sup_iters.value() == 100 and p.sup_every_step.isChecked()
    assert p.sup_own.isChecked() and p.sup_own_part.currentData() == ("hair",) and p.sup_own_grow.value() == 1
    assert p.sup_part_check.isChecked()
    job = p.supervised_job()
    assert job.optimize == 100 and job.every_step and job.keep_in_part == ("hair",) and job.keep_in_grow == 1
    assert dict(job.terms) == {"part-check": 16.0, "hair-colour": 48.0, "outside-hair": 16.0}
    assert sorted(job.free) == ["black_hair", "grey_hair", "red_hair"] and job.skip == ("bald",)
    # eyeglasses: at every step with the part check, nothing freed
    p.sup_preset.setCurrentText("eyeglasses")
    assert p.sup_attr.currentText() == "eyeglasses" and not p.sup_own.isChecked()
    job = p.supervised_job()
    assert job.optimize == 80 and job.every_step and dict(job.terms) == {"part-check": 16.0}
    assert job.free == () and job.skip == () and job.keep_in_part == ()
    p.sup_attr.setCurrentText("smiling")
    with pytest.raises(ValueError, match="is for eyeglasses, not 'smiling'"):
        p.supervised_job()
    # back to a domain without presets: 'none' only
    p.set_domain(GENERIC)
    assert items(p.sup_preset) == ["none"] and p.preset() is None


def test_a_preset_the_app_cannot_show_is_refused_with_the_command_line(qtbot):
    mine = Domain("mine", presets=[Preset("gentle", "keep 5", {"optimize": 3, "keep": 5.0})])
    p = panel(qtbot, mine)
    p.sup_attr.setCurrentText("anything")
    p.sup_preset.setCurrentText("gentle")
    assert p.sup_iters.value() == 3
    with pytest.raises(ValueError, match="sets keep, which the app does not offer: use supervised --preset gentle"):
        p.supervised_job()
