"""The demo on a reduced setting, and the evaluation's Frechet distance against scipy."""
import numpy as np
import pytest

from hspace_studio.engine.model import DEFAULT_MODEL_DIR
from hspace_studio.toyfaces.quality import frechet_distance


def test_frechet_distance_matches_scipy_and_survives_singular_covariances():
    from scipy import linalg

    r = np.random.default_rng(0)
    a, b = r.normal(size=(400, 12)), r.normal(size=(400, 12)) * 1.5 + 0.3
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    a[:, :4] = 0  # dead features: singular covariances
    b[:, :4] = 0
    assert np.isfinite(frechet_distance(a, b)) and frechet_distance(a, b) > 0


@pytest.mark.skipif(not DEFAULT_MODEL_DIR.is_dir(), reason="default model not trained yet")
def test_demo_quick_writes_every_figure(tmp_path):
    from hspace_studio.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path), "--h-space", "middle"]) == 0
    for name in ("pca_strips.png", "jacobian_masks.png", "supervised.png", "disentangled.png",
                 "inversion_edit.png", "captions.md", "pca.safetensors", "supervised.safetensors"):
        assert (tmp_path / name).stat().st_size > 0, name
    from hspace_studio.engine.images import read_recipe

    assert read_recipe(tmp_path / "pca_strips.png")["figure"] == "pca"
    from hspace_studio.engine.directions import DirectionSet

    for name in ("pca.safetensors", "supervised.safetensors", "beard_disentangled.safetensors"):
        assert DirectionSet.load(tmp_path / name).h_space == "middle", name  # --h-space is used


@pytest.mark.slow  # minutes on a 2-core CPU: run with -m slow
def test_evaluate_supervised_and_jacobian_tables_on_a_small_setting(capsys):
    """The evaluate command's supervised (several scales) and Jacobian (masked and
    contained) sections run end to end on the default model and print their tables."""
    from hspace_studio.cli import main

    assert main(["evaluate", "--sections", "supervised,jacobian", "--index-size", "16", "--examples", "4",
                 "--seeds", "2", "--scale", "1,3", "--jacobian-seeds", "1", "--eta", "0",
                 "--jacobian-steps", "12", "--h-space", "middle"]) == 0
    out = capsys.readouterr().out
    # the point the sections' directions and trajectories actually used
    assert "eta 0, h-space middle;" in out and "(12 steps, h-space middle)" in out
    assert "smiling" in out and " 3.0 " in out and "Disentangling beard" in out
    assert "step 4's vector" in out and "contained: at step 6 only, 0.25 |h|" in out
    assert "contained, 0.25 |h|, kept in the mask (last 1 step free)" in out
    assert main(["evaluate", "--scale", "1,x"]) == 2
    assert main(["evaluate", "--eta", "2"]) == 2
    assert main(["evaluate", "--jacobian-steps", "1"]) == 2


@pytest.mark.slow  # minutes on a 2-core CPU: run with -m slow
def test_evaluate_optimized_section_on_a_small_setting(tmp_path, capsys):
    """The classifier-optimised section fits a direction per attribute and measures it on
    held-out samples at the given scales."""
    import json

    from hspace_studio.cli import main

    out = tmp_path / "o.json"
    assert main(["evaluate", "--sections", "optimized", "--optimize-iters", "1", "--train-samples", "2",
                 "--seeds", "2", "--optimize-scale", "0.5,1", "--optimize-keep", "5", "--optimize-window",
                 "999:500", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert ("Classifier-optimised directions (1 iterations of 2 of 2 training samples, keep 5, timesteps "
            "999:500; 2 held-out") in text
    r = json.loads(out.read_text())["optimized"]
    assert r["window"] == [999, 500] and r["kept_in"] is None and r["regions"] is None
    assert set(r["directions"]) == {"smiling", "eyeglasses", "blond_hair", "mouth_open"}
    assert set(r["directions"]["smiling"]) == {"0.5", "1.0"} and r["directions"]["smiling"]["1.0"]["n"] == 2
    # the same edits read by the independently trained referee classifier
    ref = r["directions"]["smiling"]["1.0"]["referee"]
    assert 0 <= ref["flip_rate"] <= 1 and 0 <= ref["off_target_mean"] <= 1 and 0 <= ref["target_side"] <= 1
    assert "referee flipped" in text
    # only some attributes, each fitted where its part can be
    assert main(["evaluate", "--sections", "optimized", "--optimize-iters", "1", "--train-samples", "2",
                 "--seeds", "2", "--optimize-scale", "1", "--optimize-attributes", "smiling", "--optimize-region",
                 "--optimize-keep-in", "--optimize-part", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())["optimized"]
    # fitted with the segmenter's part term, and read by the part check beside the classifier
    assert r["part_weight"] == 3 and "segmenter part term, weight 3;" in text
    d = r["directions"]["smiling"]["1.0"]
    assert 0 <= d["checked_flip_rate"] <= d["flip_rate"] and 0 <= d["part_check"] <= 1
    assert "and part drawn" in text and "smiling: a mouth whose upper edge bends the aimed way" in text
    assert set(r["directions"]) == {"smiling"} and r["regions"] == {"smiling": ["mouth"]}
    assert 0 < r["fit"]["smiling"]["region_cells"] < 64
    assert f"only where the part can be: smiling mouth ({r['fit']['smiling']['region_cells']} positions" in text
    # and decoded kept inside the image region where the mouth can be
    assert r["kept_in"] == {"smiling": ["mouth"]} and 0 < r["fit"]["smiling"]["kept_in_pixels"] < 64 * 64
    assert f"kept inside the image region where the part can be (last 1 step free): smiling mouth (" in text
    # or kept inside each sample's own mouth, as edit --region-part decodes it
    assert main(["evaluate", "--sections", "optimized", "--optimize-iters", "1", "--train-samples", "2",
                 "--seeds", "2", "--optimize-scale", "1", "--optimize-attributes", "smiling",
                 "--optimize-keep-in-part", "--optimize-grow", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())["optimized"]
    assert r["kept_in_own"] == {"smiling": ["mouth"]} and r["kept_in"] is None and r["own_grow"] == 1
    assert "kept inside each sample's own part, grown by 1 px (last 1 step free): smiling mouth" in text
    # a hair colour: pulled to its palette colour, the other colours free, bald heads left out of
    # the fit and of the held-out samples (read by the shipped classifier)
    assert main(["evaluate", "--sections", "optimized", "--optimize-iters", "1", "--train-samples", "4",
                 "--seeds", "10", "--optimize-scale", "1", "--optimize-attributes", "blond_hair",
                 "--optimize-hair-colour", "4", "--optimize-outside-hair", "2", "--optimize-free",
                 "black_hair,red_hair,grey_hair,blond_hair", "--optimize-skip", "bald", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())["optimized"]
    assert r["skip"] == ["bald"] and r["hair_colour"] == 4 and r["free"][:3] == ["black_hair", "red_hair", "grey_hair"]
    assert r["outside_hair"] == 2
    assert "hair pulled to its palette colour, weight 4; pixels outside the hair held, weight 2; free: black_hair" in text
    assert "samples read as bald left out of fitting and measuring" in text
    import torch

    from hspace_studio.engine import load_model, sample
    from hspace_studio.toyfaces import quality as Q

    model = load_model("default")
    held = sample(model, list(range(1000, 1010)), steps=10, eta=1.0)
    _, p = Q.classify(Q.load_shipped_classifier()[0], model.to_pixels(torch.stack([t.x_0 for t in held])))
    with_hair = int((p[:, 3] < 0.5).sum())
    assert 0 < with_hair < 10 and r["directions"]["blond_hair"]["1.0"]["n"] == with_hair
    assert main(["evaluate", "--optimize-skip", "nose"]) == 2 and main(["evaluate", "--optimize-hair-colour", "-1"]) == 2
    assert main(["evaluate", "--sections", "optimized", "--optimize-keep-in", "--optimize-keep-in-part"]) == 1
    assert main(["evaluate", "--sections", "optimized", "--optimize-grow", "1"]) == 1  # without keep-in-part
    assert main(["evaluate", "--optimize-grow", "-1"]) == 2 and main(["evaluate", "--optimize-outside-hair", "-1"]) == 2
    assert main(["evaluate", "--optimize-attributes", "beard"]) == 2
    assert main(["evaluate", "--optimize-iters", "0"]) == 2
    assert main(["evaluate", "--optimize-scale", "-1"]) == 2
    assert main(["evaluate", "--optimize-keep", "-1"]) == 2
    assert main(["evaluate", "--optimize-part", "-1"]) == 2
    assert main(["evaluate", "--optimize-window", "999"]) == 2


@pytest.mark.skipif(not DEFAULT_MODEL_DIR.is_dir(), reason="default model not trained yet")
def test_evaluate_quality_samples_with_the_given_eta(tmp_path, capsys):
    """The quality section samples with --eta (DDIM and DDPM samples of the same seeds
    differ, so their figures do) and its heading says which."""
    import json

    from hspace_studio.cli import main

    figures = {}
    for eta in ("0", "1"):
        out = tmp_path / f"q{eta}.json"
        assert main(["evaluate", "--sections", "quality", "--samples", "4", "--eta", eta,
                     "--json", str(out)]) == 0
        assert f"(4 images per set, eta {eta};" in capsys.readouterr().out
        q = json.loads(out.read_text())["quality"]
        assert q["eta"] == float(eta)
        figures[eta] = [q["steps"][s]["fd"] for s in ("10", "50")]
    assert figures["0"][0] != figures["1"][0] and figures["0"][1] != figures["1"][1]


@pytest.mark.skipif(not DEFAULT_MODEL_DIR.is_dir(), reason="default model not trained yet")
def test_attribute_shift_reads_the_same_edits_with_a_referee():
    """A referee reads the very edits the classifier reads: given the classifier itself it
    reports the same figures; the off-target figure is the mean over the other attributes."""
    import torch

    from hspace_studio.engine.model import load_model
    from hspace_studio.engine.sampler import sample
    from hspace_studio.toyfaces import quality as Q
    from hspace_studio.toyfaces.edit_metrics import attribute_shift

    model = load_model("default")
    clf, _ = Q.load_shipped_classifier()
    trajs = sample(model, [5, 6], steps=3, eta=1.0)
    delta = torch.randn(trajs[0].hs.shape, generator=torch.Generator().manual_seed(0)) * trajs[0].hs.std()
    r = attribute_shift(model, clf, delta, "smiling", [1.0], [5, 6], steps=3, trajs=trajs, referee=clf)["1.0"]
    assert r["referee"]["flip_rate"] == r["flip_rate"]
    assert r["referee"]["off_target_mean"] == pytest.approx(r["off_target_mean"])
    # the referee's target side: where its reading lands against the side aimed at; given the
    # classifier itself, a sample lands there exactly when it flipped
    assert r["referee"]["target_side"] == r["flip_rate"]
    # a referee that reads every face as smiling: it lands on the target side exactly for the
    # samples the edit aimed at a smile (those the classifier read as not smiling)

    class Smiler:
        features = clf.features

        @staticmethod
        def head(f):
            z = clf.head(f).clone()
            z[:, 0] = 50.0
            return z

    p0 = Q.classify(clf, model.to_pixels(torch.stack([t.x_0 for t in trajs])))[1][:, 0]
    r = attribute_shift(model, clf, delta, "smiling", [1.0], [5, 6], steps=3, trajs=trajs, referee=Smiler())["1.0"]
    assert r["referee"]["target_side"] == float((p0 < 0.5).float().mean()) and r["referee"]["flip_rate"] == 0
    assert r["off_target_mean"] == pytest.approx(np.mean(list(r["off_target"].values())))
    assert r["off_target_mean"] > 0 and len(r["off_target"]) == 13


@pytest.mark.skipif(not DEFAULT_MODEL_DIR.is_dir(), reason="default model not trained yet")
def test_attribute_shift_kept_in_a_region_reads_the_region_edits():
    """With a region, the figures are those of the engine's region edits (as edit --region
    decodes them), not of the free edits."""
    import torch

    from hspace_studio.engine.model import load_model
    from hspace_studio.engine.sampler import EditSpec, Region, edit_batch, sample
    from hspace_studio.toyfaces import quality as Q
    from hspace_studio.toyfaces.edit_metrics import attribute_shift

    model = load_model("default")
    clf, _ = Q.load_shipped_classifier()
    trajs = sample(model, [5, 6], steps=3, eta=1.0)
    delta = torch.randn(trajs[0].hs.shape, generator=torch.Generator().manual_seed(0)) * trajs[0].hs.std() * 2
    w = torch.zeros(model.image_size)
    w[40:56, 16:48] = 1.0  # the lower face
    region = Region(w, 0)
    from hspace_studio.toyfaces.nets import load_segmenter
    from hspace_studio.toyfaces.part_checks import PartChecker

    checker = PartChecker(*load_segmenter(Q.SEGMENTER_DIR))
    kept = attribute_shift(model, clf, delta, "smiling", [1.0], [5, 6], steps=3, trajs=trajs, region=region,
                           checker=checker)["1.0"]
    free = attribute_shift(model, clf, delta, "smiling", [1.0], [5, 6], steps=3, trajs=trajs)["1.0"]
    p0 = Q.classify(clf, model.to_pixels(torch.stack([t.x_0 for t in trajs])))[1]
    signs = torch.where(p0[:, 0] < 0.5, 1.0, -1.0)
    x = torch.stack([edit_batch(model, t, [[EditSpec(delta, float(s))]], region=region).x_0[0]
                     for t, s in zip(trajs, signs)])
    p1 = Q.classify(clf, model.to_pixels(x))[1]
    assert kept["flip_rate"] == float(((p0[:, 0] < 0.5) != (p1[:, 0] < 0.5)).float().mean())
    assert kept["off_target_mean"] == pytest.approx(float((p1 - p0)[:, 1:].abs().mean()), abs=1e-6)
    assert kept["off_target_mean"] != pytest.approx(free["off_target_mean"], abs=1e-4)
    # the part check reads the same edits: a mouth on each, counted with the flips
    before = model.to_pixels(torch.stack([t.x_0 for t in trajs])).clamp(-1, 1)
    ok = checker.check("smiling", before, model.to_pixels(x).clamp(-1, 1), p0[:, 0] < 0.5)
    flipped = ((p0[:, 0] < 0.5) != (p1[:, 0] < 0.5)).numpy()
    assert kept["part_check"] == float(ok.mean()) and kept["checked_flip_rate"] == float((ok & flipped).mean())
    assert "part_check" not in free
    # a region per sample (each face's own mouth): the edits are those decoded with each one
    own = checker.own_region(["mouth"], 3, tuple(model.sample_shape[1:]), 0)
    mine = attribute_shift(model, clf, delta, "smiling", [1.0], [5, 6], steps=3, trajs=trajs, region=own)["1.0"]
    x = torch.stack([edit_batch(model, t, [[EditSpec(delta, float(s))]], region=own(b[None])).x_0[0]
                     for t, s, b in zip(trajs, signs, before)])
    p1 = Q.classify(clf, model.to_pixels(x))[1]
    assert mine["off_target_mean"] == pytest.approx(float((p1 - p0)[:, 1:].abs().mean()), abs=1e-6)
    assert mine["off_target_mean"] != pytest.approx(kept["off_target_mean"], abs=1e-4)


def test_evaluate_fits_on_the_training_seeds_asked_for(tmp_path, capsys):
    """``--train-seed``: the optimised fit draws its training samples from that seed on (so
    its loss differs from the default seeds' fit), records it, names it; seeds overlapping the
    held-out ones are refused before the model loads."""
    import json

    from hspace_studio.cli import main

    runs = {}
    for start in (None, 5000):
        out = tmp_path / f"{start}.json"
        args = ["evaluate", "--sections", "optimized", "--optimize-iters", "1", "--train-samples", "2",
                "--seeds", "2", "--optimize-scale", "1", "--optimize-attributes", "smiling", "--json", str(out)]
        assert main(args + ([] if start is None else ["--train-seed", str(start)])) == 0
        runs[start] = (capsys.readouterr().out, json.loads(out.read_text())["optimized"])
    assert runs[None][1]["train_seed"] == 300000 and "training samples from seed" not in runs[None][0]
    assert runs[5000][1]["train_seed"] == 5000 and "2 training samples from seed 5000," in runs[5000][0]
    fits = [runs[s][1]["fit"]["smiling"] for s in (None, 5000)]
    assert fits[0]["loss"] != fits[1]["loss"]
    for args in (["--sections", "optimized", "--train-seed", "990", "--train-samples", "20", "--seeds", "5"],
                 ["--sections", "supervised", "--train-seed", "1050", "--index-size", "8", "--seeds", "100"]):
        assert main(["evaluate", *args]) == 1
        cap = capsys.readouterr()
        assert "overlap the held-out seeds" in cap.err and "Model:" not in cap.out
    assert main(["evaluate", "--train-seed", "-1"]) == 2
