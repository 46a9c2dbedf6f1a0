"""Training batches streamed by seed: the same images with or without worker processes."""
import numpy as np
import pytest
import torch

from hspace_studio.toyfaces.generator import render_batch
from hspace_studio.training.stream import SEED_BASE, batches


def take(gen, n):
    out = [next(gen) for _ in range(n)]
    gen.close()
    return out


def test_batches_are_the_generator_images_of_consecutive_seeds():
    got = take(batches(5, 3, size=16), 2)
    assert [pos for pos, _ in got] == [8, 11]
    for k, (_, x) in enumerate(got):
        want, _, _ = render_batch(range(SEED_BASE + 5 + 3 * k, SEED_BASE + 8 + 3 * k), 16)
        assert x.dtype == np.float32 and x.shape == (3, 3, 16, 16)
        assert np.array_equal(x, want)


def test_workers_render_the_same_batches_in_order():
    plain = take(batches(0, 4, size=16), 5)
    par = take(batches(0, 4, size=16, workers=2), 5)
    assert [p for p, _ in par] == [p for p, _ in plain]
    for (_, a), (_, b) in zip(plain, par):
        assert np.array_equal(a, b)
    # a resumed stream (saved position 8) starts with the third batch
    (_, resumed), = take(batches(8, 4, size=16, workers=1), 1)
    assert np.array_equal(resumed, plain[2][1])


def test_bad_batch_is_refused():
    with pytest.raises(ValueError):
        next(batches(0, 0))


def test_training_with_workers_trains_the_same_weights(tmp_path):
    from diffusers import UNet2DModel

    from hspace_studio.training import ddpm

    common = ["--max-steps", "3", "--batch", "2", "--size", "16", "--channels", "16,16,32,32",
              "--threads", "1", "--no-bf16"]
    ddpm.main(["--out", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "ca"), *common])
    ddpm.main(["--out", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "cb"),
               "--workers", "2", *common])
    a = UNet2DModel.from_pretrained(tmp_path / "a").state_dict()
    b = UNet2DModel.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(tmp_path / "ca" / "state.pt", weights_only=True)
    sb = torch.load(tmp_path / "cb" / "state.pt", weights_only=True)
    assert sa["seed_pos"] == sb["seed_pos"] == 6


def test_negative_workers_is_a_usage_error(tmp_path):
    from hspace_studio.training import ddpm

    with pytest.raises(SystemExit):
        ddpm.main(["--out", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "c"), "--workers", "-1"])
