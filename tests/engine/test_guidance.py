"""Autoguidance: a model guided by a weaker one of the same kind (engine/guidance.py)."""
import json

import pytest
import torch

from hspace_studio.core.errors import ModelLoadError
from hspace_studio.engine.model import load_model
from hspace_studio.engine.sampler import sample
from tests.tiny_models import save_pixel_model


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model with its weights moved: a different model of the same kind."""
    from diffusers import UNet2DModel

    folder = tmp_path_factory.mktemp("guide")
    save_pixel_model(folder)
    unet = UNet2DModel.from_pretrained(folder / "unet")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    unet.save_pretrained(folder / "unet")
    return folder


def _outputs(model, x, t):
    with torch.no_grad():
        return model.denoiser(x, t)


def test_guided_output_is_guide_plus_weight_times_difference(tiny_model_dir, guide_dir):
    m = load_model(str(tiny_model_dir), device="cpu")
    g = load_model(str(guide_dir), device="cpu")
    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=2.5)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(500)
    a, b = _outputs(m, x, t), _outputs(g, x, t)
    assert not torch.allclose(a, b, atol=1e-3)  # the guide is another model
    assert torch.allclose(_outputs(guided, x, t), b + 2.5 * (a - b), atol=1e-5)
    assert guided.fingerprint not in (m.fingerprint, g.fingerprint)
    assert "guided by" in guided.describe() and "weight 2.5" in guided.describe()


def test_interval_limits_guidance_to_its_timesteps(tiny_model_dir, guide_dir):
    m = load_model(str(tiny_model_dir), device="cpu")
    g = load_model(str(guide_dir), device="cpu")
    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=3,
                        guide_interval=(300, 700))
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for t, inside in ((299, False), (300, True), (700, True), (701, False)):
        a, b = _outputs(m, x, torch.tensor(t)), _outputs(g, x, torch.tensor(t))
        want = b + 3 * (a - b) if inside else a
        assert torch.allclose(_outputs(guided, x, torch.tensor(t)), want, atol=1e-5), t
    # one timestep per sample: each sample guided or not by its own timestep
    ts = torch.tensor([100, 500, 900])
    out = _outputs(guided, x, ts)
    for i, t in enumerate(ts.tolist()):
        a, b = _outputs(m, x[i:i + 1], torch.tensor(t)), _outputs(g, x[i:i + 1], torch.tensor(t))
        want = b + 3 * (a - b) if 300 <= t <= 700 else a
        assert torch.allclose(out[i:i + 1], want, atol=1e-5)


def test_weight_one_samples_as_the_model_alone(tiny_model_dir, guide_dir):
    m = load_model(str(tiny_model_dir), device="cpu")
    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=1.0)
    a = sample(m, [3, 4], steps=5, eta=1.0)
    b = sample(guided, [3, 4], steps=5, eta=1.0)
    for ta, tb in zip(a, b):
        assert torch.equal(ta.x_0, tb.x_0) and torch.equal(ta.hs, tb.hs)
    c = sample(load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=3.0),
               [3], steps=5, eta=1.0)
    assert not torch.allclose(c[0].x_0, a[0].x_0, atol=1e-3)


def test_h_is_the_main_models_and_an_edit_moves_the_output_weight_times(tiny_model_dir, guide_dir):
    m = load_model(str(tiny_model_dir), device="cpu")
    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=4.0)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    t = torch.tensor(600)
    rec_m, rec_g = [], []
    with m.denoiser.hook("after", record=rec_m):
        _outputs(m, x, t)
    with guided.denoiser.hook("after", record=rec_g):
        _outputs(guided, x, t)
    assert len(rec_g) == 1 and torch.allclose(rec_g[0], rec_m[0])
    delta = 0.3 * torch.randn(rec_m[0].shape, generator=torch.Generator().manual_seed(3))

    def edited(model):
        with model.denoiser.hook("after", edit=lambda h: h + delta):
            return _outputs(model, x, t)

    dm = edited(m) - _outputs(m, x, t)
    dg = edited(guided) - _outputs(guided, x, t)
    assert dm.abs().max() > 1e-3
    assert torch.allclose(dg, 4.0 * dm, atol=1e-4)


def test_jacobian_of_the_guided_model_is_weight_times_the_models(tiny_model_dir, guide_dir):
    from hspace_studio.engine.discover.jacobian import DownstreamEps

    m = load_model(str(tiny_model_dir), device="cpu")
    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=2.0)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    t = m.scheduler.timesteps[2]
    with DownstreamEps(m, x, t, "after") as fm:
        v = torch.randn(fm.h0.shape, generator=torch.Generator().manual_seed(5))
        jm = torch.func.jvp(fm, (fm.h0,), (v,))[1]
    with DownstreamEps(guided, x, t, "after") as fg:
        assert torch.allclose(fg.h0, fm.h0, atol=1e-6)
        jg = torch.func.jvp(fg, (fg.h0,), (v,))[1]
    assert torch.allclose(jg, 2.0 * jm, atol=1e-4, rtol=1e-4)


def test_edit_friendly_inversion_stays_exact_with_guidance(tiny_model_dir, guide_dir):
    from hspace_studio.engine.inversion import invert
    from hspace_studio.engine.sampler import decode

    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=3.0)
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(6)) * 2 - 1
    inv = invert(guided, img, steps=6, eta=1.0)
    assert inv.max_error < 1e-4
    # replayed by the guided sampler, the recorded noise gives the image back
    replayed = decode(guided, inv.trajectory)
    assert torch.allclose(replayed.x_0, img, atol=1e-4)


def test_bad_guides_and_settings_are_refused(tmp_path, tiny_model_dir, guide_dir):
    other = save_pixel_model(tmp_path / "other", sample_size=8)
    with pytest.raises(ModelLoadError, match="sample_size"):
        load_model(str(tiny_model_dir), device="cpu", guide=str(other))
    vpred = save_pixel_model(tmp_path / "vpred", prediction_type="v_prediction")
    with pytest.raises(ModelLoadError, match="prediction_type"):
        load_model(str(tiny_model_dir), device="cpu", guide=str(vpred))
    with pytest.raises(ModelLoadError, match="no guide model folder"):
        load_model(str(tiny_model_dir), device="cpu", guide=str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="needs a guide"):
        load_model(str(tiny_model_dir), device="cpu", guide_weight=2.0)
    with pytest.raises(ModelLoadError, match="interval"):
        load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_interval=(700, 300))
    with pytest.raises(ModelLoadError, match="finite"):
        load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=float("nan"))


def test_cli_samples_with_a_guide_and_records_it(tmp_path, tiny_model_dir, guide_dir, capsys):
    from hspace_studio.cli import main

    out = tmp_path / "s.png"
    rc = main(["sample", "--model", str(tiny_model_dir), "--guide", str(guide_dir), "--guide-weight", "3",
               "--guide-interval", "200:999", "--steps", "4", "--seed", "1", "--out", str(out)])
    assert rc == 0 and out.is_file()
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    recipe = read_recipe(out)
    assert recipe["guide"] == {"model": str(guide_dir), "weight": 3.0, "interval": [200, 999]}
    again = tmp_path / "again.png"
    assert main(recipe_to_cli_args(recipe, str(again))) == 0
    import numpy as np
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))
    unguided = tmp_path / "plain.png"
    assert main(["sample", "--model", str(tiny_model_dir), "--steps", "4", "--seed", "1", "--out", str(unguided)]) == 0
    assert "guide" not in read_recipe(unguided)
    assert not np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(unguided)))
    assert main(["sample", "--model", str(tiny_model_dir), "--guide", str(guide_dir), "--guide-weight", "inf",
                 "--seed", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert "finite" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_default_model_loads_with_its_shipped_guide():
    from hspace_studio.engine.model import DEFAULT_GUIDE_DIR

    info = json.loads((DEFAULT_GUIDE_DIR / "training.json").read_text())
    assert info["step"] < json.loads((DEFAULT_GUIDE_DIR.parent / "default-model" / "training.json").read_text())["step"]
    m = load_model("default", device="cpu")
    guided = load_model("default", device="cpu", guide="default")
    assert guided.info["guide_weight"] == 4.0
    a = sample(m, [7], steps=4, eta=0.0)[0].x_0
    b = sample(guided, [7], steps=4, eta=0.0)[0].x_0
    assert torch.isfinite(b).all() and b.abs().max() < 2
    assert not torch.allclose(a, b, atol=1e-2)


def test_directions_belong_to_the_weights_and_trajectories_to_the_guided_chain(tmp_path, tiny_model_dir,
                                                                                 guide_dir, capsys):
    """A direction file found without a guide edits with one (it lives in the same network's
    h-space), while a trajectory sampled without the guide is refused by the guided model
    (its chain is another one)."""
    from hspace_studio.cli import main
    from hspace_studio.engine.directions import DirectionSet

    m = load_model(str(tiny_model_dir), device="cpu")
    guided = load_model(str(tiny_model_dir), device="cpu", guide=str(guide_dir), guide_weight=3.0)
    assert guided.weights_fingerprint == m.fingerprint == m.weights_fingerprint
    assert guided.fingerprint != m.fingerprint and f"weights {m.fingerprint}" in guided.describe()
    pcs, traj = tmp_path / "pcs.safetensors", tmp_path / "face.safetensors"
    model = ["--model", str(tiny_model_dir)]
    guide = ["--guide", str(guide_dir), "--guide-weight", "3"]
    assert main(["pca", *model, "--samples", "6", "--steps", "4", "--components", "2", "--out", str(pcs)]) == 0
    assert DirectionSet.load(pcs).fingerprint == m.fingerprint
    edit = ["edit", "--seed", "5", "--steps", "4", "--direction", f"{pcs}:0", "--scale", "3"]
    outs = {}
    for name, extra in (("plain", []), ("guided", guide)):
        outs[name] = tmp_path / f"{name}.png"
        assert main([*edit, *model, *extra, "--out", str(outs[name])]) == 0, capsys.readouterr().err
    import numpy as np
    from PIL import Image

    plain, with_guide = (np.asarray(Image.open(outs[k])) for k in ("plain", "guided"))
    assert not np.array_equal(plain, with_guide)
    # the same edit on the guided model, by the engine: the direction file's change of h
    from hspace_studio.engine.sampler import EditSpec
    from hspace_studio.engine.sampler import edit as run_edit

    t = sample(guided, [5], steps=4, eta=1.0)[0]
    ds = DirectionSet.load(pcs).for_timesteps(t.timesteps)
    x0 = run_edit(guided, t, [EditSpec(ds.steps_delta(0), 3.0)])
    assert not torch.allclose(x0, t.x_0, atol=1e-4)
    # a trajectory sampled without the guide does not replay on the guided chain
    assert main(["sample", *model, "--seed", "5", "--steps", "4", "--out", str(tmp_path / "s.png"),
                 "--trajectory", str(traj)]) == 0
    capsys.readouterr()
    assert main(["edit", "--trajectory", str(traj), "--direction", f"{pcs}:0", "--scale", "3", *model, *guide,
                 "--out", str(tmp_path / "x.png")]) != 0
    assert "model" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
