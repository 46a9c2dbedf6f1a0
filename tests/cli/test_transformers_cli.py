"""The command line on flow-matching transformer folders (tiny SD3 and Flux.1, loaded by path)."""
import numpy as np
import pytest
import torch
from PIL import Image

from hspace_studio.cli import main
from hspace_studio.core.recipe import recipe_to_cli_args
from hspace_studio.engine.images import read_recipe
from tests.tiny_flow_models import save_flux_model, save_sd3_model


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return save_flux_model(tmp_path_factory.mktemp("cli") / "flux")


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    return save_sd3_model(tmp_path_factory.mktemp("cli") / "sd3")


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_sample_equals_the_flux_pipeline_and_its_recipe_replays(flux_dir, tmp_path):
    from diffusers import FluxPipeline

    out = tmp_path / "f.png"
    assert main(["sample", "--model", str(flux_dir), "--size", "32x32", "--prompt", "a red cat",
                 "--guidance", "3.5", "--seed", "3", "--steps", "4", "--eta", "0", "--out", str(out)]) == 0
    pipe = FluxPipeline.from_pretrained(flux_dir)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt="a red cat", num_inference_steps=4, height=32, width=32, guidance_scale=3.5,
               generator=torch.Generator().manual_seed(3), output_type="np").images[0]
    assert np.abs(_pixels(out) - np.round(ref * 255)).max() <= 1
    rec = read_recipe(out)
    assert rec["h_space"] == "block:1" and rec["size"] == [32, 32] and rec["prompt"]["prompt"] == "a red cat"
    again = tmp_path / "again.png"
    assert main(recipe_to_cli_args(rec, str(again))) == 0
    assert np.array_equal(_pixels(again), _pixels(out))


def test_pca_and_an_edit_at_a_chosen_block_replay(sd3_dir, tmp_path):
    pcs = tmp_path / "pcs.safetensors"
    assert main(["pca", "--model", str(sd3_dir), "--h-space", "block:0", "--prompts", "a cat", "a dog",
                 "--samples", "2", "--steps", "3", "--components", "2", "--out", str(pcs)]) == 0
    out = tmp_path / "e.png"
    assert main(["edit", "--model", str(sd3_dir), "--h-space", "block:0", "--seed", "2", "--steps", "3",
                 "--prompt", "a cat", "--direction", f"{pcs}:0", "--scale", "40", "--out", str(out)]) == 0
    plain = tmp_path / "p.png"
    assert main(["sample", "--model", str(sd3_dir), "--h-space", "block:0", "--seed", "2", "--steps", "3",
                 "--prompt", "a cat", "--out", str(plain)]) == 0
    assert np.abs(_pixels(out) - _pixels(plain)).max() > 0  # the direction changes the image
    again = tmp_path / "again.png"
    assert main(recipe_to_cli_args(read_recipe(out), str(again))) == 0
    assert np.array_equal(_pixels(again), _pixels(out))


def test_h_points_are_listed_and_a_wrong_one_is_one_line(sd3_dir, capsys):
    assert main(["jacobian", "--model", str(sd3_dir), "--list-h-points"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["block:0", "block:1  (default)"]
    assert main(["sample", "--model", str(sd3_dir), "--h-space", "after", "--seed", "1", "--out", "x.png"]) == 1
    err = capsys.readouterr().err
    assert "no h-space point 'after'" in err and "block:0, block:1" in err and len(err.splitlines()) == 1
