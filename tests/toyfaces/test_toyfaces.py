"""The procedural toyfaces generator: determinism, sizes, and label/mask consistency."""
import time

import numpy as np
import pytest

from hspace_studio.toyfaces.generator import (
    ATTRIBUTE_NAMES,
    PART_INDEX,
    PARTS,
    attribute_vector,
    factor_vector,
    render,
    render_batch,
    sample_factors,
)

N_MASK = 300  # faces rendered for the mask checks (about 1 ms each at 64 px)


@pytest.fixture(scope="module")
def faces():
    return [render(seed, 64) for seed in range(N_MASK)]


def test_same_seed_same_face():
    for seed in (0, 7, 20_000_123):
        a, b = render(seed, 64), render(seed, 64)
        assert np.array_equal(a[0], b[0])
        assert np.array_equal(a[1], b[1])
        assert a[2] == b[2]


def test_different_seeds_differ():
    imgs = [render(seed, 64)[0] for seed in range(20)]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert not np.array_equal(imgs[i], imgs[j]), (i, j)
    assert len({sample_factors(s) for s in range(200)}) == 200


@pytest.mark.parametrize("size", [32, 64, 96])
def test_size_parameter(size):
    rgb, lab, f = render(3, size)
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    assert lab.shape == (size, size) and lab.dtype == np.uint8
    assert lab.max() < len(PARTS)
    assert f == sample_factors(3)  # factors do not depend on the size
    # the same face at another size: label maps agree after resampling to the small size
    small = render(3, 32)[1]
    idx = (np.arange(32) + 0.5) * size / 32
    resampled = lab[idx.astype(int)][:, idx.astype(int)]
    assert (resampled == small).mean() > 0.9


def test_render_batch_matches_render():
    x, lab, facs = render_batch([5, 6, 7], 48)
    assert x.shape == (3, 3, 48, 48) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    rgb, l6, f6 = render(6, 48)
    assert np.allclose(x[1].transpose(1, 2, 0), rgb.astype(np.float32) / 127.5 - 1)
    assert np.array_equal(lab[1], l6) and facs[1] == f6


def test_glasses_pixels_iff_eyeglasses(faces):
    n_with = 0
    for rgb, lab, f in faces:
        n = int((lab == PART_INDEX["glasses"]).sum())
        if f.eyeglasses:
            n_with += 1
            assert n > 20, f
        else:
            assert n == 0, f
    assert 0.15 * N_MASK < n_with < 0.45 * N_MASK


def test_hair_pixels_follow_hair_style(faces):
    for rgb, lab, f in faces:
        hair = int((lab == PART_INDEX["hair"]).sum())
        if f.hair_style == "bald" and not f.beard:
            assert hair == 0, f
        else:
            assert hair > 50, f


def test_every_face_has_its_parts(faces):
    for rgb, lab, f in faces:
        for part in ("face", "mouth", "left_eye", "right_eye", "brows", "background"):
            assert (lab == PART_INDEX[part]).sum() > 0, (part, f)


def test_left_eye_left_of_right_eye(faces):
    for rgb, lab, f in faces:
        lx = np.nonzero(lab == PART_INDEX["left_eye"])[1]
        rx = np.nonzero(lab == PART_INDEX["right_eye"])[1]
        assert lx.mean() < rx.mean(), f
        assert lx.max() < rx.min(), f


def test_mouth_opens_wider(faces):
    closed = [int((lab == PART_INDEX["mouth"]).sum()) for _, lab, f in faces if not f.mouth_open]
    opened = [int((lab == PART_INDEX["mouth"]).sum()) for _, lab, f in faces if f.mouth_open]
    assert np.mean(opened) > 1.5 * np.mean(closed)


def test_face_pixels_coloured_by_skin_tone(faces):
    # pixels of the face label interior are close to the skin colour (or its nose shade)
    from hspace_studio.toyfaces.generator import SKIN_TONES

    for rgb, lab, f in faces[:50]:
        face = lab == PART_INDEX["face"]
        med = np.median(rgb[face].astype(float), axis=0)
        assert np.abs(med - np.array(SKIN_TONES[f.skin_tone])).max() < 12, f


def test_beard_only_with_short_hair():
    facs = [sample_factors(s) for s in range(2000)]
    beards = [f for f in facs if f.beard]
    assert all(f.hair_style == "short" for f in beards)
    short = sum(f.hair_style == "short" for f in facs)
    assert 0.35 * short < len(beards) < 0.65 * short  # about half of the short-haired faces


def test_attribute_and_factor_vectors():
    facs = [sample_factors(s) for s in range(2000)]
    a = np.stack([attribute_vector(f) for f in facs])
    assert a.shape == (2000, len(ATTRIBUTE_NAMES))
    assert set(np.unique(a)) <= {0.0, 1.0}
    # every attribute occurs both ways
    assert (a.mean(0) > 0.05).all() and (a.mean(0) < 0.95).all()
    # hair colours are exclusive and absent for bald heads
    col = [ATTRIBUTE_NAMES.index(c) for c in ("black_hair", "blond_hair", "red_hair", "grey_hair")]
    assert (a[:, col].sum(1) <= 1).all()
    bald = a[:, ATTRIBUTE_NAMES.index("bald")] == 1
    assert (a[bald][:, col] == 0).all()
    fv = factor_vector(facs[0])
    assert all(isinstance(v, float) for v in fv.values())


def test_generator_speed():
    t = time.perf_counter()
    render_batch(range(100), 64)
    per = (time.perf_counter() - t) / 100
    print(f"\ntoyfaces generator: {per * 1000:.2f} ms per 64x64 face ({1 / per:.0f} faces/s)")
    assert per < 0.1  # generous: only catches a pathological slowdown
