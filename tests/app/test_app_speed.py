"""The engine's speed settings through the application layer (SetAcceleration)."""
import numpy as np
import pytest

from hspace_studio.app import requests as R
from hspace_studio.engine.compiled import accelerated, compiler_available

from tests.app.test_app_handlers import Edit, run  # noqa: F401  (fixtures below)
from tests.app.test_app_handlers import sampled, state  # noqa: F401


@pytest.mark.slow  # builds the code for two batch sizes: about 90 s here
@pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")
def test_compiled_engine_renders_the_same_images(sampled):
    state, info = sampled
    sets, _ = run(state, R.DiscoverPCA(samples=6, k=2, steps=6, seed=0, mode="global"))
    edits = (Edit(sets[0].set_id, 0, 2.5),)
    plain = state.renderer.render(edits)
    in_force, calls = run(state, R.SetAcceleration(compile=True))
    assert in_force == {"compile": True, "bf16": False, "low_memory": False} and accelerated(state.model)
    assert calls[0][2].startswith("building the compiled network")
    fast = state.renderer.render(edits)
    assert np.abs(fast.astype(int) - plain.astype(int)).max() <= 1  # float32 rounding, in 8-bit levels
    strip = state.renderer.render_strip(Edit(sets[0].set_id, 0, 1.0), (-2.5, 0.0, 2.5), ())
    assert np.abs(strip[2].astype(int) - plain.astype(int)).max() <= 1
    run(state, R.SetAcceleration())
    assert not accelerated(state.model)
    assert np.array_equal(state.renderer.render(edits), plain)


def test_bf16_export_records_it_and_replays_through_the_cli(sampled, tmp_path):
    from PIL import Image

    from hspace_studio.cli import main as cli_main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    state, info = sampled
    sets, _ = run(state, R.DiscoverPCA(samples=6, k=2, steps=6, seed=0, mode="global"))
    edits = (Edit(sets[0].set_id, 1, -2.0),)
    plain = state.renderer.render(edits)
    in_force, _ = run(state, R.SetAcceleration(bf16=True))
    assert in_force == {"compile": False, "bf16": True, "low_memory": False}
    out = tmp_path / "bf16.png"
    run(state, R.ExportImage(str(out), edits, ((sets[0].set_id, None),)))
    recipe = read_recipe(out)
    assert recipe["bf16"] is True
    args = recipe_to_cli_args(recipe, str(tmp_path / "again.png"))
    assert "--bf16" in args
    exported = np.asarray(Image.open(out).convert("RGB"))
    assert not np.array_equal(exported, plain)  # bf16 arithmetic: not float32's image
    assert cli_main(args) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png").convert("RGB")), exported)


def test_a_cancelled_build_keeps_the_setting_before(sampled):
    from hspace_studio.core.errors import Cancelled
    from hspace_studio.core.progress import CancelToken

    state, info = sampled
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run(state, R.SetAcceleration(compile=True), cancel=token)
    assert state.models.acceleration == {"compile": False, "bf16": False, "low_memory": False}
    assert not accelerated(state.model)
    assert np.array_equal(state.renderer.render(()), info.image)


def test_the_low_memory_mode_tiles_the_autoencoder_and_an_export_records_it(tmp_path):
    """On a latent model the setting tiles its autoencoder (and records it in an export), and
    turns it off again; images of the autoencoder's size are the same."""
    from hspace_studio.app.state import EngineState
    from hspace_studio.engine.images import read_recipe
    from tests.tiny_models import save_sd_model

    state = EngineState()
    state.load_model(str(save_sd_model(tmp_path / "sd")), None)
    run(state, R.Sample(seed=1, steps=3, eta=1.0))
    plain = state.renderer.render(())
    in_force, _ = run(state, R.SetAcceleration(low_memory=True))
    assert in_force["low_memory"] and state.model.vae.use_tiling and state.model.info["low_memory"]
    assert np.array_equal(state.renderer.render(()), plain)
    out = tmp_path / "low.png"
    run(state, R.ExportImage(str(out), (), ()))
    assert read_recipe(out)["low_memory"] is True
    run(state, R.SetAcceleration())
    assert not state.model.vae.use_tiling and "low_memory" not in state.model.info
