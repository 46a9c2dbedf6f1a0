"""Text-to-image models (SD 1.x/2.x, SDXL) against diffusers' own pipelines, on tiny random
models that the tests build and save, loaded by path as a user's checkpoint."""
import numpy as np
import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine import EditSpec, edit, load_model, sample
from tests.tiny_models import save_sd_model, save_sdxl_model

PROMPT, NEGATIVE = "a smiling face, photo", "blurry"


class Bright(torch.nn.Module):
    """A user's classifier: one attribute logit, the image's brightness."""

    def forward(self, x):
        return x.mean((1, 2, 3), keepdim=False)[:, None] * 8
STEPS = 6


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return save_sd_model(tmp_path_factory.mktemp("sd15"))


@pytest.fixture(scope="module")
def sd_v_dir(tmp_path_factory):
    """SD 2.x 768-style: v-prediction, trailing spacing."""
    return save_sd_model(tmp_path_factory.mktemp("sd2v"), prediction_type="v_prediction", spacing="trailing")


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return save_sdxl_model(tmp_path_factory.mktemp("sdxl"))


def _pipeline(folder):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    if (folder / "text_encoder_2").is_dir():
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, feature_extractor=None,
                                                       requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("which", ["sd_dir", "sd_v_dir", "sdxl_dir"])
def test_sampling_equals_the_diffusers_pipeline(request, which, eta):
    folder = request.getfixturevalue(which)
    model = load_model(str(folder), device="cpu")
    model.set_prompt(PROMPT, NEGATIVE, 6.0)
    traj = sample(model, [21], steps=STEPS, eta=eta)[0]
    pipe = _pipeline(folder)
    kw = dict(prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=6.0, num_inference_steps=STEPS, eta=eta)
    ref = pipe(**kw, generator=torch.Generator().manual_seed(21), output_type="latent").images[0]
    # float32 rounding: oneDNN picks different kernels on different CPUs, and guided latents
    # reach magnitudes of about 10 here
    assert (traj.x_0 - ref).abs().max().item() < 5e-6 * max(1.0, ref.abs().max().item())
    img = pipe(**kw, generator=torch.Generator().manual_seed(21), output_type="np").images[0]
    mine = (model.to_pixels(traj.x_0[None])[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(mine - img).max() < 1e-5
    assert traj.origin["prompt"] == PROMPT and traj.origin["guidance"] == 6.0


def test_no_guidance_runs_the_conditional_branch_only(sd_dir):
    model = load_model(str(sd_dir), device="cpu")
    model.set_prompt(PROMPT, "", 1.0)
    traj = sample(model, [4], steps=STEPS, eta=0.0)[0]
    pipe = _pipeline(sd_dir)
    ref = pipe(prompt=PROMPT, guidance_scale=1.0, num_inference_steps=STEPS, eta=0.0,
               generator=torch.Generator().manual_seed(4), output_type="latent").images[0]
    assert (traj.x_0 - ref).abs().max().item() < 5e-6 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("which", ["sd_dir", "sdxl_dir"])
def test_edits_replay_under_the_trajectorys_prompt(request, which):
    model = load_model(str(request.getfixturevalue(which)), device="cpu")
    model.set_prompt(PROMPT, NEGATIVE, 5.0)
    traj = sample(model, [8], steps=STEPS, eta=1.0)[0]
    model.set_prompt("something else entirely", "", 2.0)  # the model moves on to another prompt
    zero = torch.zeros_like(traj.hs)
    assert torch.equal(edit(model, traj, [EditSpec(zero, 1.0)]), traj.x_0)
    d = torch.randn(traj.hs.shape, generator=torch.Generator().manual_seed(0))
    got = edit(model, traj.copy(), [EditSpec(d, 0.5)])
    assert model.conditioning == {"prompt": PROMPT, "negative_prompt": NEGATIVE, "guidance": 5.0}
    # the edit adds the change of h to both branches: a hand-run chain with a hook doing that
    from hspace_studio.engine.sampler import run_chain

    seen = []

    def both(h):
        seen.append(h.shape[0])
        return h + 0.5 * d[len(seen) - 1][None]

    want = run_chain(model, traj.x_T[None], traj.zs, traj.etas, traj.timesteps, "after",
                     delta_at=lambda i: 0.5 * d[i][None]).x_0[0]
    assert (got - want).abs().max() < 1e-5
    with model.denoiser.hook("after", edit=both):
        model.denoiser(traj.x_T[None], traj.timesteps[0])
    assert seen == [1, 1]  # the hook saw the unconditional and the conditional branch
    assert (got - traj.x_0).abs().max() > 1e-3


@pytest.mark.parametrize("which", ["sd_dir", "sdxl_dir"])
def test_edit_friendly_inversion_of_a_photo_is_exact_in_latent_space(request, which):
    from hspace_studio.engine.inversion import invert

    model = load_model(str(request.getfixturevalue(which)), device="cpu")
    model.set_prompt(PROMPT, NEGATIVE, 4.0)
    g = torch.Generator().manual_seed(3)
    photo = torch.rand(3, *model.image_size, generator=g) * 2 - 1
    inv = invert(model, photo, steps=STEPS, eta=1.0)
    assert inv.max_error < 1e-4  # latents reconstructed
    assert inv.trajectory.origin["prompt"] == PROMPT
    from hspace_studio.engine.sampler import decode

    replay = decode(model, inv.trajectory.copy())
    assert (replay.x_0 - model.from_pixels(photo[None])[0]).abs().max() < 1e-4
    assert np.isfinite(inv.psnr)  # the image error is the VAE's, reported
    ddim = invert(model, photo, steps=STEPS, eta=0.0)  # DDIM inversion: close, not exact; reported
    assert ddim.trajectory.origin["inversion"] == "ddim" and ddim.trajectory.origin["guidance"] == 4.0
    assert np.isfinite(ddim.max_error) and np.isfinite(ddim.psnr)


def test_jacobian_directions_equal_a_dense_svd_of_the_guided_eps(sd_dir):
    from hspace_studio.engine.discover.jacobian import jacobian_directions

    model = load_model(str(sd_dir), device="cpu")
    model.set_prompt(PROMPT, NEGATIVE, 5.0)
    traj = sample(model, [2], steps=2, eta=1.0)[0]
    res = jacobian_directions(model, traj, k=3, tol=1e-5, max_iter=400, oversample=6)
    assert all(res.converged)
    for i in range(2):
        x, t, h0 = traj.xs[i][None], traj.timesteps[i], traj.hs[i][None].clone()

        def f(h):  # eps of the guided output when both branches' h move by h - h0
            with model.denoiser.hook("after", edit=lambda hb: hb + (h - h0)):
                out = model.denoiser(x, t)
            return model.predict_eps(out, x, t).reshape(-1)

        J = torch.autograd.functional.jacobian(f, h0).reshape(-1, h0.numel()).double()
        _, S, Vh = torch.linalg.svd(J, full_matrices=False)
        assert torch.allclose(res.singular_values[i].double(), S[:3], rtol=1e-3)
        cos = (res.directions.delta_h[:, i].reshape(3, -1).double() * Vh[:3]).sum(1).abs()
        assert (cos > 0.999).all(), cos


def test_load_errors_name_what_is_missing(sd_dir, tmp_path):
    import shutil

    broken = tmp_path / "sd"
    shutil.copytree(sd_dir, broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(ModelLoadError, match="text_encoder/"):
        load_model(str(broken), device="cpu")
    with pytest.raises(ModelLoadError, match="autoguidance"):
        load_model(str(sd_dir), device="cpu", guide="default")
    pixel = load_model("default", device="cpu")
    with pytest.raises(ModelLoadError, match="takes no prompt"):
        pixel.set_prompt("a face")


def test_cli_pca_over_prompts_then_edit_and_replay_the_recipe(sd_dir, tmp_path):
    """discover PCA over prompts x seeds, sample and edit under another prompt from the command
    line, and the edited PNG's recipe replays to the same pixels."""
    from hspace_studio.cli import main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine import DirectionSet
    from hspace_studio.engine.images import load_image, read_recipe

    common = ["--model", str(sd_dir), "--steps", "4", "--guidance", "4"]
    pcs = tmp_path / "pcs.safetensors"
    assert main(["pca", *common, "--samples", "3", "-k", "2", "--prompts", "a red face", "a blue face",
                 "--negative-prompt", "blurry", "--out", str(pcs)]) == 0
    ds = DirectionSet.load(pcs)
    assert ds.params["samples"] == 6 and ds.params["prompts"] == ["a red face", "a blue face"]
    assert ds.params["conditioning"]["negative_prompt"] == "blurry"
    assert main(["sample", *common, "--seed", "5", "--prompt", "a green face", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["edit", *common, "--seed", "5", "--prompt", "a green face", "--direction", f"{pcs}:1",
                 "--scale", "3", "--out", str(tmp_path / "e.png")]) == 0
    rec = read_recipe(tmp_path / "e.png")
    assert rec["prompt"] == {"prompt": "a green face", "negative_prompt": "", "guidance": 4.0}
    assert main(recipe_to_cli_args(rec, str(tmp_path / "replay.png"))) == 0
    e, _ = load_image(tmp_path / "e.png", (16, 16))
    r, _ = load_image(tmp_path / "replay.png", (16, 16))
    s, _ = load_image(tmp_path / "s.png", (16, 16))
    assert torch.equal(e, r) and not torch.equal(e, s)
    # a prompt for a model that takes none is a clear error, not a traceback
    assert main(["sample", "--seed", "1", "--prompt", "a face", "--steps", "2",
                 "--out", str(tmp_path / "x.png")]) != 0


def test_supervised_directions_on_sd_from_photos_and_from_a_classifier(sd_dir, tmp_path):
    """Labelled photos are inverted through the VAE under the prompt; a classifier ranks
    decoded samples. Both give a direction of h's shape that records the prompt."""
    import json

    from PIL import Image

    from hspace_studio.cli import main
    from hspace_studio.engine import DirectionSet

    rng = np.random.default_rng(0)
    for name, level in (("pos", 200), ("neg", 40)):
        (tmp_path / name).mkdir()
        for i in range(2):
            arr = np.clip(rng.normal(level, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    common = ["--model", str(sd_dir), "--steps", "2", "--prompt", "a face", "--guidance", "3"]
    assert main(["supervised", *common, "--positive", str(tmp_path / "pos"), "--negative", str(tmp_path / "neg"),
                 "--attribute", "bright", "--out", str(tmp_path / "photos.safetensors")]) == 0
    ds = DirectionSet.load(tmp_path / "photos.safetensors")
    model = load_model(str(sd_dir), device="cpu")
    h = sample(model, [0], steps=2)[0].hs
    assert tuple(ds.delta_h.shape[1:]) == tuple(h.shape) and float(ds.delta_h.abs().max()) > 0
    assert ds.params["conditioning"]["prompt"] == "a face"

    torch.jit.save(torch.jit.script(Bright()), str(tmp_path / "clf.pt"))
    (tmp_path / "clf.json").write_text(json.dumps(["bright"]))
    assert main(["supervised", *common, "--classifier", str(tmp_path / "clf.pt"), "--attributes",
                 str(tmp_path / "clf.json"), "--attribute", "bright", "--index-size", "6", "--examples", "2",
                 "--index", str(tmp_path / "idx.json"), "--out", str(tmp_path / "clf.safetensors")]) == 0
    ds = DirectionSet.load(tmp_path / "clf.safetensors")
    assert tuple(ds.delta_h.shape[1:]) == tuple(h.shape) and ds.params["conditioning"]["guidance"] == 3.0


def test_text_model_guards(sd_dir, tmp_path):
    """An inpainting-style UNet (9 input channels) is refused at load; a trajectory file fixes
    its prompt on the command line; a supervised index is keyed by the prompt too."""
    import shutil

    from hspace_studio.cli import main
    from hspace_studio.engine.annotate import CallableClassifier
    from hspace_studio.engine.discover.supervised import index_recipe

    odd = tmp_path / "inpaint"
    shutil.copytree(sd_dir, odd)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(odd / "unet")
    shutil.rmtree(odd / "unet")
    UNet2DConditionModel.from_config({**unet.config, "in_channels": 9}).save_pretrained(odd / "unet")
    with pytest.raises(ModelLoadError, match="takes 9 channels"):
        load_model(str(odd), device="cpu")
    model = load_model(str(sd_dir), device="cpu")
    model.set_prompt("a red face", "", 3.0)
    sample(model, [1], steps=2)[0].save(tmp_path / "t.safetensors")
    assert main(["edit", "--model", str(sd_dir), "--trajectory", str(tmp_path / "t.safetensors"),
                 "--prompt", "a dog", "--noise-scale", "0", "--out", str(tmp_path / "x.png")]) != 0
    clf = CallableClassifier(lambda x: x.mean((1, 2, 3))[:, None], ["bright"])
    a = index_recipe(model, clf, 2, 1.0, "after")
    model.set_prompt("a dog")
    assert index_recipe(model, clf, 2, 1.0, "after") != a
