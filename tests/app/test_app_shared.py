"""What the command line and the app share (app/edits.py, sources.py, errors.py,
handlers/previews.py), against ground truth: a CLI command and the app's handler for the same
request write the same pixels."""
import numpy as np
import pytest
import torch
from PIL import Image

from hspace_studio.app import requests as R
from hspace_studio.app.edits import h_delta, mask_region, region_entry
from hspace_studio.app.errors import APP_ERRORS, error_message
from hspace_studio.app.handlers import run_job
from hspace_studio.app.handlers.previews import DONE, EMPTY, SUPERSEDED, run_preview, run_strip
from hspace_studio.app.records import PreviewResult
from hspace_studio.app.sources import index_file, open_trajectory
from hspace_studio.app.state import EngineState
from hspace_studio.cli import main as cli_main
from hspace_studio.core.errors import Cancelled, HSpaceError, ModelMismatchError
from hspace_studio.core.progress import CancelToken
from tests.tiny_models import save_direction_files

SEED, STEPS = 3, 6


def run(state, job):
    return run_job(state, job, lambda *a: None, CancelToken())


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def files(tiny_model_dir, tmp_path_factory):
    """An h-space and a noise-space direction file for the tiny model at STEPS steps."""
    return save_direction_files(tiny_model_dir, tmp_path_factory.mktemp("shared"), STEPS, seed=5)


@pytest.fixture
def app(tiny_model_dir, files):
    """An EngineState with seed SEED sampled and both files in its library: (state, h id, noise id)."""
    st = EngineState()
    run(st, R.LoadModel(str(tiny_model_dir), device="cpu"))
    run(st, R.Sample(seed=SEED, steps=STEPS, eta=1.0))
    h, n = run(st, R.ImportDirections((str(files / "h.safetensors"), str(files / "n.safetensors"))))
    return st, h.set_id, n.set_id


def cli(tiny_model_dir, *args):
    return cli_main(["edit", "--seed", str(SEED), "--model", str(tiny_model_dir), "--steps", str(STEPS),
                     "--eta", "1", *[str(a) for a in args]])


def test_an_h_space_strip_is_the_same_from_the_cli_and_the_app(app, files, tiny_model_dir, tmp_path):
    st, h, _ = app
    assert cli(tiny_model_dir, "--direction", f"{files}/h.safetensors:1", "--window", "999:300",
               "--strip=-2,0,2", "--out", tmp_path / "cli.png") == 0
    item = R.EditItem(h, 1, 5.0, window=(999, 300))  # the item's own scale is ignored
    run(st, R.ExportStrip(str(tmp_path / "app.png"), item, (-2.0, 0.0, 2.0), (), ((h, None),)))
    assert np.array_equal(pixels(tmp_path / "cli.png"), pixels(tmp_path / "app.png"))
    # and the library's strip (the slider's previews) shows the same images
    shown = st.renderer.render_strip(item, (-2.0, 0.0, 2.0), ())
    tiles = [pixels(tmp_path / "app.png")[:, 18 * i:18 * i + 16] for i in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(shown, tiles))
    assert np.array_equal(shown[1], st.renderer.render(()))


def test_a_noise_strip_with_other_edits_is_the_same_from_the_cli_and_the_app(app, files, tiny_model_dir,
                                                                             tmp_path):
    st, h, n = app
    assert cli(tiny_model_dir, "--noise-direction", f"{files}/n.safetensors:1", "--direction",
               f"{files}/h.safetensors:0", "--scale", "1.5", "--asymmetric", "--strip=-1,0,1",
               "--out", tmp_path / "cli.png") == 0
    others = (R.EditItem(h, 0, 1.5, asymmetric=True),)
    run(st, R.ExportStrip(str(tmp_path / "app.png"), R.EditItem(n, 1, 1.0), (-1.0, 0.0, 1.0), others,
                          ((h, None), (n, None))))
    cli_px, app_px = pixels(tmp_path / "cli.png"), pixels(tmp_path / "app.png")
    assert cli_px.shape == (16, 3 * 16 + 2 * 2, 3) and np.array_equal(cli_px, app_px)


def test_an_edit_kept_in_a_mask_is_the_same_from_the_cli_and_the_app(app, files, tiny_model_dir, tmp_path):
    st, h, _ = app
    mask = np.zeros((16, 16), bool)
    mask[4:10, 3:12] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    assert cli(tiny_model_dir, "--direction", f"{files}/h.safetensors:1", "--scale", "3", "--region",
               tmp_path / "m.png", "--free-steps", "0", "--out", tmp_path / "cli.png") == 0
    assert run(st, R.SetRegion(mask, free_steps=0)) is True
    edits = (R.EditItem(h, 1, 3.0),)
    run(st, R.ExportImage(str(tmp_path / "app.png"), edits, ((h, str(files / "h.safetensors")),)))
    plain = st.renderer.render(())
    cli_px = pixels(tmp_path / "cli.png")
    assert np.array_equal(cli_px, pixels(tmp_path / "app.png"))
    assert np.array_equal(cli_px[~mask], plain[~mask]) and not np.array_equal(cli_px[mask], plain[mask])


def test_an_inversion_is_the_same_from_the_cli_and_the_app(tiny_model_dir, tmp_path):
    from hspace_studio.engine import Trajectory

    rgba = (np.random.default_rng(1).random((40, 50, 4)) * 255).astype("uint8")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png")
    assert cli_main(["invert", "--image", str(tmp_path / "photo.png"), "--model", str(tiny_model_dir),
                     "--steps", "5", "--eta", "1", "--trajectory", str(tmp_path / "t.safetensors"),
                     "--out", str(tmp_path / "r.png")]) == 0
    st = EngineState()
    run(st, R.LoadModel(str(tiny_model_dir), device="cpu"))
    info = run(st, R.Invert(path=str(tmp_path / "photo.png"), steps=5, eta=1.0))
    assert np.array_equal(info.image, pixels(tmp_path / "r.png")) and info.note
    saved = Trajectory.load(tmp_path / "t.safetensors")
    for k in ("x_T", "zs", "hs", "x_0"):
        assert torch.equal(getattr(saved, k), getattr(st.traj, k)), k
    # the file opens in the app to the same image
    again = run(st, R.OpenTrajectory(str(tmp_path / "t.safetensors")))
    assert np.array_equal(again.image, info.image)


def test_direction_deltas_and_regions(app, files, tiny_model_b_dir, tmp_path):
    from hspace_studio.engine import DirectionSet, load_model

    st, h, _ = app
    ds = DirectionSet.load(files / "h.safetensors")
    assert torch.equal(h_delta(ds, 1, st.traj, st.model.weights_fingerprint), st.renderer.delta(h, 1))
    at = h_delta(ds, 1, st.traj, st.model.weights_fingerprint, at_step=2)
    assert torch.equal(at, st.renderer.delta(h, 1, int(st.traj.timesteps[2])))
    assert all(torch.equal(row, ds.delta_h[1, 2]) for row in at)
    other = load_model(str(tiny_model_b_dir), device="cpu")
    with pytest.raises(ModelMismatchError, match="mine.safetensors"):
        h_delta(ds, 0, st.traj, other.weights_fingerprint, name="mine.safetensors")
    st.traj.save(tmp_path / "t.safetensors")
    assert torch.equal(open_trajectory(st.model, tmp_path / "t.safetensors", "after").x_0, st.traj.x_0)
    with pytest.raises(ModelMismatchError, match="'before'"):
        open_trajectory(st.model, tmp_path / "t.safetensors", "before")
    with pytest.raises(ValueError, match="empty"):
        mask_region(st.model, np.zeros((16, 16), bool))
    r = mask_region(st.model, np.eye(16, dtype=bool), free_steps=-3)
    assert r.free_steps == 0 and tuple(r.weights.shape[-2:]) == (16, 16)
    assert region_entry(2, mask="m.png") == {"mask": "m.png", "free_steps": 2}
    assert region_entry(1, parts=["mouth"], grow=3, segmenter="default") == {
        "parts": ["mouth"], "grow": 3, "free_steps": 1}
    assert region_entry(1, parts=["mouth"], segmenter="p.pt")["segmenter"] == "p.pt"


def test_previews_and_strips_without_qt(app):
    st, h, _ = app
    edits = (R.EditItem(h, 0, 2.0),)
    sent = []
    assert run_preview(st, R.PreviewRequest(1, edits), CancelToken(), sent.append, interval=0.0) == DONE
    *steps, final = sent
    assert steps and all(not r.final and r.image.shape == (16, 16, 3) for r in steps)
    assert final.final and final.error is None and final.steps == STEPS
    assert np.array_equal(final.image, st.renderer.render(edits))
    sent.clear()
    assert run_preview(st, R.PreviewRequest(2, edits, progressive=False), CancelToken(), sent.append) == DONE
    assert len(sent) == 1 and sent[0].final
    # a missing set answers with the app's one-line error
    sent.clear()
    assert run_preview(st, R.PreviewRequest(3, (R.EditItem("gone", 0, 1.0),)), CancelToken(), sent.append) != DONE
    assert sent[-1].final and sent[-1].image is None
    assert sent[-1].error == "that direction set is no longer in the library"
    # superseded: nothing final is sent
    token = CancelToken()
    token.cancel()
    sent.clear()
    assert run_preview(st, R.PreviewRequest(4, (R.EditItem(h, 1, 1.0),)), token, sent.append) == SUPERSEDED
    assert not [r for r in sent if r.final]
    # no image yet: answered without one
    sent.clear()
    assert run_preview(EngineState(), R.PreviewRequest(5, edits), CancelToken(), sent.append) == EMPTY
    assert sent == [PreviewResult(5, None, True, 0.0)]
    # strips
    res = run_strip(st, R.StripRequest(6, R.EditItem(h, 0, 1.0), (-1.0, 0.0, 2.0)), CancelToken())
    assert res.id == 6 and res.error is None and len(res.images) == 3
    assert np.array_equal(res.images[2], final.image) and np.array_equal(res.images[1], st.renderer.render(()))
    with pytest.raises(Cancelled):
        run_strip(st, R.StripRequest(7, R.EditItem(h, 1, 1.0), (1.0,)), token)
    assert run_strip(st, R.StripRequest(8, R.EditItem("gone", 0, 1.0), (1.0,)), CancelToken()).error
    assert run_strip(EngineState(), R.StripRequest(9, R.EditItem(h, 0, 1.0), (1.0,)), CancelToken()) is None


def test_errors_read_the_same_on_the_command_line_and_in_the_app(tiny_model_dir, tmp_path, capsys):
    from hspace_studio.engine import DirectionSet

    missing = tmp_path / "missing.safetensors"
    with pytest.raises(Exception) as caught:
        DirectionSet.load(missing)
    rc = cli(tiny_model_dir, "--direction", missing, "--out", tmp_path / "x.png")
    assert rc == 1 and capsys.readouterr().err.strip().splitlines()[-1] == f"error: {error_message(caught.value)}"
    assert error_message(HSpaceError("one\ntwo")) == "one"
    assert error_message(ValueError()) == "ValueError"
    assert error_message(KeyError("k")) == "unexpected KeyError: 'k'"
    assert error_message(KeyError("k"), APP_ERRORS) == "'k'"
    assert error_message(RuntimeError("boom\nmore")) == "unexpected RuntimeError: boom"


def test_the_supervised_index_is_where_index_file_says(tiny_model_dir, tmp_path, capsys):
    import json

    from hspace_studio.engine import load_model
    from hspace_studio.engine.annotate import load_classifier

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0].mean((1, 2)) * 4, x[:, 2].mean((1, 2)) * 4], 1)

    torch.jit.script(Net()).save(str(tmp_path / "clf.pt"))
    (tmp_path / "names.json").write_text(json.dumps(["red", "blue"]))
    out = tmp_path / "out" / "red.safetensors"
    out.parent.mkdir()
    assert cli_main(["supervised", "--attribute", "red", "--model", str(tiny_model_dir), "--steps", "2",
                     "--classifier", str(tmp_path / "clf.pt"), "--attributes", str(tmp_path / "names.json"),
                     "--index-size", "8", "--examples", "2", "--batch", "4", "--out", str(out)]) == 0
    model = load_model(str(tiny_model_dir), device="cpu")
    clf = load_classifier(str(tmp_path / "clf.pt"), str(tmp_path / "names.json"), device="cpu")
    expected = index_file(out.parent, model, clf, 2, 1.0, "after")
    assert list(out.parent.glob("hspace-index-*.json")) == [expected]
