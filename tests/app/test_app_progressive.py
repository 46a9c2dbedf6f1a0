"""Slow renders in the application layer: each step's preview (the shown image plus what the
edit changes in that step's prediction) and strips that yield to renders a chain at a time
and go on from their finished images."""
import numpy as np
import pytest
import torch

from hspace_studio.app import requests as R
from hspace_studio.app.progressive import strip_chunk
from hspace_studio.app.state import EngineState
from hspace_studio.core.errors import Cancelled
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine.directions import DirectionSet
from hspace_studio.engine.sampler import EditSpec, edit_batch
from tests.app.test_app_handlers import Edit, run

STEPS = 6


@pytest.fixture
def state(tiny_model_dir, tmp_path):
    st = EngineState()
    run(st, R.LoadModel(str(tiny_model_dir), device="cpu"))
    run(st, R.Sample(seed=3, steps=STEPS, eta=1.0))
    traj = st.traj
    g = torch.Generator().manual_seed(1)
    delta = torch.randn((2, *traj.hs.shape), generator=g) * traj.hs.std() * 0.5
    ds = DirectionSet(delta_h=delta, timesteps=traj.timesteps.clone(), fingerprint=st.model.fingerprint,
                      h_space=traj.h_space, method="pca", labels=["a", "b"])
    st.library.add_set(ds, "dirs", set_id="d")
    return st


def _previews(state, edits):
    got = {}
    x0 = state.renderer.render_x0(edits, preview=lambda i, total, image: got.__setitem__(i, image.clone()))
    return x0, got


def test_a_step_preview_is_the_shown_image_plus_the_change_of_that_steps_prediction(state):
    """Against the chains run directly: the shown image's (an edit from step 3 on, after the
    image's own steps 0-2) and the new edit's (from step 1 on)."""
    traj, model = state.traj, state.model
    a = Edit("d", 0, 1.5, window=(int(traj.timesteps[3]), 0))
    b = Edit("d", 1, -1.0, window=(int(traj.timesteps[1]), 0))
    x0_a = state.renderer.render_x0((a,))
    _x0_b, previews = _previews(state, (a, b))
    assert sorted(previews) == list(range(1, STEPS))  # from the first step the new edit changes on

    da, db = state.renderer.delta("d", 0), state.renderer.delta("d", 1)
    spec_a = EditSpec(da, 1.5, a.window)
    run_a = edit_batch(model, traj, [[spec_a]], keep_x0s=True)
    run_b = edit_batch(model, traj, [[spec_a, EditSpec(db, -1.0, b.window)]], keep_x0s=True)
    assert run_a.x0s.shape[1] == STEPS - 3 and run_b.x0s.shape[1] == STEPS - 1
    shown = torch.cat([traj.x0s[:3], run_a.x0s[0]])  # the shown image's chain: its own steps, then a's
    for i in range(1, STEPS):
        want = x0_a + run_b.x0s[0, i - 1] - shown[i]
        torch.testing.assert_close(previews[i], want, rtol=1e-4, atol=1e-4)
    # the image's own chain as sampling kept it is the chain decode replays
    torch.testing.assert_close(traj.x0s[:3], edit_batch(model, traj, [[EditSpec(da, 1e-9)]],
                                                        keep_x0s=True).x0s[0, :3], rtol=1e-4, atol=1e-4)


def test_step_previews_are_nearer_the_exact_image_than_the_steps_prediction(state):
    """What the user sees after one network call: the corrected preview is nearer the exact
    edited image than the step's predicted image is, at every step."""
    b = Edit("d", 0, 1.0)
    x0_b, previews = _previews(state, (b,))
    plain = edit_batch(state.model, state.traj, [state.renderer.specs((b,))], keep_x0s=True).x0s[0]
    for i, p in previews.items():
        if i < STEPS - 1:
            assert (p - x0_b).norm() < (plain[i] - x0_b).norm(), i
    torch.testing.assert_close(previews[STEPS - 1], x0_b, rtol=1e-5, atol=1e-4)  # the last is the image
    # no change: every step shows the image itself
    state.renderer.render_x0(())
    a = Edit("d", 0, 1e-12)
    _x, same = _previews(state, (a,))
    for p in same.values():
        torch.testing.assert_close(p, state.traj.x_0, rtol=0, atol=1e-4)


def test_strip_chunks_fit_one_network_call():
    assert strip_chunk(None, 5) == 1  # not measured yet: one chain at a time
    assert strip_chunk(2.0, 5) == 1  # a real-size UNet: a render waits one call at most
    assert strip_chunk(0.05, 5) == 5
    assert strip_chunk(0.1, 5) == 2


def test_a_cancelled_strip_goes_on_from_its_finished_images(state):
    item, scales = Edit("d", 0, 1.0), (-2.0, -1.0, 1.0, 2.0)
    state.renderer.call_seconds = 10.0  # as on a real-size model: one chain per network call
    batches = []
    net = state.model.net
    hook = net.register_forward_pre_hook(lambda _m, args: batches.append(int(args[0].shape[0])))
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done >= 2 * STEPS:  # two chains finished: something more urgent comes
            token.cancel()

    with pytest.raises(Cancelled):
        state.renderer.render_strip(item, scales, (), cancel=token, progress=progress)
    # one chain at a time; the next chain's first step was in flight when the cancel came
    assert set(batches) == {1} and len(batches) == 2 * STEPS + 1
    batches.clear()
    seen.clear()
    images = state.renderer.render_strip(item, scales, (), progress=lambda d, t: seen.append((d, t)))
    hook.remove()
    assert len(batches) == 2 * STEPS  # only the two chains not finished before
    assert seen[0][0] > 2 * STEPS - 1 and seen[-1] == (4 * STEPS, 4 * STEPS)
    whole = state.renderer.strip_x0(item, scales, ())  # one batch, as an export makes it
    for img, x in zip(images, whole):
        assert np.abs(img.astype(int) - state.models.pixels(x).astype(int)).max() <= 1


def test_a_session_keeps_the_chains_predictions(state, tmp_path):
    """A session reopened shows step previews as before: the chain's predicted x_0s travel
    in the session (older sessions without them still open)."""
    from hspace_studio.app.handlers import run_job

    path = str(tmp_path / "s.json")
    doc = {"model": {"source": state.model_info.source, "h_space": state.h_space,
                     "fingerprint": state.model_info.fingerprint}, "source": dict(state.image.source)}
    run_job(state, R.SaveSession(path, doc, None, ("d",)), lambda *a: None, CancelToken())
    other = EngineState()
    payload = run_job(other, R.LoadSession(path, "cpu"), lambda *a: None, CancelToken())
    assert payload.trajectory is not None and other.traj.x0s is not None
    torch.testing.assert_close(other.traj.x0s, state.traj.x0s)


def test_a_resumed_strip_keeps_its_own_images_when_older_ones_are_dropped(state):
    """The kept images are bounded (the oldest go first); a strip whose first images are the
    oldest kept still returns all of its images."""
    from hspace_studio.app.renderer import STRIP_IMAGES_KEPT

    item, scales = Edit("d", 0, 1.0), (-2.0, -1.0, 1.0, 2.0)
    state.renderer.call_seconds = 10.0  # one chain per network call
    token = CancelToken()

    def progress(done, total):
        if done >= 2 * STEPS:
            token.cancel()

    with pytest.raises(Cancelled):
        state.renderer.render_strip(item, scales, (), cancel=token, progress=progress)
    for k in range(STRIP_IMAGES_KEPT):  # other strips' images, kept after this one's
        state.renderer._strip_done[("other", k)] = np.zeros((2, 2, 3), np.uint8)
    images = state.renderer.render_strip(item, scales, ())
    assert len(images) == len(scales)
