"""Flow-matching transformers (SD3, Flux.1) through the denoiser interface, against diffusers'
own pipelines, a hand-written hook on the transformer's block, and a dense Jacobian."""
import numpy as np
import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.discover.jacobian import jacobian_directions
from hspace_studio.engine.discover.pca import pca_directions
from hspace_studio.engine.inversion import invert
from hspace_studio.engine.sampler import EditSpec, decode, edit
from tests.tiny_flow_models import save_flux_model, save_sd3_model, save_zimage_model

FAMILIES = {
    "sd3": (save_sd3_model, {}, (16, 16), "StableDiffusion3Pipeline", 4.0),
    "sd3-no-t5": (save_sd3_model, {"with_t5": False}, (16, 16), "StableDiffusion3Pipeline", 4.0),
    "flux-dev": (save_flux_model, {}, (32, 32), "FluxPipeline", 3.5),
    "flux-schnell": (save_flux_model, {"guidance_embeds": False}, (32, 32), "FluxPipeline", 0.0),
    "zimage": (save_zimage_model, {}, (16, 16), "ZImagePipeline", 5.0),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    out = {}
    for name, (build, kw, *_rest) in FAMILIES.items():
        out[name] = build(root / name, **kw)
    return out


def _load(folders, name):
    size = FAMILIES[name][2]
    return load_model(str(folders[name]), device="cpu", image_size=size if "flux" in name else None)


def _pipeline_latents(folder, name, seed, steps, prompt):
    import diffusers

    _, kw, size, cls, guidance = FAMILIES[name]
    extra = {"text_encoder_3": None, "tokenizer_3": None} if kw.get("with_t5") is False else {}
    pipe = getattr(diffusers, cls).from_pretrained(folder, **extra)
    pipe.set_progress_bar_config(disable=True)
    lat = pipe(prompt=prompt, num_inference_steps=steps, height=size[0], width=size[1], guidance_scale=guidance,
               generator=torch.Generator().manual_seed(seed), output_type="latent").images
    if cls == "FluxPipeline":
        lat = pipe._unpack_latents(lat, size[0], size[1], pipe.vae_scale_factor)
    img = pipe.vae.decode(lat / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor).sample
    return lat[0], (img[0] / 2 + 0.5).clamp(0, 1)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_seed_gives_the_pipelines_image(folders, name):
    model = _load(folders, name)
    guidance = FAMILIES[name][4]
    model.set_prompt("a red cat", "", guidance)
    traj = sample(model, [3], steps=4, eta=0.0, h_space=model.denoiser.default_point())[0]
    lat, img = _pipeline_latents(folders[name], name, 3, 4, "a red cat")
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max(), (traj.x_0 - lat).abs().max()
    mine = (model.to_pixels(traj.x_0[None])[0] / 2 + 0.5).clamp(0, 1)
    assert (mine - img).abs().max() * 255 <= 1.0
    # the trajectory replays to the same latents
    again = decode(model, traj.copy())
    assert torch.equal(again.x_0, traj.x_0)


def test_points_are_the_blocks_and_the_default_is_the_middle(folders):
    sd3 = _load(folders, "sd3")
    assert sd3.denoiser.points() == ["block:0", "block:1"] and sd3.denoiser.default_point() == "block:1"
    flux = _load(folders, "flux-dev")  # one double-stream block, then two single-stream ones
    assert flux.denoiser.points() == ["block:0", "block:1", "block:2"]
    # h is the image tokens on the token grid: (inner dim, h/2, w/2) of the 16x16 latents
    assert flux.denoiser.h_shape("block:2", flux.sample_shape) == (32, 8, 8)
    assert sd3.denoiser.h_shape("block:0", sd3.sample_shape) == (32, 4, 4)
    with pytest.raises(ValueError, match="block:N"):
        sd3.denoiser.h_shape("block:7", sd3.sample_shape)
    with pytest.raises(ValueError, match="block:N"):
        sd3.denoiser.h_shape("after", sd3.sample_shape)


def test_a_transformer_refuses_unet_options(folders):
    with pytest.raises(ModelLoadError, match="autoguidance"):
        load_model(str(folders["sd3"]), device="cpu", guide="default")


@pytest.mark.parametrize("name,block", [("sd3", 0), ("flux-dev", 2)])
def test_an_edit_equals_a_hand_written_hook_on_the_block(folders, name, block):
    """The engine's edit adds scale * delta to the image tokens of the block's output: the same
    as a forward hook on that block written here, in a loop over the pipeline's scheduler."""
    model = _load(folders, name)
    model.set_prompt("a house", "", FAMILIES[name][4])
    point = f"block:{block}"
    traj = sample(model, [1], steps=3, eta=0.0, h_space=point)[0]
    delta = torch.randn(traj.hs.shape, generator=torch.Generator().manual_seed(0))
    got = edit(model, traj, [EditSpec(delta, 0.7)])
    assert (got - traj.x_0).abs().max() > 1e-3  # the edit does something

    blocks = (list(model.net.transformer_blocks) + list(getattr(model.net, "single_transformer_blocks", [])))
    step = [0]

    def add(mod, args, out):
        enc, img = out
        d = 0.7 * delta[step[0]]  # (D, gh, gw) -> tokens (1, N, D)
        d = d.reshape(d.shape[0], -1).T[None]
        return enc, img + d.expand(img.shape[0], *d.shape[1:])

    sched = model.scheduler.scheduler  # the model's own FlowMatchEulerDiscreteScheduler
    model.scheduler.set_timesteps(3)
    x = traj.x_T[None].clone()
    handle = blocks[block].register_forward_hook(add)
    try:
        with torch.no_grad():
            for i, t in enumerate(sched.timesteps):
                step[0] = i
                v = model.denoiser(x, t)
                x = sched.step(v, t, x).prev_sample
    finally:
        handle.remove()
    assert (x[0] - got).abs().max() <= 1e-5 * got.abs().max()


@pytest.mark.parametrize("name", ["sd3", "flux-dev", "zimage"])
def test_stochastic_inversion_is_exact_and_editable(folders, name):
    model = _load(folders, name)
    model.set_prompt("a dog", "", FAMILIES[name][4])
    traj = sample(model, [2], steps=4, eta=0.0)[0]
    image = model.to_pixels(traj.x_0[None])[0].clamp(-1, 1)
    inv = invert(model, image, steps=4, eta=1.0, h_space=model.denoiser.default_point())
    x0 = model.from_pixels(image[None])[0]  # the latents it inverts (a random VAE is no identity)
    t = inv.trajectory
    assert _latent_psnr(t.x_0, x0) >= 40 and inv.max_error <= 1e-5 * x0.abs().max()
    assert torch.allclose(decode(model, t.copy()).x_0, t.x_0, atol=1e-4)
    # (a constant along the features of every token would vanish in the next layer norm)
    delta = torch.randn(t.hs.shape, generator=torch.Generator().manual_seed(1))
    moved = edit(model, t, [EditSpec(delta, 0.5)])
    assert (moved - t.x_0).abs().max() > 1e-3
    ode = invert(model, image, steps=4, eta=0.0, h_space=model.denoiser.default_point())
    assert np.isfinite(ode.psnr) and ode.trajectory.etas.abs().max() == 0


def _latent_psnr(a, b) -> float:
    """PSNR in latent space, the peak being the latents' range."""
    mse = float((a - b).pow(2).mean())
    peak = float(b.max() - b.min())
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


@pytest.mark.parametrize("name", ["sd3", "zimage"])
def test_jacobian_directions_equal_a_dense_svd(folders, name):
    model = _load(folders, name)
    model.set_prompt("a boat", "", FAMILIES[name][4])  # guided: both branches move by the same change of h
    traj = sample(model, [4], steps=2, eta=0.0, h_space="block:0")[0]
    # random weights give a flat spectrum (2.108, 2.060, 2.059, ...): the top vector, well separated
    res = jacobian_directions(model, traj, k=1, tol=2e-6, max_iter=300, oversample=10)
    assert all(res.converged)
    for i in range(2):
        x, t = traj.xs[i][None], traj.timesteps[i]
        h0 = traj.hs[i][None].clone()

        def f(h):  # each guidance branch moves by the same change of h
            with model.denoiser.hook("block:0", edit=lambda hb: hb + (h - h0)):
                out = model.denoiser(x, t)
            return out.reshape(-1)  # a flow model's Jacobian is of the velocity

        J = torch.autograd.functional.jacobian(f, h0).reshape(-1, h0.numel()).double()
        _, S, Vh = torch.linalg.svd(J, full_matrices=False)
        assert S[0] > 1.01 * S[1]
        assert torch.allclose(res.singular_values[i].double(), S[:1], rtol=1e-4)
        vec = res.directions.delta_h[0, i].reshape(-1).double()
        assert float((vec * Vh[0]).sum().abs()) > 0.999


def test_pca_over_prompts_on_flux(folders):
    model = _load(folders, "flux-dev")
    res = pca_directions(model, n_samples=3, components=2, steps=2, eta=0.0, h_space="block:1",
                         prompts=["a cat", "a dog"])
    ds = res.directions
    assert tuple(ds.delta_h.shape) == (2, 2, 32, 8, 8) and ds.h_space == "block:1"
    assert model.conditioning["prompt"] == ""  # the model keeps its own prompt


# ------------------------------------------------------------------ noise-predicting transformers

def _captured_decode(pipe):
    """Make ``pipe.vae.decode`` keep the latents it is given (the pipelines decode inside)."""
    seen = []
    orig = pipe.vae.decode

    def decode(z, *a, **k):
        seen.append(z.detach().clone())
        return orig(z, *a, **k)

    pipe.vae.decode = decode
    return seen


def test_pixart_sigma_with_ddim_equals_its_pipeline(tmp_path):
    """PixArt-Sigma (T5, learned sigma, cross-attention blocks), sampled with DDIM from its
    scheduler's config as every noise-predicting model is: equal to PixArtSigmaPipeline given that
    DDIM scheduler (its own default is DPM-Solver++)."""
    from diffusers import DDIMScheduler, PixArtSigmaPipeline

    from tests.tiny_flow_models import save_pixart_model

    folder = save_pixart_model(tmp_path / "pixart")
    model = load_model(str(folder), device="cpu")
    assert model.denoiser.points() == ["block:0", "block:1"] and not model.is_flow
    model.set_prompt("a red cat", "", 4.5)
    traj = sample(model, [5], steps=4, eta=0.0)[0]
    pipe = PixArtSigmaPipeline.from_pretrained(folder)
    # DDIM without clipping, as the engine samples (clipping x_0 is not invertible)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    pipe.set_progress_bar_config(disable=True)
    seen = _captured_decode(pipe)
    h, w = model.image_size
    img = pipe(prompt="a red cat", num_inference_steps=4, height=h, width=w, guidance_scale=4.5,
               use_resolution_binning=False, generator=torch.Generator().manual_seed(5), output_type="pt").images[0]
    lat = seen[0][0] * pipe.vae.config.scaling_factor
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max()
    mine = (model.to_pixels(traj.x_0[None])[0] / 2 + 0.5).clamp(0, 1)
    assert (mine - img).abs().max() * 255 <= 1.0
    moved = edit(model, traj, [EditSpec(torch.randn(traj.hs.shape, generator=torch.Generator().manual_seed(0)), 1.0)])
    assert (moved - traj.x_0).abs().max() > 1e-3


def test_dit_takes_a_class_label_and_equals_its_pipeline(tmp_path):
    from diffusers import DiTPipeline

    from tests.tiny_flow_models import save_dit_model

    folder = save_dit_model(tmp_path / "dit")
    model = load_model(str(folder), device="cpu")
    pipe = DiTPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    name = next(iter(pipe.labels))
    model.set_prompt(name, "", 4.0)  # a class name in place of the prompt
    traj = sample(model, [7], steps=4, eta=0.0)[0]
    seen = _captured_decode(pipe)
    img = pipe(class_labels=[pipe.labels[name]], guidance_scale=4.0, num_inference_steps=4,
               generator=torch.Generator().manual_seed(7), output_type="pt").images[0]
    lat = seen[0][0] * pipe.vae.config.scaling_factor
    assert (traj.x_0 - lat).abs().max() <= 1e-5 * lat.abs().max()
    mine = (model.to_pixels(traj.x_0[None])[0] / 2 + 0.5).clamp(0, 1)
    assert (mine - img).abs().max() * 255 <= 1.0
    with pytest.raises(ValueError, match="not a class"):
        model.set_prompt("no such class")
    with pytest.raises(ModelLoadError, match="one size"):
        load_model(str(folder), device="cpu", image_size=(32, 32))
    inv = invert(model, model.to_pixels(traj.x_0[None])[0].clamp(-1, 1), steps=4, eta=1.0)
    assert inv.max_error <= 1e-4 * traj.x_0.abs().max()


def test_the_other_methods_on_flux(folders):
    """A masked Jacobian (its change lands mostly inside the mask), a strip, the slider's
    first-order preview against the exact image, slerp interpolation, a noise-space edit and
    disentangling, on a flow transformer."""
    from hspace_studio.engine.directions import disentangle
    from hspace_studio.engine.interpolate import interpolate
    from hspace_studio.engine.preview import LinearPreview
    from hspace_studio.engine.sampler import NoiseEdit, strip

    model = _load(folders, "flux-dev")
    model.set_prompt("a cat", "", 3.5)
    traj = sample(model, [1], steps=3, eta=0.0, h_space="block:1")[0]
    h, w = model.image_size
    mask = np.zeros((h, w), dtype=bool)
    mask[: h // 2, : w // 2] = True
    res = jacobian_directions(model, traj, k=2, mask=mask, tol=1e-4, max_iter=200)
    d = res.directions.steps_delta(0)
    moved = edit(model, traj, [EditSpec(d, 20.0)]) - traj.x_0
    inside = moved[:, : moved.shape[1] // 2, : moved.shape[2] // 2].pow(2).sum()
    assert inside > 0.25 * moved.pow(2).sum()  # a quarter of the area holds over a quarter of the change

    scales = [-1.0, 0.0, 1.0]
    imgs = strip(model, traj, d, scales)
    assert torch.allclose(imgs[1], traj.x_0, atol=1e-5) and (imgs[2] - imgs[0]).abs().max() > 1e-3

    spec = EditSpec(d, 0.0)
    lin = LinearPreview.prepare(model, traj, [spec])
    exact = edit(model, traj, [EditSpec(d, 0.01)])
    approx = lin.x_0([0.01])
    assert (approx - exact).abs().max() < 0.1 * (exact - traj.x_0).abs().max()

    other = sample(model, [2], steps=3, eta=0.0, h_space="block:1")[0]
    frames = interpolate(model, traj, other, mode="slerp", frames=3)
    assert torch.allclose(frames.x_0[0], traj.x_0, atol=1e-4) and torch.allclose(frames.x_0[-1], other.x_0, atol=1e-4)

    noisy = edit(model, traj, [NoiseEdit(d_xT=torch.randn(traj.x_T.shape, generator=torch.Generator().manual_seed(3)),
                                         scale=0.3)])
    assert (noisy - traj.x_0).abs().max() > 1e-3

    a, b = res.directions.delta_h[0].reshape(1, -1), res.directions.delta_h[1].reshape(1, -1)
    out = disentangle(a + b, [b])
    assert float((out * b).sum().abs()) < 1e-6 * float(b.norm() * out.norm())


def test_supervised_directions_from_labelled_images_on_sd3(folders, tmp_path):
    """Labelled real images, inverted at a block: the direction is the mean change of h between
    the two sets, and it moves an image toward the positive set."""
    from PIL import Image

    from hspace_studio.engine.discover.supervised import supervised_from_images

    model = _load(folders, "sd3")
    model.set_prompt("a photo", "", 1.0)
    h, w = model.image_size
    for name, colour in (("pos", (230, 40, 40)), ("neg", (40, 40, 230))):
        (tmp_path / name).mkdir()
        for i in range(2):
            img = np.zeros((h, w, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
            img[i::3] = 128
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    res = supervised_from_images(model, tmp_path / "pos", tmp_path / "neg", steps=3, eta=1.0, h_space="block:0")
    ds = res.directions
    assert ds.h_space == "block:0" and tuple(ds.delta_h.shape[2:]) == (32, 4, 4)
    assert float(ds.delta_h.abs().max()) > 0


def test_bf16_on_a_transformer_stays_near_float32(folders):
    from hspace_studio.engine.compiled import accelerate, restore

    model = _load(folders, "sd3")
    ref = sample(model, [1], steps=3, eta=0.0)[0]
    accelerate(model, compile=False, bf16=True)
    try:
        fast = sample(model, [1], steps=3, eta=0.0)[0]
    finally:
        restore(model)
    err = float((fast.x_0 - ref.x_0).abs().max())
    assert 0 < err < 0.1 * float(ref.x_0.abs().max())  # bf16 ran, and stayed close
    assert torch.equal(sample(model, [1], steps=3, eta=0.0)[0].x_0, ref.x_0)  # restored
