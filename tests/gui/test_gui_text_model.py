"""The desktop app on a text-to-image model: a tiny SD folder loaded by path, a prompt typed,
a slider moved, the image exported, and its recipe replayed through the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from hspace_studio.engine import DirectionSet, load_model, sample
from tests.gui.test_gui_app import export_and_replay, image_of, import_and_activate, make_window, run_job, wait_idle
from tests.tiny_models import save_sd_model

pytest.importorskip("pytestqt")


def type_prompt(qtbot, w, text):
    """Type a prompt and Enter; returns the new image (checked to differ from the one before)."""
    panel = w.source_panel
    first = image_of(w)
    panel.prompt.setFocus()
    qtbot.keyClicks(panel.prompt, text)
    qtbot.keyClick(panel.prompt, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.traj_info.origin.get("prompt") == text, timeout=60_000)
    wait_idle(qtbot, w)
    prompted = image_of(w)
    assert not np.array_equal(first, prompted)
    return prompted


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return save_sd_model(tmp_path_factory.mktemp("sd_gui"))


def test_prompt_slider_export_and_replay(qtbot, sd_dir, tmp_path):
    model = load_model(str(sd_dir), device="cpu")
    hs = sample(model, [0], steps=10, eta=1.0)[0].hs
    ds = DirectionSet(delta_h=torch.randn((1, *hs.shape), generator=torch.Generator().manual_seed(0)) * hs.std(),
                      timesteps=sample(model, [0], steps=10)[0].timesteps, fingerprint=model.fingerprint,
                      h_space="after", method="pca", labels=["pc 1"], values=[[1.0] * hs.shape[0]])
    ds.save(tmp_path / "sd-dirs.safetensors")

    w = make_window(qtbot, sd_dir, tmp_path)
    try:
        panel = w.source_panel
        assert panel.prompt.isVisibleTo(w) and panel.cfg_scale.value() == 7.5  # SD's default
        assert not panel.guided.isVisibleTo(w)  # one "Guidance" row: the prompt's, not autoguidance
        prompted = type_prompt(qtbot, w, "a red face")
        panel.cfg_scale.setValue(3.0)  # a new guidance scale makes the image again
        qtbot.waitUntil(lambda: w.traj_info.origin.get("guidance") == 3.0, timeout=60_000)
        wait_idle(qtbot, w)

        import_and_activate(qtbot, w, tmp_path / "sd-dirs.safetensors")
        w.slider_rows()[0].slider.setValue(800)
        wait_idle(qtbot, w)
        assert not np.array_equal(image_of(w), prompted)
        recipe = export_and_replay(qtbot, w, tmp_path)
        assert recipe["prompt"] == {"prompt": "a red face", "negative_prompt": "", "guidance": 3.0}
        assert recipe["edits"] and recipe["edits"][0]["scale"] != 0
        # a session brings the image back under its prompt, and shows that prompt
        shown = image_of(w)
        res = run_job(qtbot, w, w.save_session(str(tmp_path / "sess" / "sd.json")))
        assert res.ok, res.error
    finally:
        w.shutdown()
    w2 = make_window(qtbot, sd_dir, tmp_path, name="w2")
    try:
        res = run_job(qtbot, w2, w2.open_session(str(tmp_path / "sess" / "sd.json")))
        assert res.ok, res.error
        wait_idle(qtbot, w2)
        assert np.array_equal(image_of(w2), shown)
        assert w2.source_panel.conditioning() == ("a red face", "", 3.0)
    finally:
        w2.shutdown()


def test_prompt_rows_are_hidden_for_an_unconditional_model(qtbot, tiny_model_dir, tmp_path):
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    try:
        assert not w.source_panel.prompt.isVisibleTo(w) and w.source_panel.guided.isVisibleTo(w)
        assert w.source_panel.conditioning() == (None, None, None)
    finally:
        w.shutdown()


def test_an_sdxl_folder_in_the_app(qtbot, tmp_path):
    """SDXL (two text encoders, pooled embeddings, size conditioning): a typed prompt makes the
    image again, and its export replays through the CLI to the same pixels."""
    from tests.tiny_models import save_sdxl_model

    folder = save_sdxl_model(tmp_path / "sdxl")
    w = make_window(qtbot, folder, tmp_path)
    try:
        panel = w.source_panel
        assert panel.prompt.isVisibleTo(w) and panel.cfg_scale.value() == 5.0  # SDXL's default
        first = image_of(w)
        panel.prompt.setFocus()
        qtbot.keyClicks(panel.prompt, "an old man")
        qtbot.keyClick(panel.prompt, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: w.traj_info.origin.get("prompt") == "an old man", timeout=60_000)
        wait_idle(qtbot, w)
        assert not np.array_equal(first, image_of(w))
        recipe = export_and_replay(qtbot, w, tmp_path)
        assert recipe["prompt"]["prompt"] == "an old man" and recipe["prompt"]["guidance"] == 5.0
    finally:
        w.shutdown()


def test_a_flux_folder_in_the_app(qtbot, tmp_path):
    """A flow-matching transformer (tiny Flux.1-dev): the h-space list shows its blocks, a typed
    prompt makes a new image, a slider moves it, and the export's command line replays it."""
    from tests.tiny_flow_models import save_flux_model

    folder = save_flux_model(tmp_path / "flux")
    model = load_model(str(folder), device="cpu")
    t = sample(model, [0], steps=10, eta=1.0)[0]
    ds = DirectionSet(delta_h=torch.randn((1, *t.hs.shape), generator=torch.Generator().manual_seed(0)) * 3 * t.hs.std(),
                      timesteps=t.timesteps, fingerprint=model.fingerprint, h_space="block:1", method="pca",
                      labels=["pc 1"], values=[[1.0] * t.hs.shape[0]])
    ds.save(tmp_path / "flux-dirs.safetensors")
    w = make_window(qtbot, folder, tmp_path)
    try:
        panel = w.source_panel
        box = panel.h_space
        assert [box.itemText(i) for i in range(box.count())] == ["block:0", "block:1", "block:2"]
        assert box.currentText() == "block:1" and w.model_info.h_space == "block:1"
        assert panel.prompt.isVisibleTo(w) and panel.cfg_scale.value() == 3.5  # Flux.1-dev's default
        assert not panel.negative_prompt.isVisibleTo(w)  # Flux takes none
        prompted = type_prompt(qtbot, w, "a red face")
        import_and_activate(qtbot, w, tmp_path / "flux-dirs.safetensors")
        w.slider_rows()[0].slider.setValue(800)
        wait_idle(qtbot, w)
        assert not np.array_equal(image_of(w), prompted)
        recipe = export_and_replay(qtbot, w, tmp_path)
        assert recipe["h_space"] == "block:1" and recipe["prompt"]["prompt"] == "a red face"
        assert recipe["edits"] and recipe["edits"][0]["scale"] != 0
        # PCA over two prompts, from the Discover panel
        disc = w.discovery
        assert disc.pca_prompts.isVisibleTo(w)
        disc.pca_samples.setValue(2)
        disc.pca_k.setValue(2)
        disc.pca_prompts.setText("a cat | a dog")
        job = disc.pca_job()
        assert job.prompts == ("a cat", "a dog")
        res = run_job(qtbot, w, w.run_discovery(job))
        assert res.ok, res.error
        s = res.value[0]
        assert s.params.get("prompts") == ["a cat", "a dog"] and s.h_space == "block:1" and len(s.directions) == 2
    finally:
        w.shutdown()


def test_a_lora_typed_in_the_app_loads_and_replays(qtbot, sd_dir, tmp_path):
    pytest.importorskip("peft")
    from tests.engine.test_lora import _save_lora

    lora = _save_lora(tmp_path / "lora", sd_dir, 1)
    w = make_window(qtbot, sd_dir, tmp_path)
    try:
        panel = w.source_panel
        assert panel.lora.isVisibleTo(w) and w.model_info.loras == ()
        before = image_of(w)
        fp = w.model_info.fingerprint
        panel.lora.setText(f"{lora}:0.8")
        panel.lora.setFocus()
        qtbot.keyClick(panel.lora, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: w.model_info is not None and w.model_info.loras == ((str(lora), 0.8),),
                        timeout=60_000)
        wait_idle(qtbot, w)
        assert w.model_info.fingerprint != fp
        assert not np.array_equal(image_of(w), before)
        recipe = export_and_replay(qtbot, w, tmp_path)
        assert recipe["loras"] == [{"path": str(lora), "weight": 0.8}]
    finally:
        w.shutdown()


def test_a_png_made_with_another_model_and_a_prompt_reopens_as_made(qtbot, sd_dir, tiny_model_dir, tmp_path):
    """The model is switched (the user said yes), then the recipe's seed and prompt make the image:
    not the old image remade under the new model with the panel's prompt."""
    from PIL import Image

    from hspace_studio.cli import main

    png = tmp_path / "made.png"
    assert main(["sample", "--model", str(sd_dir), "--prompt", "a red face", "--guidance", "3", "--seed", "4",
                 "--steps", "5", "--out", str(png)]) == 0
    w = make_window(qtbot, tiny_model_dir, tmp_path)
    try:
        assert w.open_recipe_image(str(png), switch_model=True)
        qtbot.waitUntil(lambda: w.traj_info is not None and w.traj_info.origin.get("prompt") == "a red face",
                        timeout=60_000)
        wait_idle(qtbot, w)
        assert w.model_info.source == str(sd_dir) and w.traj_info.source["seed"] == 4
        assert w.source_panel.conditioning() == ("a red face", "", 3.0)
        assert np.array_equal(image_of(w), np.asarray(Image.open(png).convert("RGB")))
    finally:
        w.shutdown()


def _drop(w, path):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    ev = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    w.dropEvent(ev)
    assert ev.isAccepted()


def test_a_dropped_checkpoint_file_loads_with_its_family_folder(qtbot, sd_dir, tmp_path, monkeypatch):
    """A single-file checkpoint dropped on the window: offline, the message asks for the family's
    folder; with it named in the Configs row the file loads and gives the folder's image."""
    from diffusers import StableDiffusionPipeline

    from tests.checkpoint_layout import configs_only, save_checkpoint, sd_pipeline_to_ldm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    file = save_checkpoint(sd_pipeline_to_ldm(StableDiffusionPipeline.from_pretrained(sd_dir)),
                           tmp_path / "fine-tune.safetensors")
    configs = configs_only(sd_dir, tmp_path / "configs")
    w = make_window(qtbot, sd_dir, tmp_path)
    try:
        assert w.acceptDrops()
        folder_image = image_of(w)
        panel = w.source_panel
        assert not panel.config.isVisibleTo(w)  # the Configs row is for checkpoint files only
        _drop(w, file)
        qtbot.waitUntil(lambda: "Configs row" in str(w.messages.last), timeout=60_000)
        wait_idle(qtbot, w)
        assert panel.model_source() == str(file) and panel.config.isVisibleTo(w)
        panel.config.setText(str(configs))
        qtbot.keyClick(panel.config, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: w.model_info.source == str(file), timeout=60_000)
        wait_idle(qtbot, w)
        assert w.model_info.checkpoint_family == "SD 1.x"
        assert "SD 1.x checkpoint file" in w.model_info.description
        assert np.array_equal(image_of(w), folder_image)  # the same weights, seed and prompt
        assert w.session_doc()["model"]["model_config"] == str(configs.resolve())
        assert panel.config.text() == str(configs.resolve())
    finally:
        w.shutdown()
