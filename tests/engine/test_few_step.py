"""Few-step models keep their scheduler: Euler (trailing, as SD-Turbo), Euler ancestral (as
SDXL-Turbo) and LCM, against StableDiffusionPipeline with that scheduler and the same seed."""
import json

import pytest
import torch

from hspace_studio.engine import load_model, sample
from hspace_studio.engine.inversion import invert
from hspace_studio.engine.sampler import EditSpec, decode, edit
from tests.tiny_models import save_sd_model

CASES = {  # scheduler, its config, the eta that is the pipeline's sampler
    "euler-trailing": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, 0.0),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}, 1.0),
    "lcm": ("LCMScheduler", {}, 1.0),
}


def _folder(root, name):
    import diffusers

    cls, cfg, _ = CASES[name]
    folder = save_sd_model(root / name)
    base = diffusers.DDIMScheduler.from_pretrained(folder / "scheduler").config
    getattr(diffusers, cls).from_config({**dict(base), **cfg}).save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", cls]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewstep")
    return {name: _folder(root, name) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_a_seed_gives_the_pipelines_image_with_its_own_scheduler(folders, name):
    from diffusers import StableDiffusionPipeline

    eta = CASES[name][2]
    model = load_model(str(folders[name]), device="cpu")
    assert model.own_step and type(model.scheduler.scheduler).__name__ == CASES[name][0]
    model.set_prompt("a red face", "", 1.0)  # few-step models run without guidance
    traj = sample(model, [4], steps=3, eta=eta)[0]
    pipe = StableDiffusionPipeline.from_pretrained(folders[name], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    lat = pipe(prompt="a red face", num_inference_steps=3, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(4), output_type="latent").images[0]
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max(), (traj.x_0 - lat).abs().max()
    # the trajectory records its noise: decoding replays it, and an edit is made on it
    assert torch.allclose(decode(model, traj.copy()).x_0, traj.x_0, atol=1e-6)
    d = torch.randn(traj.hs.shape, generator=torch.Generator().manual_seed(0))
    assert (edit(model, traj, [EditSpec(d, 1.0)]) - traj.x_0).abs().max() > 1e-3
    assert torch.equal(edit(model, traj, [EditSpec(d, 0.0)]), traj.x_0)


@pytest.mark.parametrize("name", ["euler-ancestral", "lcm"])
def test_stochastic_inversion_is_exact_with_the_models_own_scheduler(folders, name):
    model = load_model(str(folders[name]), device="cpu")
    model.set_prompt("a cat", "", 1.0)
    traj = sample(model, [1], steps=3, eta=1.0)[0]
    image = model.to_pixels(traj.x_0[None])[0].clamp(-1, 1)
    inv = invert(model, image, steps=3, eta=1.0)
    x0 = model.from_pixels(image[None])[0]
    assert inv.max_error <= 1e-4 * float(x0.abs().max())


def test_an_lcm_distilled_unet_takes_its_guidance_as_an_input(tmp_path):
    """An LCM-distilled UNet (``time_cond_proj_dim``: the guidance scale is embedded, no
    classifier-free batch) with its LCM scheduler equals LatentConsistencyModelPipeline."""
    from diffusers import LatentConsistencyModelPipeline, UNet2DConditionModel

    folder = _folder(tmp_path, "lcm")
    cfg = dict(UNet2DConditionModel.load_config(folder / "unet"), time_cond_proj_dim=8)
    torch.manual_seed(1)
    UNet2DConditionModel.from_config(cfg).save_pretrained(folder / "unet")
    model = load_model(str(folder), device="cpu")
    assert model.conditioning["guidance"] == 8.5  # the LCM pipeline's default
    model.set_prompt("a red face", "", 6.0)
    traj = sample(model, [4], steps=4, eta=1.0)[0]
    pipe = LatentConsistencyModelPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    lat = pipe(prompt="a red face", num_inference_steps=4, guidance_scale=6.0,
               generator=torch.Generator().manual_seed(4), output_type="latent").images[0]
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max(), (traj.x_0 - lat).abs().max()
    model.set_prompt("a red face", "", 2.0)  # the guidance is an input: another scale, another image
    assert (sample(model, [4], steps=4, eta=1.0)[0].x_0 - lat).abs().max() > 1e-4
