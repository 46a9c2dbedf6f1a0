"""Supervised directions, the annotation index, classifiers and naming."""
import json

import pytest
import torch

from hspace_studio.core.errors import Cancelled, FileFormatError, ModelMismatchError
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine import load_model, sample
from hspace_studio.engine.annotate import CallableClassifier, ClassifierError, TorchScriptClassifier, load_classifier
from hspace_studio.toyfaces.domain import ToyFaceAttributeClassifier
from hspace_studio.toyfaces.quality import CLASSIFIER_DIR as TOYFACES_CLASSIFIER_DIR
from hspace_studio.engine.directions import DirectionSet, disentangle
from hspace_studio.engine.discover.naming import apply_names, name_directions
from hspace_studio.engine.discover.supervised import (AnnotationIndex, build_index, select_examples,
                                                      supervised_directions, supervised_from_images)
from hspace_studio.engine.images import save_png, to_pil

STEPS = 2
N = 600


@pytest.fixture(scope="module")
def model(tiny_model_8_dir):
    return load_model(str(tiny_model_8_dir), device="cpu")


@pytest.fixture(scope="module")
def population(model):
    """h (all steps, flattened, centred) and clamped x_0 of seeds 0..N-1."""
    trajs = sample(model, list(range(N)), steps=STEPS, eta=1.0, batch_size=32, keep_chain=False)
    H = torch.stack([t.hs for t in trajs]).reshape(N, -1).double()
    X0 = torch.stack([t.x_0 for t in trajs]).clamp(-1, 1).reshape(N, -1).double()
    return H - H.mean(0), X0


def linear_classifier(population, W):
    """Scores = (h - mean h) @ W for the sample an image comes from (found by its x_0):
    a classifier whose score is a known linear function of h."""
    Hc, X0 = population

    def fn(images):
        idx = torch.cdist(images.reshape(images.shape[0], -1).double(), X0).argmin(1)
        return (Hc[idx] @ W).float()

    return CallableClassifier(fn, [f"a{i}" for i in range(W.shape[1])], name="linear-h")


def _cos(a, b):
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    return float(a @ b / (a.norm() * b.norm()))


def test_recovers_a_linear_function_of_h(model, population):
    """The mean difference of the top-K and bottom-K samples estimates Sigma w for a score
    w . h. For w an eigenvector of the covariance (here the first principal axis) that is
    w's own direction; for any other w it is Sigma w."""
    Hc, _ = population
    _, _, Vh = torch.linalg.svd(Hc, full_matrices=False)
    g = torch.Generator().manual_seed(0)
    w_rand = torch.randn(Hc.shape[1], generator=g, dtype=torch.float64)
    W = torch.stack([Vh[0], w_rand], 1)
    clf = linear_classifier(population, W)
    index = build_index(model, clf, N, None, steps=STEPS, eta=1.0, batch=32)
    res = supervised_directions(model, index, ["a0", "a1"], examples=120, batch=32)
    ds = res.directions
    assert ds.delta_h.shape == (2, STEPS, 32, 4, 4) and ds.labels == ["a0", "a1"]
    assert _cos(ds.delta_h[0], Vh[0]) > 0.95
    sigma_w = Hc.T @ (Hc @ w_rand) / (N - 1)
    assert _cos(ds.delta_h[1], sigma_w) > 0.95
    # values: the score gap between the positive and negative sets, repeated over T
    ex = select_examples(index, "a0", 120)
    assert ds.values[0] == [pytest.approx(ex.gap)] * STEPS and ex.gap > 0
    p = ds.params
    assert p["method"] == "supervised" and p["examples"] == 120 and p["samples"] == N
    assert p["seeds"] == {"start": 0, "count": N} and p["steps"] == STEPS
    assert p["directions"][0]["positive_seeds"] == ex.positive


def test_against_projects_out_other_attributes(model, population):
    Hc, _ = population
    g = torch.Generator().manual_seed(1)
    W = torch.randn(Hc.shape[1], 2, generator=g, dtype=torch.float64)
    clf = linear_classifier(population, W)
    index = build_index(model, clf, 80, None, steps=STEPS, batch=40)
    both = supervised_directions(model, index, ["a0", "a1"], examples=20, batch=40).directions
    dis = supervised_directions(model, index, "a0", examples=20, against=["a1"], batch=40).directions
    assert len(dis) == 1 and dis.labels[0] == "a0 ⟂ a1" and dis.params["against"] == ["a1"]
    assert abs(_cos(dis.delta_h[0], both.delta_h[1])) < 1e-5
    assert torch.allclose(dis.delta_h[0], disentangle(both.delta_h[0], [both.delta_h[1]]), atol=1e-5)
    with pytest.raises(ValueError, match="against itself"):
        supervised_directions(model, index, "a0", examples=5, against=["a0"])
    with pytest.raises(ValueError, match="unknown attribute"):
        supervised_directions(model, index, "nose", examples=5)
    with pytest.raises(ValueError, match="need at least"):
        supervised_directions(model, index, "a0", examples=41)


def _brightness_classifier():
    return CallableClassifier(lambda x: torch.stack([x[:, 0].mean((1, 2)), x.mean((1, 2, 3))], 1),
                              ["red", "bright"], name="brightness")


def test_index_resume_after_interruption_equals_uninterrupted(model, tmp_path):
    clf = _brightness_classifier()
    full = build_index(model, clf, 20, tmp_path / "full.json", steps=STEPS, batch=6)
    tok = CancelToken()

    def cancel_midway(done, total, msg):
        if done > 2 * 6 * STEPS:  # inside the third batch
            tok.cancel()

    path = tmp_path / "resumed.json"
    with pytest.raises(Cancelled):
        build_index(model, clf, 20, path, steps=STEPS, batch=6, progress=cancel_midway, cancel=tok)
    partial = AnnotationIndex.load(path)
    assert partial.seeds == list(range(12))  # two whole batches saved, nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    calls = []
    resumed = build_index(model, clf, 20, path, steps=STEPS, batch=6,
                          progress=lambda d, t, m: calls.append(t))
    assert calls and calls[-1] == 8 * STEPS  # only the 8 missing seeds were sampled
    assert len(calls) == 2 * STEPS  # in two batches
    assert resumed.seeds == full.seeds == list(range(20))
    assert resumed.scores == full.scores
    assert AnnotationIndex.load(path).scores == full.scores
    # reuse with a larger size extends it; a smaller one is a subset
    assert build_index(model, clf, 22, path, steps=STEPS, batch=6).seeds == list(range(22))
    sub = AnnotationIndex.load(path).subset(range(5))
    assert sub.seeds == list(range(5)) and sub.scores == full.scores[:5]
    with pytest.raises(ModelMismatchError, match="steps"):
        build_index(model, clf, 20, path, steps=STEPS + 1, batch=6)


def test_index_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FileFormatError):
        AnnotationIndex.load(bad)
    bad.write_text(json.dumps({"kind": "hspace-annotation-index", "format": 1, "recipe": {},
                               "seeds": [1], "scores": [[0.5]]}))
    with pytest.raises(FileFormatError, match="damaged"):
        AnnotationIndex.load(bad)
    with pytest.raises(FileFormatError, match="not found"):
        AnnotationIndex.load(tmp_path / "missing.json")


def test_from_labelled_images(model, tmp_path):
    trajs = sample(model, [1, 2, 3, 4], steps=STEPS, keep_chain=False)
    for name, ts in (("pos", trajs[:2]), ("neg", trajs[2:])):
        (tmp_path / name).mkdir()
        for i, t in enumerate(ts):
            save_png(tmp_path / name / f"{i}.png", to_pil(t.x_0))
    clf = _brightness_classifier()
    res = supervised_from_images(model, tmp_path / "pos", tmp_path / "neg", steps=STEPS, eta=1.0,
                                 attribute="red", classifier=clf)
    ds = res.directions
    assert ds.delta_h.shape == (1, STEPS, 32, 4, 4) and ds.labels == ["red"]
    assert ds.params["source"] == "labelled-images" and len(ds.params["positive"]) == 2
    assert ds.values is not None and len(ds.values[0]) == STEPS
    # it is the difference of the inverted trajectories' mean h
    from hspace_studio.engine.images import load_image
    from hspace_studio.engine.inversion import invert

    def mean_h(folder):
        hs = [invert(model, load_image(p, model.image_size)[0], steps=STEPS, eta=1.0).trajectory.hs
              for p in sorted((tmp_path / folder).iterdir())]
        return torch.stack(hs).mean(0)

    assert torch.allclose(ds.delta_h[0], mean_h("pos") - mean_h("neg"), atol=1e-5)
    plain = supervised_from_images(model, tmp_path / "pos", tmp_path / "neg", steps=STEPS)
    assert plain.directions.values is None
    with pytest.raises(FileFormatError):
        supervised_from_images(model, tmp_path / "nothing", tmp_path / "neg", steps=STEPS)


def test_torchscript_classifier(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0].mean((1, 2)), x[:, 1].mean((1, 2)) * 10], 1)

    path = tmp_path / "clf.pt"
    torch.jit.script(Net()).save(str(path))
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"attributes": ["red", "green"], "input_size": [4, 4]}))
    clf = load_classifier(str(path), str(names))
    assert isinstance(clf, TorchScriptClassifier) and clf.attributes == ["red", "green"]
    imgs = torch.zeros(3, 3, 8, 8)
    imgs[:, 0] = 1.0
    s = clf.scores(imgs)
    assert s.shape == (3, 2) and torch.allclose(s[:, 0], torch.sigmoid(torch.tensor(1.0)).expand(3))
    assert clf.index_of("GREEN") == 1 and clf.identity["digest"]
    # errors: one readable line each
    names.write_text(json.dumps(["red", "green", "blue"]))
    with pytest.raises(ClassifierError, match=r"shape \(3, 2\).*expected \(3, 3\)"):
        load_classifier(str(path), str(names)).scores(imgs)
    names.write_text(json.dumps(["red", "red"]))
    with pytest.raises(ClassifierError, match="duplicate"):
        load_classifier(str(path), str(names))
    names.write_text("[red")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        load_classifier(str(path), str(names))
    names.write_text(json.dumps({"names": ["a"]}))
    with pytest.raises(FileFormatError):
        load_classifier(str(path), str(names))
    with pytest.raises(ValueError, match="--attributes"):
        load_classifier(str(path), None)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    names.write_text(json.dumps(["a"]))
    with pytest.raises(ClassifierError, match="not a TorchScript"):
        load_classifier(str(junk), str(names))
    with pytest.raises(ClassifierError, match="not found"):
        load_classifier(str(tmp_path / "nope.pt"), str(names))


@pytest.mark.skipif(not (TOYFACES_CLASSIFIER_DIR / "config.json").is_file(),
                    reason="the shipped toy-face classifier is not built yet")
def test_toyface_classifier_wrapper():
    clf = ToyFaceAttributeClassifier()
    assert clf.attributes and clf.name.startswith("toyfaces")
    s = clf.scores(torch.zeros(2, 3, 32, 32))  # resized to 64x64 inside
    assert s.shape == (2, len(clf.attributes)) and ((s >= 0) & (s <= 1)).all()
    assert isinstance(load_classifier(None), ToyFaceAttributeClassifier)


def test_naming_reports_the_attribute_a_direction_moves(model):
    """The reported change is the measured one: (score(+s) - score(-s)) / 2, averaged over
    the samples; an attribute that does not move is ranked last; labels carry the sign."""
    from hspace_studio.engine.sampler import strip

    clf = CallableClassifier(lambda x: torch.stack([x[:, 0].mean((1, 2)), 0.5 + 0 * x[:, 0, 0, 0]], 1),
                             ["red", "flat"], name="red-or-flat")
    index = build_index(model, clf, 40, None, steps=STEPS, batch=20)
    red = supervised_directions(model, index, "red", examples=10, batch=20).directions
    ds = DirectionSet(delta_h=torch.cat([red.delta_h, torch.zeros_like(red.delta_h)]),
                      timesteps=red.timesteps, fingerprint=red.fingerprint, h_space=red.h_space,
                      method="custom", labels=["D 0", "D 1"], params={"steps": STEPS})
    res = name_directions(model, ds, clf, samples=3, scales=[-10, 10], steps=STEPS, min_change=1e-3)
    first, second = res.names
    expected = 0.0
    for tr in sample(model, res.seeds, steps=STEPS):
        xs = strip(model, tr, red.delta_h[0], [-10, 10])
        sc = clf.scores(model.to_pixels(xs))[:, 0]
        expected += float(sc[1] - sc[0]) / 2 / len(res.seeds)
    top = first.effects[0]
    assert top.attribute == "red" and top.change == pytest.approx(expected, abs=1e-5)
    assert abs(top.change) > 1e-3 and first.effects[1].change == 0.0
    sign = "+" if top.change > 0 else "-"
    assert first.suggestion == f"red {top.change:+.2f}" and first.line().startswith("D 0: red ")
    assert second.suggested_label is None and abs(second.effects[0].change) < 1e-9
    named = apply_names(ds, res)
    assert named.labels == [f"D 0: {sign}red", "D 1"]
    assert named.params["naming"]["results"][0]["index"] == 0
    with pytest.raises(ModelMismatchError):
        name_directions(model, DirectionSet(delta_h=ds.delta_h, timesteps=ds.timesteps,
                                            fingerprint="other", h_space="after"), clf)
