"""The public Python API: a notebook's few lines, and directions on the user's own pipeline
(equal to the CLI's edit)."""
import numpy as np
import pytest
import torch
from PIL import Image

from hspace_studio import api
from hspace_studio.cli import main
from hspace_studio.engine import DirectionSet, load_model, sample
from tests.tiny_models import save_sd_model


@pytest.fixture(scope="module")
def sd_and_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    sd = save_sd_model(root / "sd")
    model = load_model(str(sd), device="cpu")
    t = sample(model, [0], steps=4)[0]
    g = torch.Generator().manual_seed(5)
    DirectionSet(delta_h=torch.randn((2, *t.hs.shape), generator=g) * t.hs.std(), timesteps=t.timesteps,
                 fingerprint=model.weights_fingerprint, h_space="after", method="pca").save(root / "d.safetensors")
    return sd, root / "d.safetensors"


def test_apply_directions_on_the_users_pipeline_equals_the_cli_edit(sd_and_dir, tmp_path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sd, d = sd_and_dir
    out = tmp_path / "cli.png"
    assert main(["edit", "--model", str(sd), "--seed", "3", "--steps", "4", "--prompt", "a cat",
                 "--direction", f"{d}:1", "--scale", "2", "--out", str(out)]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def run():
        return pipe(prompt="a cat", num_inference_steps=4, eta=1.0, guidance_scale=7.5,
                    generator=torch.Generator().manual_seed(3), output_type="np").images[0]

    with api.apply_directions(pipe, {f"{d}:1": 2.0}):
        edited = run()
    plain = run()  # the hooks are gone afterwards
    cli = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert np.abs(np.round(edited * 255) - cli).max() <= 1
    assert np.abs(np.round(plain * 255) - cli).max() > 1


def test_apply_directions_on_a_flux_pipeline_equals_the_engines_edit(tmp_path):
    from diffusers import FluxPipeline

    from tests.tiny_flow_models import save_flux_model

    folder = save_flux_model(tmp_path / "flux")
    model = api.load(str(folder), prompt="a cat", guidance=3.5, device="cpu")
    image = api.sample(model, seed=2, steps=3, eta=0.0)
    ds = DirectionSet(delta_h=torch.randn((1, *image.hs.shape), generator=torch.Generator().manual_seed(1)),
                      timesteps=image.timesteps, fingerprint=model.weights_fingerprint, h_space=image.h_space)
    want = api.edit(model, image, [(ds, 0, 0.5)])
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    h, w = model.image_size
    with api.apply_directions(pipe, [(ds, 0, 0.5)]):
        lat = pipe(prompt="a cat", num_inference_steps=3, height=h, width=w, guidance_scale=3.5,
                   generator=torch.Generator().manual_seed(2), output_type="latent").images
    lat = pipe._unpack_latents(lat, h, w, pipe.vae_scale_factor)[0]
    assert (lat - want).abs().max() <= 1e-5 * want.abs().max()
    assert (want - image.x_0).abs().max() > 1e-3


def test_a_notebooks_few_lines(tmp_path):
    """The README of docs/python-api.md, run: load, sample, PCA, edit, save, on the default model."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "python-api.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    code = code.replace("samples=64", "samples=8").replace('"edited.png"', repr(str(tmp_path / "edited.png")))
    exec(compile(code, "python-api.md", "exec"), {})
    assert (tmp_path / "edited.png").is_file()
