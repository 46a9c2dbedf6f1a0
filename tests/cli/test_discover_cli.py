"""The discovery commands, in process: exit codes, outputs, recipes, one-line errors."""
import json
import os
import signal
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from hspace_studio.cli import main
from hspace_studio.engine.directions import DirectionSet
from hspace_studio.toyfaces.quality import RESOURCES
from hspace_studio.engine.discover.supervised import AnnotationIndex


@pytest.fixture(scope="module")
def clf_files(tmp_path_factory):
    """A TorchScript classifier with two attributes and its names file."""
    d = tmp_path_factory.mktemp("clf")

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0].mean((1, 2)) * 4, x[:, 2].mean((1, 2)) * 4], 1)

    torch.jit.script(Net()).save(str(d / "clf.pt"))
    (d / "names.json").write_text(json.dumps(["red", "blue"]))
    return str(d / "clf.pt"), str(d / "names.json")


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("error:")


@pytest.fixture(scope="module")
def pcs(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pcs") / "pcs.safetensors"
    assert main(["pca", "--model", str(tiny_model_dir), "--samples", "12", "--components", "3",
                 "--steps", "2", "--batch", "6", "--out", str(out)]) == 0
    return out


def test_pca(pcs, tiny_model_dir, tmp_path, capsys):
    ds = DirectionSet.load(pcs)
    assert ds.method == "pca" and ds.delta_h.shape[:2] == (3, 2) and len(ds.values) == 3
    p = ds.params
    assert p["samples"] == 12 and p["seeds"] == {"start": 0, "count": 12} and p["steps"] == 2
    assert p["eta"] == 1.0 and p["model"] == str(tiny_model_dir) and p["components"] == 3
    g = tmp_path / "g.safetensors"
    rc, out, err = run(["pca", "--model", tiny_model_dir, "--samples", "8", "-k", "2", "--steps", "2",
                        "--mode", "global", "--eta", "0", "--out", g], capsys)
    assert rc == 0 and "PC 0 (global)" in out and "wrote" in err
    assert DirectionSet.load(g).params["mode"] == "global"
    rc, _, err = run(["pca", "--model", tiny_model_dir, "--samples", "4", "-k", "9", "--steps", "2",
                      "--out", tmp_path / "x.safetensors"], capsys)
    assert rc == 1 and one_line_error(err) and "components" in err
    rc, _, err = run(["pca", "--model", tiny_model_dir, "--samples", "4", "--steps", "2",
                      "-k", "2", "--memory-mb", "0.01", "--out", tmp_path / "x.safetensors"], capsys)
    assert rc == 1 and one_line_error(err) and "does not fit" in err
    rc, _, err = run(["pca", "--model", tiny_model_dir, "--samples", "0", "--out", "x"], capsys)
    assert rc == 2 and one_line_error(err)
    assert not (tmp_path / "x.safetensors").exists()


def test_jacobian(tiny_model_dir, tmp_path, capsys):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 3:12] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "j.safetensors"
    rc, text, err = run(["jacobian", "--model", tiny_model_dir, "--seed", "3", "-k", "2", "--steps", "2",
                         "--mask", tmp_path / "mask.png", "--out", out], capsys)
    assert rc == 0, err
    assert "singular values" in text and "iterations" in err
    ds = DirectionSet.load(out)
    assert ds.method == "jacobian" and ds.delta_h.shape[:2] == (2, 2)
    p = ds.params
    assert p["source"]["seed"] == 3 and p["mask"]["path"].endswith("mask.png") and "rle" in p["mask"]
    assert len(p["mask"]["sha256"]) == 64 and p["k"] == 2 and p["convergence"]["iterations"]
    assert np.allclose(np.linalg.norm(ds.delta_h.reshape(4, -1).numpy(), axis=1), 1, atol=1e-5)
    # a saved trajectory and a subset of steps
    traj = tmp_path / "t.safetensors"
    assert main(["sample", "--model", str(tiny_model_dir), "--seed", "4", "--steps", "3",
                 "--out", str(tmp_path / "s.png"), "--trajectory", str(traj)]) == 0
    capsys.readouterr()
    rc, _, err = run(["jacobian", "--model", tiny_model_dir, "--trajectory", traj, "-k", "1",
                      "--steps-subset", "2", "--out", tmp_path / "j2.safetensors"], capsys)
    assert rc == 0, err
    ds2 = DirectionSet.load(tmp_path / "j2.safetensors")
    assert ds2.steps == 1 and ds2.params["source"]["trajectory"] == str(traj)
    assert ds2.params["steps_subset"] == [2]
    # an image, inverted first
    rc, _, err = run(["jacobian", "--model", tiny_model_dir, "--image", tmp_path / "s.png", "-k", "1",
                      "--steps", "2", "--steps-subset", "1", "--out", tmp_path / "j3.safetensors"], capsys)
    assert rc == 0, err
    assert DirectionSet.load(tmp_path / "j3.safetensors").params["source"]["image"].endswith("s.png")
    # bad input: one line, non-zero
    for argv in (["--seed", "1", "--mask", tmp_path / "none.png"],
                 ["--seed", "1", "--steps-subset", "9"],
                 ["--trajectory", tmp_path / "mask.png"]):
        rc, _, err = run(["jacobian", "--model", tiny_model_dir, "--steps", "2", *argv,
                          "--out", tmp_path / "bad.safetensors"], capsys)
        assert rc == 1 and one_line_error(err), err
    rc, _, err = run(["jacobian", "--model", tiny_model_dir, "--out", tmp_path / "bad.safetensors"], capsys)
    assert rc == 2 and one_line_error(err)
    assert not (tmp_path / "bad.safetensors").exists()


def test_supervised(tiny_model_dir, clf_files, tmp_path, capsys):
    clf, names = clf_files
    out = tmp_path / "red.safetensors"
    common = ["--model", tiny_model_dir, "--steps", "2", "--classifier", clf, "--attributes", names,
              "--index-size", "12", "--examples", "3", "--batch", "6"]
    rc, _, err = run(["supervised", "--attribute", "red", *common, "--out", out], capsys)
    assert rc == 0, err
    idx = list(tmp_path.glob("hspace-index-*.json"))
    assert len(idx) == 1 and len(AnnotationIndex.load(idx[0])) == 12
    ds = DirectionSet.load(out)
    assert ds.method == "supervised" and ds.labels == ["red"] and ds.values[0][0] > 0
    assert ds.params["classifier"]["name"] == "torchscript:clf.pt" and ds.params["examples"] == 3
    assert len(ds.params["positive_seeds"]) == 3 and ds.params["index"] == str(idx[0])
    # the same index serves another attribute, disentangled from the first
    rc, _, err = run(["supervised", "--attribute", "blue", "--against", "red", *common,
                      "--index", idx[0], "--out", tmp_path / "blue.safetensors"], capsys)
    assert rc == 0, err
    blue = DirectionSet.load(tmp_path / "blue.safetensors")
    assert blue.labels == ["blue ⟂ red"]
    assert abs(float((blue.delta_h[0] * ds.delta_h[0]).sum())) < 1e-4 * float(ds.delta_h[0].norm()) * \
        float(blue.delta_h[0].norm())
    # labelled folders
    for name in ("pos", "neg"):
        (tmp_path / name).mkdir()
        for i in range(2):
            arr = np.full((16, 16, 3), 60 * i + (150 if name == "pos" else 20), np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    rc, _, err = run(["supervised", "--model", tiny_model_dir, "--steps", "2", "--positive", tmp_path / "pos",
                      "--negative", tmp_path / "neg", "--attribute", "light",
                      "--out", tmp_path / "light.safetensors"], capsys)
    assert rc == 0, err
    light = DirectionSet.load(tmp_path / "light.safetensors")
    assert light.params["source"] == "labelled-images" and light.values is None
    # bad input
    bad = tmp_path / "bad.safetensors"
    for argv in (["--attribute", "green", *common],
                 ["--attribute", "red", *common, "--examples", "7"],
                 ["--attribute", "red", "--model", tiny_model_dir, "--classifier", clf],
                 ["--positive", tmp_path / "pos", "--model", tiny_model_dir],
                 ["--attribute", "red", *common[:-6], "--classifier", tmp_path / "missing.pt"]):
        rc, _, err = run(["supervised", *argv, "--out", bad], capsys)
        assert rc == 1 and one_line_error(err), (argv, err)
    assert not bad.exists()


def test_supervised_optimize(tiny_model_b_dir, clf_files, tmp_path, capsys):
    clf, names = clf_files
    out = tmp_path / "red-opt.safetensors"
    common = ["--model", tiny_model_b_dir, "--steps", "2", "--classifier", clf, "--attributes", names]
    rc, _, err = run(["supervised", "--attribute", "red", *common, "--optimize", "3", "--train-samples", "4",
                      "--seed-start", "5", "--batch", "2", "--out", out], capsys)
    assert rc == 0, err
    assert "red (optimised, 3 iterations" in err and "wrote" in err
    ds = DirectionSet.load(out)
    assert ds.method == "supervised" and ds.labels == ["red (optimised)"]
    p = ds.params
    assert p["source"] == "optimized" and p["seeds"] == {"start": 5, "count": 4} and p["iterations"] == 3
    assert p["model"] == str(tiny_model_b_dir) and p["keep"] == 30.0 and p["lr"] == 0.25
    assert float(ds.delta_h.abs().max()) > 0
    # by default the change is fitted at the last 70% of the schedule only (timesteps 699..0)
    assert p["window"] == [699, 0] and not p["shared"] and p["still"] == 0.0
    late = ds.timesteps <= 699
    assert 0 < int(late.sum()) < len(late)
    assert float(ds.delta_h[0, ~late].abs().max()) == 0 and float(ds.delta_h[0, late].abs().max()) > 0
    rc, _, err = run(["supervised", "--attribute", "red", *common, "--optimize", "1", "--batch", "2",
                      "--window", "999:0", "--shared", "--per-channel", "--still", "2", "--out",
                      tmp_path / "all.safetensors"],
                     capsys)
    assert rc == 0, err
    every = DirectionSet.load(tmp_path / "all.safetensors")
    assert every.params["window"] == [999, 0] and every.params["shared"] and every.params["still"] == 2.0
    assert torch.equal(every.delta_h[0, 0], every.delta_h[0, 1]) and float(every.delta_h.abs().max()) > 0
    assert every.params["per_channel"] and torch.equal(every.delta_h, every.delta_h[..., :1, :1].expand_as(every.delta_h))
    # a region: a mask in image pixels limits the change to the positions of h it meets
    from PIL import Image
    size = ds.delta_h.shape[-1] * 4  # any resolution: the mask is laid over the image
    mask = Image.new("L", (size, size), 0)
    mask.putpixel((0, 0), 255)
    mask.save(tmp_path / "corner.png")
    rc, _, err = run(["supervised", "--attribute", "red", *common, "--optimize", "1", "--batch", "2",
                      "--region", tmp_path / "corner.png", "--free", "blue", "--out", tmp_path / "corner.safetensors"], capsys)
    assert rc == 0, err
    corner = DirectionSet.load(tmp_path / "corner.safetensors")
    assert corner.params["region_cells"] == 1 and corner.params["free"] == ["blue"]
    assert float(corner.delta_h[..., 0, 0].abs().max()) > 0
    corner.delta_h[..., 0, 0] = 0
    assert float(corner.delta_h.abs().max()) == 0
    # kept in a mask: the fit decodes its edits as edit --region does, and says how to apply it
    rc, _, err = run(["supervised", "--attribute", "red", *common, "--optimize", "1", "--batch", "2",
                      "--keep-in", tmp_path / "corner.png", "--free-steps", "0", "--out",
                      tmp_path / "kept.safetensors"], capsys)
    assert rc == 0, err
    assert f"edit --region {tmp_path / 'corner.png'} --free-steps 0" in err
    kept = DirectionSet.load(tmp_path / "kept.safetensors").params["kept_in"]
    assert kept["free_steps"] == 0 and kept["pixels"] >= 1
    assert corner.params["kept_in"] is None
    # by default every iteration takes fresh samples: ITERS x BATCH seeds
    rc, _, err = run(["supervised", "--attribute", "red", *common, "--optimize", "2", "--batch", "3",
                      "--out", tmp_path / "fresh.safetensors"], capsys)
    assert rc == 0, err
    assert DirectionSet.load(tmp_path / "fresh.safetensors").params["seeds"] == {"start": 0, "count": 6}
    # the file edits like any direction file
    rc, _, err = run(["edit", "--model", tiny_model_b_dir, "--seed", "1", "--steps", "2", "--direction", out,
                      "--scale", "1", "--out", tmp_path / "e.png"], capsys)
    assert rc == 0, err
    bad = tmp_path / "bad.safetensors"
    for argv, code in ((["--attribute", "red", *common, "--optimize", "--against", "blue"], 1),
                       (["--attribute", "red", *common, "--optimize", "--positive", tmp_path, "--negative",
                         tmp_path], 1),
                       (["--attribute", "green", *common, "--optimize", "1"], 1),
                       (["--attribute", "red", *common, "--optimize", "0"], 2),
                       (["--attribute", "red", *common, "--optimize", "--keep", "nan"], 2),
                       (["--attribute", "red", *common, "--optimize", "1", "--window", "1"], 2),
                       (["--attribute", "red", *common, "--optimize", "1", "--window", "5000:4000"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--region", tmp_path / "no.png"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--region", out], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--free", "nose"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--keep-in", tmp_path / "no.png"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--free-steps", "2"], 1),
                       (["--attribute", "red", *common, "--keep-in", tmp_path / "corner.png"], 1),
                       (["--attribute", "red", *common, "--keep-in-part", "mouth"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--keep-in", tmp_path / "corner.png",
                         "--keep-in-part", "mouth"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--keep-in-part", "tail"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--part-check", "2"], 1),
                       (["--attribute", "red", *common, "--part-check", "2"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--part-check", "-1"], 2),
                       (["--attribute", "red", *common, "--optimize", "1", "--hair-colour", "2"], 1),
                       (["--attribute", "red", *common, "--hair-colour", "2"], 1),
                       (["--attribute", "red", *common, "--outside-hair", "2"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--outside-hair", "-2"], 2),
                       (["--attribute", "red", *common, "--skip", "green"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--skip", "nose"], 1),
                       (["--attribute", "red", *common, "--optimize", "1", "--skip", "red"], 1),
                       (["--attribute", "red", *common, "--window", "999:0", "--shared"], 1)):
        rc, _, err = run(["supervised", *argv, "--out", bad], capsys)
        assert rc == code and one_line_error(err), (argv, err)
    assert not bad.exists()


@pytest.mark.skipif(not (RESOURCES / "default-model").is_dir(), reason="default model not trained yet")
def test_supervised_optimize_with_the_segmenter_part_check(tmp_path, capsys):
    """On the default model, --part-check fits with the shipped segmenter's check of the
    attribute's part and records it."""
    out = tmp_path / "smile.safetensors"
    rc, _, err = run(["supervised", "--attribute", "smiling", "--steps", "2", "--optimize", "1", "--batch", "2",
                      "--part-check", "2", "--out", out], capsys)
    assert rc == 0, err
    ds = DirectionSet.load(out)
    assert ds.params["part_term"] == {"name": "toy-face segmenter part check", "weight": 2.0}
    assert float(ds.delta_h.abs().max()) > 0
    # a hair colour with the pull to its palette colour, bald heads left out
    hair = tmp_path / "blond.safetensors"
    rc, _, err = run(["supervised", "--attribute", "blond_hair", "--steps", "2", "--optimize", "1", "--batch", "4",
                      "--part-check", "2", "--hair-colour", "3", "--outside-hair", "5", "--skip", "bald",
                      "--out", hair], capsys)
    assert rc == 0, err
    params = DirectionSet.load(hair).params
    assert params["part_term"] == {"name": "toy-face segmenter part check x2 + hair pulled to its palette colour x3"
                                           " + pixels outside the hair held x5", "weight": 1.0}
    assert params["skip"] == ["bald"]
    rc, _, err = run(["supervised", "--attribute", "smiling", "--steps", "2", "--optimize", "1",
                      "--hair-colour", "3", "--out", tmp_path / "no.safetensors"], capsys)
    assert rc == 1 and "--hair-colour" in err and "blond_hair" in err and one_line_error(err)
    rc, _, err = run(["supervised", "--attribute", "smiling", "--steps", "2", "--optimize", "1",
                      "--outside-hair", "3", "--out", tmp_path / "no.safetensors"], capsys)
    assert rc == 1 and "--outside-hair" in err and "blond_hair" in err and one_line_error(err)

    # kept in each sample's own mouth, then applied with that image's own mouth
    own = tmp_path / "own.safetensors"
    rc, _, err = run(["supervised", "--attribute", "smiling", "--steps", "2", "--optimize", "1", "--batch", "2",
                      "--keep-in-part", "mouth", "--grow", "2", "--out", own], capsys)
    assert rc == 0, err
    assert DirectionSet.load(own).params["kept_in"] == {"per_sample": True, "free_steps": 1, "parts": ["mouth"],
                                                        "grow": 2}
    assert "edit --region-from default:mouth --grow 2 --free-steps 1" in err
    from hspace_studio.engine import load_model
    from hspace_studio.engine.images import load_image, read_recipe
    from hspace_studio.toyfaces.part_checks import shipped_checker

    plain, kept = tmp_path / "plain.png", tmp_path / "kept.png"
    assert run(["sample", "--seed", "7", "--steps", "2", "--out", plain], capsys)[0] == 0
    rc, _, err = run(["edit", "--seed", "7", "--steps", "2", "--direction", own, "--out", tmp_path / "free.png"],
                     capsys)  # applied without the region: edit says how the fit meant it
    assert rc == 0 and "add --region-from default:mouth --grow 2 --free-steps 1" in err
    rc, _, err = run(["edit", "--seed", "7", "--steps", "2", "--direction", own, "--scale", "8",
                      "--region-part", "mouth", "--free-steps", "0", "--out", kept], capsys)
    assert rc == 0, err
    a, _ = load_image(plain, (64, 64))
    b, _ = load_image(kept, (64, 64))
    zone = shipped_checker().own_region(["mouth"], 3, (64, 64))(load_model("default").to_pixels(
        torch.stack([a])).clamp(-1, 1)).weights[0, 0] > 0
    changed = (a - b).abs().amax(0) > 1 / 127.5
    assert bool(changed.any()) and not bool(changed[~zone].any())  # only inside the image's own mouth
    assert read_recipe(kept)["region"] == {"parts": ["mouth"], "grow": 3, "free_steps": 0}
    rc, _, err = run(["edit", "--seed", "7", "--steps", "2", "--direction", own, "--region-part", "mouth",
                      "--region", plain, "--out", tmp_path / "x.png"], capsys)
    assert rc == 1 and one_line_error(err) and not (tmp_path / "x.png").exists()


def test_disentangle(pcs, tiny_model_b_dir, tmp_path, capsys):
    out = tmp_path / "d.safetensors"
    rc, _, err = run(["disentangle", f"{pcs}:0", "--against", f"{pcs}:1", f"{pcs}:2", "--out", out], capsys)
    assert rc == 0, err
    ds = DirectionSet.load(out)
    src = DirectionSet.load(pcs)
    assert ds.method == "disentangled" and len(ds) == 1 and ds.labels[0] == "PC 0 ⟂ PC 1, PC 2"
    for j in (1, 2):
        assert abs(float((ds.delta_h[0].double() * src.delta_h[j].double()).sum())) < 1e-6
    assert ds.params["against"][0]["index"] == 1 and ds.params["target"]["indices"] == [0]
    # a file without :INDEX means all of its directions; per step
    rc, _, err = run(["disentangle", pcs, "--against", f"{pcs}:0", "--per-step",
                      "--out", tmp_path / "all.safetensors"], capsys)
    assert rc == 1 and "span" in err and one_line_error(err)  # PC 0 against itself: nothing left
    rc, _, err = run(["disentangle", f"{pcs}:1", "--against", pcs, "--out", tmp_path / "z.safetensors"],
                     capsys)
    assert rc == 1 and one_line_error(err)
    # other model, bad index, missing file
    other = tmp_path / "other.safetensors"
    assert main(["pca", "--model", str(tiny_model_b_dir), "--samples", "4", "-k", "1", "--steps", "2",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    for argv in ([pcs, "--against", other], [f"{pcs}:7", "--against", f"{pcs}:1"],
                 [tmp_path / "none.safetensors", "--against", pcs]):
        rc, _, err = run(["disentangle", *argv, "--out", tmp_path / "bad.safetensors"], capsys)
        assert rc == 1 and one_line_error(err), err
    assert not (tmp_path / "bad.safetensors").exists()


def test_name(pcs, tiny_model_dir, clf_files, tmp_path, capsys):
    clf, names = clf_files
    out = tmp_path / "named.safetensors"
    rc, text, err = run(["name", pcs, "--model", tiny_model_dir, "--classifier", clf, "--attributes", names,
                         "--samples", "2", "--scales", "-3", "3", "--min-change", "0", "--out", out], capsys)
    assert rc == 0, err
    lines = text.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("PC 0: ")
    assert any(a in lines[0] for a in ("red", "blue"))
    ds = DirectionSet.load(out)
    assert all(lbl.startswith(f"PC {i}: ") for i, lbl in enumerate(ds.labels))
    assert ds.params["naming"]["results"][0]["scales"] == [-3.0, 3.0]
    rc, text, _ = run(["name", f"{pcs}:1", "--model", tiny_model_dir, "--classifier", clf,
                       "--attributes", names, "--samples", "1", "--scales=-2,2"], capsys)
    assert rc == 0 and len(text.strip().splitlines()) == 1 and text.startswith("PC 1")
    rc, _, err = run(["name", pcs, "--model", tiny_model_dir, "--classifier", clf], capsys)
    assert rc == 1 and one_line_error(err) and "--attributes" in err


def test_ctrl_c_leaves_no_file(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "pcs.safetensors"
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        rc = main(["pca", "--model", str(tiny_model_dir), "--samples", "5000", "--steps", "10",
                   "--batch", "4", "--out", str(out)])
    finally:
        timer.cancel()
    _, err = capsys.readouterr()
    assert rc == 130 and "cancelled" in err
    assert list(tmp_path.iterdir()) == []


def test_edit_hints_how_a_kept_in_fit_is_applied(tmp_path):
    from hspace_studio.cli.edit_cmd import kept_in_hints

    def save(name, params):
        ds = DirectionSet(delta_h=torch.zeros(1, 2, 1, 1, 1), timesteps=torch.tensor([9, 0]),
                          fingerprint="f", h_space="after", params=params)
        ds.save(tmp_path / name)
        return tmp_path / name

    plain = save("plain.safetensors", {"attribute": "smiling"})
    mask = save("mask.safetensors", {"kept_in": {"pixels": 40, "free_steps": 0}})
    own = save("own.safetensors", {"kept_in": {"per_sample": True, "free_steps": 1, "parts": ["left_eye", "right_eye"],
                                               "grow": 2}})
    odd = save("odd.safetensors", {"kept_in": {"parts": 7, "grow": "x"}})  # hand-edited: no note, no error
    def read(*paths):
        return [(p, DirectionSet.load(p).params) for p in paths]

    assert kept_in_hints(read(plain, odd)) == []
    (m,) = kept_in_hints(read(mask, mask))  # one line per file
    assert "--region MASK.png --free-steps 0" in m
    (o,) = kept_in_hints(read(own))
    assert "--region-from default:left_eye,right_eye --grow 2 --free-steps 1" in o
