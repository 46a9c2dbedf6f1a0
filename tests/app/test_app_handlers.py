"""The application layer without widgets: handlers run on an EngineState as the GUI's worker runs them."""
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pytest

from hspace_studio.app import records, requests as R
from hspace_studio.app.handlers import HANDLERS, run_job
from hspace_studio.app.state import EngineState
from hspace_studio.core.errors import Cancelled, HSpaceError
from hspace_studio.core.progress import CancelToken

SEED = 3


@dataclass(frozen=True)
class Edit:
    """An active direction as the handlers read it (the GUI's ``EditItem`` has these fields)."""

    set_id: str
    index: int
    scale: float
    window: Optional[Tuple[int, int]] = None
    at_timestep: Optional[int] = None
    asymmetric: bool = False


def run(state, job, cancel=None):
    """Run one job the way ``gui/worker.py`` does: a progress callable and a cancel token."""
    calls = []
    value = run_job(state, job, lambda done, total, msg="": calls.append((done, total, msg)),
                    cancel or CancelToken())
    return value, calls


@pytest.fixture
def state(tiny_model_dir):
    st = EngineState()
    info, _ = run(st, R.LoadModel(str(tiny_model_dir), device="cpu"))
    assert isinstance(info, records.ModelInfo) and info.h_space == "after"
    return st


@pytest.fixture
def sampled(state):
    info, calls = run(state, R.Sample(seed=SEED, steps=6, eta=1.0))
    assert isinstance(info, records.TrajectoryInfo)
    assert calls and calls[-1][0] == calls[-1][1]
    return state, info


def test_no_qt_and_every_request_has_a_handler():
    code = ("import sys; from hspace_studio.app.handlers import run_job; "
            "from hspace_studio.app.state import EngineState; EngineState(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt')"
            " or m.startswith(('hspace_studio.gui', 'hspace_studio.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    jobs = [v for v in vars(R).values() if isinstance(v, type) and hasattr(v, "label")]
    assert set(jobs) == set(HANDLERS)


def test_sample_matches_the_engine_and_renders_edits(sampled, tiny_model):
    from hspace_studio.engine.sampler import sample

    state, info = sampled
    ref = sample(tiny_model, [SEED], steps=6, eta=1.0)[0]
    assert np.array_equal(info.image, state.models.pixels(ref.x_0))
    assert info.source == {"kind": "seed", "seed": SEED, "steps": 6, "eta": 1.0}
    sets, _ = run(state, R.DiscoverPCA(samples=6, k=2, steps=6, seed=0, mode="global"))
    sid = sets[0].set_id
    assert sets[0].status == "ok" and len(sets[0].directions) == 2
    assert np.array_equal(state.renderer.render(()), info.image)
    edited = state.renderer.render((Edit(sid, 0, 3.0),))
    assert edited.shape == info.image.shape and not np.array_equal(edited, info.image)
    strip = state.renderer.render_strip(Edit(sid, 0, 1.0), (-3.0, 0.0, 3.0), ())
    assert np.array_equal(strip[1], info.image) and np.array_equal(strip[2], edited)


def test_export_image_recipe_replays_through_the_cli(sampled, tmp_path):
    from PIL import Image

    from hspace_studio.cli import main as cli_main
    from hspace_studio.core.recipe import recipe_to_cli_args
    from hspace_studio.engine.images import read_recipe

    state, info = sampled
    sets, _ = run(state, R.DiscoverPCA(samples=6, k=2, steps=6, seed=0, mode="global"))
    edits = (Edit(sets[0].set_id, 1, -2.5),)
    out = tmp_path / "edited.png"
    value, _ = run(state, R.ExportImage(str(out), edits, ((sets[0].set_id, None),)))
    recipe = read_recipe(out)
    assert value["recipe"] == recipe and recipe["edits"][0]["direction"].endswith("edited.directions.safetensors")
    exported = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(exported, state.renderer.render(edits))
    again = tmp_path / "again.png"
    assert cli_main(recipe_to_cli_args(recipe, str(again))) == 0
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")), exported)


def test_segment_with_the_default_segmenter(sampled):
    state, info = sampled
    value, _ = run(state, R.Segment(("mouth",)))
    assert value["mask"].shape == info.image.shape[:2] and value["mask"].dtype == bool
    assert "mouth" in value["known"]


def test_session_round_trip_and_errors(sampled, tmp_path):
    state, info = sampled
    path = tmp_path / "s.hspace"
    assert run(state, R.SaveSession(str(path), {"model": {"source": state.model_info.source}}))[0] == str(path)
    fresh = EngineState()
    payload, _ = run(fresh, R.LoadSession(str(path), device="cpu"))
    assert isinstance(payload, records.SessionPayload)
    assert np.array_equal(payload.trajectory.image, info.image)
    with pytest.raises(HSpaceError):
        run(EngineState(), R.Sample(seed=0))  # no model loaded
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run(state, R.Sample(seed=1, steps=6), cancel=token)
    assert state.traj is not None and run(state, R.Sleep(steps=2, seconds_per_step=0.0))[0] == 2


def test_latent_progressive_previews_decode_where_a_decode_is_cheap(latent_model_dir):
    """A latent model's intermediate x_0 is decoded for a progressive preview once the first
    exact image measured its decode under PREVIEW_DECODE_S, and not where it is slower."""
    import torch

    from hspace_studio.app import model_slot as S

    st = EngineState()
    run(st, R.LoadModel(str(latent_model_dir), device="cpu"))
    pred = torch.zeros(st.model.sample_shape)
    assert st.models.preview_pixels(pred) is None  # no decode measured yet
    info, _ = run(st, R.Sample(seed=SEED, steps=4, eta=1.0))  # its image is decoded once
    assert st.models._decode_seconds is not None and st.models._decode_seconds < S.PREVIEW_DECODE_S
    img = st.models.preview_pixels(pred)
    assert img is not None and img.shape == (*st.model_info.image_size, 3)
    assert np.array_equal(img, st.models.pixels(pred))
    st.models._decode_seconds = 10 * S.PREVIEW_DECODE_S  # as a large autoencoder on a CPU measures
    assert st.models.preview_pixels(pred) is None
