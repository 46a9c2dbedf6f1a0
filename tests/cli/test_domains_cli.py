"""The command line with a domain: presets of supervised --optimize (listed from the domain,
overridden by explicit options, replayed from the file's recorded command), the default
model and the domain's own commands, --domain / $HSPACE_DOMAIN, and a missing shipped
network's hint."""
import dataclasses
import importlib.util

import pytest
import torch

from hspace_studio.cli import commands, main
from hspace_studio.engine.directions import DirectionSet
from hspace_studio.engine.domain import GENERIC, Domain, Preset, active_domain, use_domain
from hspace_studio.toyfaces.domain import TOY_FACES
from tests.cli.test_discover_cli import clf_files, one_line_error, run  # noqa: F401  (clf_files: a fixture)


@pytest.fixture
def in_domain():
    """use(domain): make it the active domain for the test; the one before it comes back."""
    before = active_domain()
    yield use_domain
    use_domain(before)


REDDER = Preset("redder", "red: 3 iterations at every step, blue free, a light hold on the pixels",
                {"optimize": 3, "keep": 5.0, "window": "all", "free": ["blue"], "still": 1.0},
                attributes=("red",))


def test_list_presets_comes_from_the_active_domain(in_domain, capsys):
    rc, out, _ = run(["supervised", "--list-presets"], capsys)
    assert rc == 0
    assert [ln.split(":")[0] for ln in out.splitlines()] == [p.name for p in TOY_FACES.presets]
    assert "hair-colour: " in out and "smiling: " in out
    in_domain(Domain("mine", presets=[REDDER]))
    rc, out, _ = run(["supervised", "--list-presets"], capsys)
    assert rc == 0 and out == f"redder: {REDDER.description}\n"
    rc, out, err = run(["--domain", "generic", "supervised", "--list-presets", "--list-terms"], capsys)
    assert rc == 0 and out == "" and "the generic domain has no presets" in err and "no fit terms" in err
    assert active_domain().name == "mine"  # --domain held for the one command only


def test_a_preset_sets_options_explicit_ones_override_and_the_file_replays(
        in_domain, tiny_model_b_dir, clf_files, tmp_path, capsys):
    in_domain(Domain("mine", presets=[REDDER]))
    clf, names = clf_files
    common = ["--model", tiny_model_b_dir, "--steps", "2", "--classifier", clf, "--attributes", names,
              "--batch", "2", "--attribute", "red"]
    out = tmp_path / "preset.safetensors"
    # --optimize 1 and --keep 30 (the value it has without a preset) override the preset's 3 and 5
    rc, _, err = run(["supervised", *common, "--preset", "redder", "--optimize", "1", "--keep", "30",
                      "--out", out], capsys)
    assert rc == 0, err
    ds = DirectionSet.load(out)
    p = ds.params
    assert p["iterations"] == 1 and p["keep"] == 30.0  # explicit
    assert p["window"] == [999, 0] and p["free"] == ["blue"] and p["still"] == 1.0  # the preset's
    assert p["preset"] == {"name": "redder", "options": {"optimize": 3, "keep": 5.0, "window": "all",
                                                         "free": ["blue"], "still": 1.0}}
    cmd = p["command"]
    assert cmd[0] == "supervised" and "--preset" not in " ".join(cmd)
    for arg in ("--optimize=1", "--keep=30.0", "--window=all", "--still=1.0", "--attribute=red"):
        assert arg in cmd, (arg, cmd)
    assert cmd[cmd.index("--free") + 1] == "blue" and f"--model={tiny_model_b_dir}" in cmd
    # the recorded command makes the same direction without the preset
    again = tmp_path / "again.safetensors"
    rc, _, err = run([*cmd, "--out", again], capsys)
    assert rc == 0, err
    replayed = DirectionSet.load(again)
    assert torch.equal(replayed.delta_h, ds.delta_h)
    assert "preset" not in replayed.params and replayed.params["command"] == cmd
    # ... and so does a recipe written before presets, with the options spelled out
    old = tmp_path / "old.safetensors"
    rc, _, err = run(["supervised", *common, "--optimize", "1", "--window", "999:0", "--free", "blue",
                      "--still", "1", "--out", old], capsys)
    assert rc == 0, err
    assert torch.equal(DirectionSet.load(old).delta_h, ds.delta_h)
    # refusals: an attribute the preset is not for, a preset the domain lacks, no attribute
    bad = tmp_path / "bad.safetensors"
    for argv, words in ((["--attribute", "blue", "--preset", "redder"], "is for red"),
                        (["--attribute", "red", "--preset", "bluer"], "no preset bluer in the mine domain (it has: redder)"),
                        (["--preset", "redder"], "needs --attribute")):
        rc, _, err = run(["supervised", "--model", tiny_model_b_dir, "--classifier", clf, "--attributes", names,
                          *argv, "--out", bad], capsys)
        assert rc == 1 and one_line_error(err) and words in err, (argv, err)
    assert not bad.exists()


def test_a_toy_preset_on_the_toy_classifier_and_segmenter(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "smile.safetensors"
    rc, _, err = run(["supervised", "--model", tiny_model_dir, "--steps", "2", "--batch", "2", "--attribute",
                      "smiling", "--preset", "smiling", "--optimize", "1", "--out", out], capsys)
    assert rc == 0, err
    ds = DirectionSet.load(out)
    assert ds.params["part_term"] == {"name": "toy-face segmenter part check", "weight": 16.0}
    assert ds.params["preset"]["name"] == "smiling" and ds.params["iterations"] == 1
    cmd = ds.params["command"]
    assert cmd[:3] == ["--domain", "toyfaces", "supervised"] and "--term=part-check=16.0" in cmd
    rc, _, err = run([*cmd, "--out", tmp_path / "again.safetensors"], capsys)
    assert rc == 0, err
    assert torch.equal(DirectionSet.load(tmp_path / "again.safetensors").delta_h, ds.delta_h)
    # a term set to 0 beside the preset leaves it out
    rc, _, err = run(["supervised", "--model", tiny_model_dir, "--steps", "2", "--batch", "2", "--attribute",
                      "smiling", "--preset", "smiling", "--optimize", "1", "--part-check", "0", "--out",
                      tmp_path / "plain.safetensors"], capsys)
    assert rc == 0, err
    assert DirectionSet.load(tmp_path / "plain.safetensors").params["part_term"] is None
    # the recolouring is for hair colours; it frees the other ones
    opts = TOY_FACES.preset("hair-colour").expand("red_hair")
    assert sorted(opts["free"]) == ["black_hair", "blond_hair", "grey_hair"] and opts["skip"] == ["bald"]
    assert opts["terms"] == {"hair-colour": 48.0, "outside-hair": 16.0} and opts["keep_in_part"] == ["hair"]
    assert TOY_FACES.preset("hair-colour").expand("blond_hair")["terms"]["part-check"] == 16.0
    rc, _, err = run(["supervised", "--attribute", "smiling", "--preset", "hair-colour", "--out",
                      tmp_path / "no.safetensors"], capsys)
    assert rc == 1 and one_line_error(err) and "is for black_hair" in err


def test_the_generic_domain_asks_for_files(tiny_model_dir, tmp_path, capsys, monkeypatch):
    before = active_domain()
    out = tmp_path / "x.safetensors"
    fit = ["supervised", "--model", tiny_model_dir, "--steps", "2", "--attribute", "smiling", "--optimize", "1",
           "--out", out]
    rc, _, err = run(["--domain", "generic", *fit], capsys)
    assert rc == 1 and one_line_error(err), err
    assert "generic domain has no default classifier" in err and "--classifier" in err
    rc, _, err = run(["--domain", "generic", "sample", "--seed", "1", "--out", tmp_path / "x.png"], capsys)
    assert rc == 1 and one_line_error(err) and "generic domain has no default model" in err
    rc, _, err = run(["--domain", "generic", "evaluate"], capsys)  # a command of the toy faces only
    assert rc == 2 and one_line_error(err) and "invalid choice: 'evaluate'" in err
    monkeypatch.setenv("HSPACE_DOMAIN", "generic")
    rc, _, err = run(fit, capsys)
    assert rc == 1 and "generic domain has no default classifier" in err
    monkeypatch.setenv("HSPACE_DOMAIN", "nowhere")
    rc, _, err = run(fit, capsys)
    assert rc == 1 and one_line_error(err) and "unknown domain 'nowhere'" in err
    monkeypatch.delenv("HSPACE_DOMAIN")
    rc, _, err = run(["--domain", "nowhere", *fit], capsys)
    assert rc == 2 and one_line_error(err)
    assert active_domain() is before and not out.exists()
    assert GENERIC.default_model is None and not GENERIC.presets and not GENERIC.commands


def test_the_default_model_comes_from_the_domain(in_domain, tiny_model_dir, tmp_path, capsys):
    from hspace_studio.engine.images import read_recipe

    assert TOY_FACES.default_model == "default"
    in_domain(dataclasses.replace(TOY_FACES, default_model=str(tiny_model_dir)))
    png = tmp_path / "x.png"
    rc, _, err = run(["sample", "--seed", "1", "--steps", "2", "--out", png], capsys)
    assert rc == 0, err
    assert read_recipe(png)["model"] == str(tiny_model_dir)


def test_a_missing_shipped_network_says_how_to_train_it(in_domain, tiny_model_dir, tmp_path, capsys):
    from hspace_studio.engine.segmenter import SegmenterError, load_segmenter

    in_domain(dataclasses.replace(TOY_FACES, default_classifier=str(tmp_path / "no-classifier"),
                                  default_segmenter=str(tmp_path / "no-segmenter")))
    rc, _, err = run(["supervised", "--model", tiny_model_dir, "--steps", "2", "--attribute", "smiling",
                      "--optimize", "1", "--out", tmp_path / "x.safetensors"], capsys)
    assert rc == 1 and one_line_error(err), err
    assert "toyfaces domain's classifier is missing" in err
    assert "python -m hspace_studio.training.classifier --out resources/toyfaces-classifier" in err
    with pytest.raises(SegmenterError, match="python -m hspace_studio.training.segmenter"):
        load_segmenter(None)


def test_evaluate_and_demo_are_the_toy_domains_commands(in_domain, capsys):
    assert TOY_FACES.commands == {"demo": "hspace_studio.toyfaces.commands.demo",
                                  "evaluate": "hspace_studio.toyfaces.commands.evaluate"}
    assert importlib.util.find_spec("hspace_studio.cli.evaluate_cmd") is None
    assert importlib.util.find_spec("hspace_studio.cli.demo_cmd") is None
    assert {"demo", "evaluate", "supervised"} <= set(commands(TOY_FACES))
    assert main(["evaluate", "--scale", "1,x"]) == 2  # parsed by the toy domain's module
    assert "'1,x' is not a comma-separated list of numbers" in capsys.readouterr().err
    in_domain(Domain("mine"))
    assert "evaluate" not in commands() and main(["evaluate"]) == 2
    assert "invalid choice: 'evaluate'" in capsys.readouterr().err
