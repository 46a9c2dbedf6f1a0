"""The Qt-free mask document: strokes, actions, undo records, PNG files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hspace_studio.core.errors import ImageError
from hspace_studio.core.mask import MaskDocument, read_mask_png, resize_nearest


def test_stroke_covers_pixels_within_radius_of_the_path():
    doc = MaskDocument((20, 30))
    ch = doc.stroke([(2.5, 5.5), (20.5, 5.5)], radius=1.0)
    a = doc.array
    assert a[5, 2:21].all()  # the path's own row
    assert a[4, 10] and a[6, 10]  # one pixel either side (distance 1)
    assert not a[3, 10] and not a[7, 10]
    assert not a[5, 23]
    assert ch.name == "Paint" and ch.changed
    assert not ch.before.any() and np.array_equal(ch.after, a)


def test_a_single_click_stamps_a_disc_and_erase_removes():
    doc = MaskDocument((16, 16))
    doc.stroke([(8.0, 8.0)], radius=2.0)
    assert doc.array.sum() == 12  # pixel centres within distance 2 of a pixel corner
    ch = doc.stroke([(8.0, 8.0)], radius=0.8, erase=True)
    assert ch.name == "Erase"
    assert not doc.array[7:9, 7:9].any() and doc.array.sum() == 8


def test_strokes_off_the_image_are_clipped():
    doc = MaskDocument((8, 8))
    doc.stroke([(-10, -10), (-5, -5)], 2)
    assert not doc.array.any()
    doc.stroke([(-3, 4.5), (20, 4.5)], 0.6)
    assert doc.array[4].all() and doc.array.sum() == 8


def test_actions_and_undo_records():
    doc = MaskDocument((4, 5))
    ch = doc.invert()
    assert doc.array.all() and not ch.before.any()
    doc.apply(ch.before)  # undo
    assert not doc.array.any()
    other = np.zeros((4, 5), bool)
    other[1, 1] = True
    doc.combine(other, "add")
    doc.combine(np.ones((4, 5), bool), "subtract")
    assert not doc.array.any()
    doc.fill()
    doc.combine(other, "intersect")
    assert np.array_equal(doc.array, other)
    assert not doc.clear().after.any()
    with pytest.raises(ValueError):
        doc.combine(np.ones((3, 3), bool))
    with pytest.raises(ValueError):
        doc.combine(other, "xor")


def test_png_round_trip_and_resize(tmp_path):
    doc = MaskDocument((12, 10))
    doc.stroke([(2, 2), (8, 9)], 1.5)
    p = tmp_path / "m.png"
    doc.save_png(p)
    back = MaskDocument((12, 10))
    back.load_png(p)
    assert np.array_equal(back.array, doc.array)
    big = MaskDocument((24, 20))
    big.load_png(p)  # nearest-neighbour resize
    assert np.array_equal(big.array[::2, ::2], doc.array)
    # RGBA: the alpha channel is the mask
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[2:4, 2:4, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_mask_png(tmp_path / "a.png").sum() == 4


def test_bad_mask_files(tmp_path):
    (tmp_path / "x.png").write_text("no")
    with pytest.raises(ImageError):
        read_mask_png(tmp_path / "x.png")
    with pytest.raises(ImageError):
        read_mask_png(tmp_path / "missing.png")


def test_resize_nearest_identity():
    a = np.arange(12).reshape(3, 4)
    assert np.array_equal(resize_nearest(a, (3, 4)), a)
