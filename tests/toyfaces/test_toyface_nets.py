"""The shipped toyfaces classifier and segmenter: held-out quality and file handling."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hspace_studio.toyfaces.generator import ATTRIBUTE_NAMES, PARTS, attribute_vector, render_batch
from hspace_studio.toyfaces.nets import (
    ToyFaceClassifier,
    ToyFaceSegmenter,
    load_classifier,
    load_segmenter,
    save_classifier,
    save_segmenter,
)

torch.set_num_threads(1)

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
CLASSIFIER = RESOURCES / "toyfaces-classifier"
SEGMENTER = RESOURCES / "toyfaces-segmenter"
REFEREE = RESOURCES / "toyfaces-referee"  # the same architecture, trained independently
HELD_OUT = list(range(200))  # training used seeds >= 20_000_000

# The shipped models measure (on these 200 seeds) 1.0 on the ten categorical
# attributes, smiling 0.95, big_eyes 0.975, wide_face 0.97, looking_right 0.99; IoU
# background 0.996, face 0.972, hair 0.977, eyes 0.955, brows 0.876, mouth 0.931,
# glasses 0.899 (see resources/MODEL_CARD_nets.md for the 500-seed figures). The bars
# sit a little below. The thresholded continuous attributes are ambiguous right at the
# threshold (smile near 0: the mouth corners move by a fraction of a pixel), so they
# get lower bars.
MIN_ACCURACY = {a: 0.99 for a in ATTRIBUTE_NAMES}
MIN_ACCURACY.update({"smiling": 0.93, "big_eyes": 0.95, "wide_face": 0.95, "looking_right": 0.96})
MIN_MEAN_ACCURACY = 0.98
MIN_IOU = {"background": 0.99, "face": 0.95, "hair": 0.95, "left_eye": 0.92, "right_eye": 0.92,
           "brows": 0.84, "mouth": 0.90, "glasses": 0.86}
MIN_MEAN_IOU = 0.92


@pytest.fixture(scope="module")
def held_out():
    x, lab, facs = render_batch(HELD_OUT, 64)
    y = np.stack([attribute_vector(f) for f in facs])
    return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64)), torch.from_numpy(y)


@pytest.mark.parametrize("folder", [CLASSIFIER, REFEREE], ids=["shipped", "referee"])
def test_classifier_accuracy(held_out, folder):
    x, _, y = held_out
    model, names = load_classifier(folder)
    assert names == ATTRIBUTE_NAMES
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x[:8])
    assert logits.shape == (len(HELD_OUT), len(names))
    assert feats.ndim == 2 and feats.shape[0] == 8 and 64 <= feats.shape[1] <= 128
    acc = ((logits > 0).float() == y).float().mean(0)
    report = {a: round(float(v), 3) for a, v in zip(names, acc)}
    print("\nclassifier accuracy:", report)
    for a, v in zip(names, acc):
        assert v >= MIN_ACCURACY[a], (a, float(v), report)
    assert acc.mean() >= MIN_MEAN_ACCURACY, report


def test_segmenter_iou(held_out):
    x, lab, _ = held_out
    model, names = load_segmenter(SEGMENTER)
    assert names == PARTS
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 50]).argmax(1) for i in range(0, len(x), 50)])
    assert pred.shape == lab.shape
    iou = {}
    for k, part in enumerate(names):
        p, t = pred == k, lab == k
        iou[part] = float((p & t).sum()) / float((p | t).sum())
    print("\nsegmenter IoU:", {p: round(v, 3) for p, v in iou.items()})
    for part, v in iou.items():
        assert v >= MIN_IOU[part], (part, v, iou)
    assert np.mean(list(iou.values())) >= MIN_MEAN_IOU, iou


def test_other_image_sizes():
    clf, _ = load_classifier(CLASSIFIER)
    seg, _ = load_segmenter(SEGMENTER)
    x = torch.zeros(2, 3, 96, 96)
    with torch.no_grad():
        assert clf(x).shape == (2, len(ATTRIBUTE_NAMES))
        assert seg(torch.zeros(1, 3, 50, 70)).shape == (1, len(PARTS), 50, 70)


def test_shipped_weights_are_small():
    total = sum(f.stat().st_size for d in (CLASSIFIER, SEGMENTER, REFEREE) for f in d.iterdir())
    assert total < 8 * 2**20


def test_referee_is_independent_of_the_shipped_classifier():
    """Other initialisation, other training images: a check of fitted edits, not a copy."""
    import json

    a, b = (json.loads((d / "config.json").read_text())["training"] for d in (CLASSIFIER, REFEREE))
    assert b["seed"] != a.get("seed", 0) and b["train_seeds_from"] != a["train_seeds_from"]
    wa, _ = load_classifier(CLASSIFIER)
    wb, _ = load_classifier(REFEREE)
    first = next(iter(wa.state_dict()))
    assert not torch.equal(wa.state_dict()[first], wb.state_dict()[first])


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    clf = ToyFaceClassifier(3, width=8, feature_dim=64).eval()
    seg = ToyFaceSegmenter(2, width=4).eval()
    save_classifier(tmp_path / "c", clf, ["a", "b", "c"])
    save_segmenter(tmp_path / "s", seg, ["x", "y"])
    assert not list(tmp_path.glob("*/*.tmp"))
    clf2, n1 = load_classifier(tmp_path / "c")
    seg2, n2 = load_segmenter(tmp_path / "s")
    assert n1 == ["a", "b", "c"] and n2 == ["x", "y"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(clf(x), clf2(x))
        assert torch.equal(seg(x), seg2(x))
    with pytest.raises(ValueError, match="names"):
        save_classifier(tmp_path / "bad", clf, ["a", "b"])


@pytest.fixture
def copies(tmp_path):
    c, s = tmp_path / "clf", tmp_path / "seg"
    shutil.copytree(CLASSIFIER, c)
    shutil.copytree(SEGMENTER, s)
    return c, s


def test_missing_files(copies, tmp_path):
    c, s = copies
    with pytest.raises(FileNotFoundError, match="not found"):
        load_classifier(tmp_path / "nowhere")
    (c / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_classifier(c)
    (s / "parts.json").unlink()
    with pytest.raises(FileNotFoundError, match="parts.json"):
        load_segmenter(s)


def test_truncated_weights(copies):
    c, s = copies
    for folder, load in ((c, load_classifier), (s, load_segmenter)):
        w = folder / "model.safetensors"
        data = w.read_bytes()
        w.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="safetensors"):
            load(folder)
        w.write_bytes(b"")
        with pytest.raises(ValueError, match="safetensors"):
            load(folder)


def test_wrong_names_json(copies):
    c, s = copies
    names = c / "attributes.json"
    names.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_classifier(c)
    names.write_text(json.dumps({"smiling": 0}))
    with pytest.raises(ValueError, match="list of strings"):
        load_classifier(c)
    names.write_text(json.dumps(ATTRIBUTE_NAMES[:-1]))  # one name short: weights do not fit
    with pytest.raises(ValueError, match="13 names"):
        load_classifier(c)
    (s / "parts.json").write_text(json.dumps(PARTS + ["hat"]))
    with pytest.raises(ValueError, match="9 names"):
        load_segmenter(s)


def test_wrong_kind_and_config(copies):
    c, s = copies
    with pytest.raises(ValueError, match="classifier"):
        load_classifier(s)
    cfg = json.loads((c / "config.json").read_text())
    cfg["width"] = cfg["width"] * 2
    (c / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape|match"):
        load_classifier(c)
