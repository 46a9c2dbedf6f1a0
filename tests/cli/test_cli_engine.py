"""The sample, invert and edit commands, in-process, as a user runs them."""
import torch
import pytest

from hspace_studio.cli import main
from hspace_studio.engine import DirectionSet, Trajectory, load_model
from hspace_studio.engine.images import load_image, read_recipe


@pytest.fixture(scope="module")
def dirs_file(tiny_model_dir, tmp_path_factory):
    from hspace_studio.engine import sample

    m = load_model(str(tiny_model_dir), device="cpu")
    t = sample(m, [0], steps=10)[0]
    g = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("d") / "d.safetensors"
    DirectionSet(delta_h=torch.randn((2, *t.hs.shape), generator=g), timesteps=t.timesteps,
                 fingerprint=m.fingerprint, h_space="after", method="pca").save(path)
    return path


def _run(*args):
    return main([str(a) for a in args])


def test_sample_writes_image_and_trajectory(tiny_model_dir, tmp_path):
    rc = _run("sample", "--seed", 3, "--model", tiny_model_dir, "--steps", 5, "--eta", 0.5,
              "--out", tmp_path / "s.png", "--trajectory", tmp_path / "t.safetensors")
    assert rc == 0
    t = Trajectory.load(tmp_path / "t.safetensors")
    assert t.steps == 5 and t.origin["seed"] == 3
    rec = read_recipe(tmp_path / "s.png")
    assert rec["source"]["seed"] == 3 and rec["fingerprint"] == t.fingerprint


def test_progress_goes_to_a_log_as_plain_lines(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """With stderr not a terminal (here captured), a job writes plain progress lines, at most
    one per PLAIN_PROGRESS_EVERY_S seconds: none at the default for a short job, one per step
    at 0."""
    import re

    from hspace_studio.cli import common

    assert _run("sample", "--seed", 3, "--model", tiny_model_dir, "--steps", 5, "--out", tmp_path / "a.png") == 0
    assert "after" not in capsys.readouterr().err
    monkeypatch.setattr(common, "PLAIN_PROGRESS_EVERY_S", 0.0)
    assert _run("sample", "--seed", 3, "--model", tiny_model_dir, "--steps", 5, "--out", tmp_path / "b.png") == 0
    lines = re.findall(r"(\d+)/(\d+) \((\d+)%\) after \d+ s", capsys.readouterr().err)
    assert len(lines) >= 5 and lines[-1][0] == lines[-1][1] and lines[-1][2] == "100"
    assert [int(d) for d, _, _ in lines] == sorted(int(d) for d, _, _ in lines)


def test_edit_from_seed_equals_edit_from_saved_trajectory(tiny_model_dir, dirs_file, tmp_path):
    assert _run("sample", "--seed", 4, "--model", tiny_model_dir, "--out", tmp_path / "s.png",
                "--trajectory", tmp_path / "t.safetensors") == 0
    common = ["--model", tiny_model_dir, "--direction", f"{dirs_file}:1", "--scale", 2,
              "--window", "999:400"]
    assert _run("edit", "--seed", 4, *common, "--out", tmp_path / "a.png") == 0
    assert _run("edit", "--trajectory", tmp_path / "t.safetensors", *common, "--out", tmp_path / "b.png") == 0
    a, _ = load_image(tmp_path / "a.png", (16, 16))
    b, _ = load_image(tmp_path / "b.png", (16, 16))
    s, _ = load_image(tmp_path / "s.png", (16, 16))
    assert torch.equal(a, b) and not torch.equal(a, s)
    rec = read_recipe(tmp_path / "a.png")
    assert rec["edits"][0]["index"] == 1 and rec["edits"][0]["window"] == [999, 400]


def test_several_directions_and_strip(tiny_model_dir, dirs_file, tmp_path):
    assert _run("edit", "--seed", 1, "--model", tiny_model_dir, "--direction", f"{dirs_file}:0",
                "--scale", 1, "--direction", f"{dirs_file}:1", "--scale", -1, "--at-step", 2,
                "--out", tmp_path / "m.png") == 0
    assert _run("edit", "--seed", 1, "--model", tiny_model_dir, "--direction", dirs_file,
                "--strip=-2,0,2", "--out", tmp_path / "strip.png") == 0
    from PIL import Image

    assert Image.open(tmp_path / "strip.png").size == (3 * 16 + 2 * 2, 16)


def test_invert_then_edit(tiny_model_dir, dirs_file, tmp_path):
    from PIL import Image
    import numpy as np

    Image.fromarray((np.random.default_rng(0).random((40, 50, 4)) * 255).astype("uint8"), "RGBA").save(
        tmp_path / "photo.png")
    assert _run("invert", "--image", tmp_path / "photo.png", "--model", tiny_model_dir,
                "--trajectory", tmp_path / "t.safetensors", "--out", tmp_path / "r.png") == 0
    x, _ = load_image(tmp_path / "photo.png", (16, 16))
    r, _ = load_image(tmp_path / "r.png", (16, 16))
    assert (x - r).abs().max() <= 2 / 255 + 1e-6  # exact up to 8-bit rounding
    assert _run("edit", "--image", tmp_path / "photo.png", "--model", tiny_model_dir,
                "--direction", dirs_file, "--scale", 1, "--out", tmp_path / "e.png") == 0


@pytest.mark.parametrize("args,pattern", [
    (["sample", "--out", "x.png"], "required"),
    (["sample", "--seed", "abc", "--out", "x.png"], "invalid int"),
    (["sample", "--seed", "1", "--steps", "0", "--out", "x.png"], "positive"),
    (["sample", "--seed", "1", "--eta", "-1", "--out", "x.png"], "eta"),
    (["edit", "--seed", "1", "--scale", "2", "--out", "x.png"], "must follow a --direction"),
    (["edit", "--seed", "1", "--direction", "missing.safetensors", "--out", "x.png", "--model", "MODEL"],
     "not found"),
    (["invert", "--image", "nope.png", "--trajectory", "t.st", "--out", "r.png", "--model", "MODEL"],
     "not found"),
    (["sample", "--seed", "1", "--model", "/no/such/folder", "--out", "x.png"], "no model folder"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_nonzero(tiny_model_dir, capsys, args, pattern):
    args = [str(tiny_model_dir) if a == "MODEL" else a for a in args]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len([l for l in err if l.startswith("error")]) == 1 and "Traceback" not in "\n".join(err)
    assert pattern in err[-1]


def test_direction_for_another_model_is_rejected(tiny_model_dir, tiny_model_b_dir, dirs_file, tmp_path, capsys):
    rc = main(["edit", "--seed", "1", "--model", str(tiny_model_b_dir), "--direction", str(dirs_file),
               "--out", str(tmp_path / "x.png")])
    assert rc == 1 and "made for model" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_edit_with_region_keeps_the_outside(tiny_model_dir, dirs_file, tmp_path):
    import numpy as np
    from PIL import Image

    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 3:12] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert _run("sample", "--seed", 5, "--model", tiny_model_dir, "--out", tmp_path / "s.png") == 0
    common = ["--seed", 5, "--model", tiny_model_dir, "--direction", dirs_file, "--scale", 3]
    assert _run("edit", *common, "--region", tmp_path / "m.png", "--free-steps", 0,
                "--out", tmp_path / "r.png") == 0
    s, _ = load_image(tmp_path / "s.png", (16, 16))
    r, _ = load_image(tmp_path / "r.png", (16, 16))
    inside = torch.from_numpy(mask > 0)
    assert torch.equal(r[:, ~inside], s[:, ~inside]) and not torch.equal(r[:, inside], s[:, inside])
    assert read_recipe(tmp_path / "r.png")["region"]["free_steps"] == 0
    assert _run("edit", *common, "--region", tmp_path / "missing.png", "--out", tmp_path / "x.png") != 0
    assert not (tmp_path / "x.png").exists()


def test_eta_schedule_spec_on_the_command_line(tiny_model_dir, tmp_path):
    """--eta last:0.4 puts eta 1 on the last 40% of the steps; the recipe replays it."""
    from PIL import Image
    import numpy as np

    from hspace_studio.core.recipe import recipe_to_cli_args

    assert _run("sample", "--seed", 1, "--model", tiny_model_dir, "--steps", 5, "--eta", "last:0.4",
                "--out", tmp_path / "e.png", "--trajectory", tmp_path / "e.safetensors") == 0
    assert Trajectory.load(tmp_path / "e.safetensors").etas.tolist() == [0, 0, 0, 1, 1]
    assert main(recipe_to_cli_args(read_recipe(tmp_path / "e.png"), str(tmp_path / "again.png"))) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "e.png")), np.asarray(Image.open(tmp_path / "again.png")))
    assert _run("sample", "--seed", 1, "--model", tiny_model_dir, "--eta", "middle:0.4", "--out", tmp_path / "x.png") == 1


def test_replay_makes_an_exported_image_again_and_refuses_other_pngs(tiny_model_dir, tmp_path):
    import numpy as np
    from PIL import Image

    from hspace_studio.cli import main

    out = tmp_path / "s.png"
    assert main(["sample", "--model", str(tiny_model_dir), "--seed", "5", "--steps", "4", "--out", str(out)]) == 0
    assert main(["replay", str(out), "--out", str(tmp_path / "again.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(out)))
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    assert main(["replay", str(tmp_path / "photo.png"), "--out", str(tmp_path / "x.png")]) != 0


def test_a_grid_recipe_has_no_single_command():
    import pytest

    from hspace_studio.core.recipe import recipe_to_cli_args

    grid = {"model": "default", "h_space": "after", "source": {"seed": 1, "steps": 4, "eta": 1.0}, "edits": [],
            "grid": [{"edits": [{"direction": "d.safetensors", "index": 0, "scale": 1.0}], "strip": [-1.0, 1.0]}]}
    with pytest.raises(ValueError, match="replay"):
        recipe_to_cli_args(grid, "out.png")
