"""The segmenter's part checks against the generator's ground truth: counterfactual pairs
(one seed drawn with only the attribute changed) pass them, broken edits (a lens or the
mouth painted over, the hair cut) fail them, and the differentiable penalty follows."""
import dataclasses

import numpy as np
import pytest
import torch

from hspace_studio.toyfaces import quality as Q
from hspace_studio.toyfaces.generator import PART_INDEX, render, sample_factors
from hspace_studio.toyfaces.part_checks import PartChecker, mouth_bend, part_loss

SEEDS = range(5000, 5060)

pytestmark = pytest.mark.skipif(not Q.SEGMENTER_DIR.is_dir(), reason="segmenter not trained yet")


@pytest.fixture(scope="module")
def checker():
    from hspace_studio.toyfaces.nets import load_segmenter

    return PartChecker(*load_segmenter(Q.SEGMENTER_DIR))


def as_pixels(rgbs):
    return torch.from_numpy(np.stack(rgbs).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0)


def painted_over(seed, factors, part_mask_fn):
    """The image of ``factors`` with the pixels ``part_mask_fn(labels)`` selects painted in the
    face's median colour (an edit that erased them)."""
    rgb, lab, _ = render(seed, factors=factors)
    rgb = rgb.copy()
    skin = np.median(rgb[lab == PART_INDEX["face"]], 0)
    grow = torch.nn.functional.max_pool2d(torch.from_numpy(part_mask_fn(lab)).float()[None, None], 3, 1, 1)
    rgb[grow[0, 0].numpy() > 0] = skin
    return rgb


@pytest.fixture(scope="module")
def pairs():
    """Per seed: factors, image, and counterfactual images."""
    out = []
    for seed in SEEDS:
        f = sample_factors(seed)
        out.append((seed, f, render(seed, factors=f)[0]))
    return out


@pytest.fixture(scope="module")
def before(pairs):
    """The unedited images of ``pairs``."""
    return as_pixels([img for _, _, img in pairs])


@pytest.fixture(scope="module")
def erased(pairs):
    """The images of ``pairs`` with the mouth painted over."""
    return as_pixels([painted_over(s, f, lambda lab: lab == PART_INDEX["mouth"]) for s, f, _ in pairs])


def counterfactual(seed, f, **change):
    return render(seed, factors=dataclasses.replace(f, **change))[0]


def test_glasses_drawn_or_removed_pass_and_one_lens_or_none_fails(checker, pairs, before):
    towards = torch.tensor([not f.eyeglasses for _, f, _ in pairs])
    flipped = as_pixels([counterfactual(s, f, eyeglasses=not f.eyeglasses) for s, f, _ in pairs])
    assert 0 < int(towards.sum()) < len(pairs)
    assert checker.check("eyeglasses", before, flipped, towards).mean() >= 0.95
    # nothing drawn: no lens where glasses were asked for; a removal that did nothing leaves both
    assert not checker.check("eyeglasses", before, before, towards).any()

    def one_lens(lab):  # the glasses pixels on the image's left half: one lens (and half the bridge)
        m = lab == PART_INDEX["glasses"]
        cols = np.nonzero(m.any(0))[0]
        m[:, (cols.min() + cols.max()) // 2:] = False
        return m

    idx = [i for i, (_, f, _) in enumerate(pairs) if not f.eyeglasses]
    half = as_pixels([painted_over(pairs[i][0], dataclasses.replace(pairs[i][1], eyeglasses=True), one_lens)
                      for i in idx])
    ok = checker.check("eyeglasses", before[idx], half, torch.ones(len(idx), dtype=torch.bool))
    assert ok.mean() <= 0.05
    # removing one lens of a pair is no removal either
    idx = [i for i, (_, f, _) in enumerate(pairs) if f.eyeglasses]
    half = as_pixels([painted_over(pairs[i][0], pairs[i][1], one_lens) for i in idx])
    assert checker.check("eyeglasses", before[idx], half, torch.zeros(len(idx), dtype=torch.bool)).mean() <= 0.05


def test_an_opened_or_closed_mouth_passes_and_an_unchanged_or_erased_one_fails(checker, pairs, before, erased):
    towards = torch.tensor([not f.mouth_open for _, f, _ in pairs])
    after = as_pixels([counterfactual(s, f, mouth_open=not f.mouth_open) for s, f, _ in pairs])
    assert 0 < int(towards.sum()) < len(pairs)
    assert checker.check("mouth_open", before, after, towards).mean() >= 0.95
    assert checker.check("mouth_open", before, before, towards).mean() <= 0.05  # nothing changed
    assert checker.check("mouth_open", before, erased, towards).mean() <= 0.05


def test_a_mouth_bent_the_aimed_way_passes_and_a_wrong_or_erased_one_fails(checker, pairs, before, erased):
    towards = torch.tensor([f.smile <= 0 for _, f, _ in pairs])
    # a clear smile where the edit aimed at one, a clear frown where it aimed away
    aimed = as_pixels([counterfactual(s, f, smile=0.7 if f.smile <= 0 else -0.7) for s, f, _ in pairs])
    wrong = as_pixels([counterfactual(s, f, smile=-0.7 if f.smile <= 0 else 0.7) for s, f, _ in pairs])
    assert checker.check("smiling", before, aimed, towards).mean() >= 0.95
    assert checker.check("smiling", before, wrong, towards).mean() <= 0.05
    assert checker.check("smiling", before, erased, towards).mean() <= 0.05


def test_the_mouths_bend_follows_the_true_smile(checker):
    """On generator images the bend of the segmented mouth's upper edge has the sign of the
    ground-truth smile, nearly always where the smile is clear."""
    seeds = range(7000, 7200)
    x = as_pixels([render(s)[0] for s in seeds])
    smile = np.array([sample_factors(s).smile for s in seeds])
    with torch.no_grad():
        bend = mouth_bend(checker.probabilities(x)[:, checker.index["mouth"]]).numpy()
    assert np.corrcoef(bend, smile)[0, 1] > 0.93
    assert np.mean((bend > 0) == (smile > 0)) > 0.9
    clear = np.abs(smile) > 0.2
    assert np.mean((bend[clear] > 0) == (smile[clear] > 0)) > 0.97
    assert float(mouth_bend(torch.zeros(1, 8, 8))[0]) == 0.0
    # a drawn parabola: corners up reads positive, down negative, about its size
    m = torch.zeros(2, 16, 16)
    for c in range(2, 14):
        u = (c - 7.5) / 5.5
        m[0, int(round(8 - 2 * u * u)), c] = 1.0
        m[1, int(round(6 + 2 * u * u)), c] = 1.0
    b = mouth_bend(m)
    assert 1.5 < float(b[0]) < 2.5 and -2.5 < float(b[1]) < -1.5


def test_recoloured_hair_passes_and_cut_hair_fails(checker, pairs, before):
    towards = torch.tensor([f.hair_colour != "blond" or f.hair_style == "bald" for _, f, _ in pairs])
    recoloured = as_pixels([counterfactual(s, f, hair_colour="blond" if t else "red") for (s, f, _), t in
                            zip(pairs, towards.tolist())])
    bald = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style == "bald"]
    assert len(bald) >= 5
    ok = checker.check("blond_hair", before, recoloured, towards)
    assert ok[[i for i in range(len(pairs)) if i not in bald]].mean() >= 0.95
    # a bald head has no colour to change: towards blond the edit must grow hair
    assert ok[bald].mean() <= 0.05
    grown = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_style=style, hair_colour="blond")
                       for i in bald for style in ("short", "long")])
    both = torch.ones(len(grown), dtype=torch.bool)
    assert checker.check("blond_hair", before[[i for i in bald for _ in (0, 1)]], grown, both).mean() >= 0.95
    assert checker.check("blond_hair", before[bald], before[bald], ~both[:len(bald)]).mean() >= 0.95
    fn = part_loss(checker, "blond_hair")
    with torch.no_grad():
        still_bald = fn(before[bald], before[bald], torch.ones(len(bald)))
        hair = fn(grown, before[[i for i in bald for _ in (0, 1)]], torch.ones(len(grown)))
    assert float(still_bald.min()) > 0.9 and float(hair.max()) < 0.1
    long = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style == "long"]
    assert len(long) >= 5
    cut = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_style="short", hair_colour="blond")
                     for i in long])
    assert checker.check("blond_hair", before[long], cut, towards[long]).mean() <= 0.05
    assert checker.check("bald", before, before, towards) is None and part_loss(checker, "bald") is None


def test_the_penalty_separates_passing_from_failing_edits_and_has_gradients(checker, pairs, before, erased):
    idx = [i for i, (_, f, _) in enumerate(pairs) if not f.eyeglasses]
    signs = torch.ones(len(idx))
    drawn = as_pixels([counterfactual(pairs[i][0], pairs[i][1], eyeglasses=True) for i in idx])
    fn = part_loss(checker, "eyeglasses")
    with torch.no_grad():
        good, bad = fn(drawn, before[idx], signs), fn(before[idx], before[idx], signs)
    assert float(good.mean()) < 0.2 and float(bad.mean()) > 1.5  # a lens missing at both eyes costs 2
    # away from glasses: an image that kept its glasses costs more than one without them
    assert float(fn(drawn, before[idx], -signs).mean()) > float(fn(before[idx], before[idx], -signs).mean()) + 0.5
    mouth = part_loss(checker, "mouth_open")
    aimed = torch.tensor([1.0 if not f.mouth_open else -1.0 for _, f, _ in pairs])
    changed = as_pixels([counterfactual(s, f, mouth_open=not f.mouth_open) for s, f, _ in pairs])
    with torch.no_grad():
        assert float(mouth(changed, before, aimed).mean()) < 0.2
        assert float(mouth(before, before, aimed).mean()) > 0.3  # left as it was
        assert float(mouth(erased, before, aimed).mean()) > 0.8
        assert float(part_loss(checker, "smiling")(erased, before, aimed).mean()) > 0.8
        smile = part_loss(checker, "smiling")
        towards = torch.tensor([1.0 if f.smile <= 0 else -1.0 for _, f, _ in pairs])
        bent = as_pixels([counterfactual(s, f, smile=0.8 if f.smile <= 0 else -0.8) for s, f, _ in pairs])
        assert float(smile(bent, before, towards).mean()) < 0.3 < 1.5 < float(smile(bent, before, -towards).mean())
    x = erased.clone().requires_grad_(True)
    mouth(x, before, aimed).sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


def test_own_region_is_each_faces_part_grown(checker, pairs, before):
    """Each image's region covers its own mouth (the generator's ground truth) grown by the
    dilation, and little else; an unknown part is refused."""
    rows = [render(s, factors=f)[1] for s, f, _ in pairs[:12]]
    fn = checker.own_region(["mouth"], 3, (64, 64), free_steps=1)
    region = fn(before[:12])
    assert tuple(region.weights.shape) == (12, 1, 64, 64) and region.free_steps == 1
    for lab, w in zip(rows, region.weights[:, 0]):
        truth = torch.from_numpy(lab == PART_INDEX["mouth"])
        grown = torch.nn.functional.max_pool2d(truth[None, None].float(), 7, 1, 3)[0, 0] > 0
        assert float(w[truth].mean()) >= 0.95  # the mouth lies inside its own region
        assert float(w.sum()) <= 1.3 * float(grown.sum())  # and the region is the mouth grown by 3
    assert tuple(checker.own_region(["mouth"], 3, (32, 32))(before[:2]).weights.shape) == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="no part"):
        checker.own_region(["tail"], 3, (64, 64))


def test_the_hair_colour_pull_is_low_on_the_aimed_colour_and_zero_without_hair(checker, pairs, before):
    """The pull of a hair-colour fit (``hair_colour_loss``): an image whose hair the generator
    drew in the aimed colour (blond towards, brown away) costs far less than the unedited one;
    a bald head costs nothing; the gradient reaches the pixels; other attributes get none."""
    from hspace_studio.toyfaces.part_checks import hair_colour_attribute, hair_colour_loss

    fn = hair_colour_loss(checker, "blond_hair")
    hair = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style != "bald" and f.hair_colour not in ("blond", "brown")]
    assert len(hair) >= 10
    signs = torch.ones(len(hair))
    blond = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_colour="blond") for i in hair])
    brown = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_colour="brown") for i in hair])
    with torch.no_grad():
        aimed, unedited = fn(blond, before[hair], signs), fn(before[hair], before[hair], signs)
        away_aimed, away_wrong = fn(brown, before[hair], -signs), fn(blond, before[hair], -signs)
    assert float(aimed.mean()) < 0.1 * float(unedited.mean()) and float(unedited.min()) > 0.1
    assert float(away_aimed.mean()) < 0.1 * float(away_wrong.mean())
    bald = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style == "bald"]
    with torch.no_grad():
        assert float(fn(before[bald], before[bald], torch.ones(len(bald))).abs().max()) == 0.0
    x = before[hair[:2]].clone().requires_grad_(True)
    fn(x, before[hair[:2]], signs[:2]).sum().backward()
    assert float(x.grad.abs().sum()) > 0
    assert hair_colour_attribute("blond_hair") == "blond" and hair_colour_attribute("grey_hair") == "grey"
    assert hair_colour_loss(checker, "smiling") is None and hair_colour_loss(checker, "bald") is None


def test_holding_the_pixels_outside_the_hair_spares_a_recolouring_and_not_a_wider_face(checker, pairs, before):
    """The third term of a hair-colour fit (``outside_hair_loss``): the generator's own
    recolouring of the hair changes little outside the segmenter's hair (its antialiased
    edge), a wider or narrower face changes much more there; an unedited image and a bald
    head cost nothing; the gradient reaches the pixels; only hair colours get the term."""
    from hspace_studio.toyfaces.part_checks import outside_hair_loss

    fn = outside_hair_loss(checker)
    hair = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style != "bald" and f.hair_colour != "blond"]
    assert len(hair) >= 10
    signs = torch.ones(len(hair))
    blond = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_colour="blond") for i in hair])
    wider = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_colour="blond",
                                      face_width=-pairs[i][1].face_width if abs(pairs[i][1].face_width) > 0.2 else 0.6)
                       for i in hair])
    with torch.no_grad():
        recoloured, reshaped = fn(blond, before[hair], signs), fn(wider, before[hair], signs)
        assert float(fn(before[hair], before[hair], signs).abs().max()) == 0.0
    assert float(recoloured.mean()) < 0.25 * float(reshaped.mean())
    bald = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style == "bald"]
    grown = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_style="short", hair_colour="blond") for i in bald])
    with torch.no_grad():
        assert float(fn(grown, before[bald], torch.ones(len(bald))).abs().max()) == 0.0
    x = wider[:2].clone().requires_grad_(True)
    fn(x, before[hair[:2]], signs[:2]).sum().backward()
    assert float(x.grad.abs().sum()) > 0



def test_shipped_terms_weigh_the_three_losses_and_name_the_one_refused(checker, pairs, before):
    """``shipped_terms``, the one place the CLI, the GUI and ``evaluate`` build a fit's
    segmenter penalty: the three terms of a hair-colour fit sum to the losses computed one by
    one with their weights; one term keeps its own weight; none gives no term; a term asked
    for an attribute it does not apply to is refused, naming that term."""
    from hspace_studio.toyfaces.part_checks import (HAIR_COLOUR_NAME, OUTSIDE_HAIR_NAME, PART_CHECK_NAME,
                                                    TermRefused, hair_colour_attributes, hair_colour_loss,
                                                    outside_hair_loss, shipped_terms)

    hair = [i for i, (_, f, _) in enumerate(pairs) if f.hair_style != "bald" and f.hair_colour != "blond"][:6]
    after = as_pixels([counterfactual(pairs[i][0], pairs[i][1], hair_colour="blond",
                                      face_width=0.6 if pairs[i][1].face_width < 0 else -0.6) for i in hair])
    signs = torch.tensor([1.0, -1.0] * (len(hair) // 2))
    fn, weight, name = shipped_terms("blond_hair", 16, 48, 8, checker=checker)
    assert weight == 1.0 and name == f"{PART_CHECK_NAME} x16 + {HAIR_COLOUR_NAME} x48 + {OUTSIDE_HAIR_NAME} x8"
    with torch.no_grad():
        want = (16 * part_loss(checker, "blond_hair")(after, before[hair], signs)
                + 48 * hair_colour_loss(checker, "blond_hair")(after, before[hair], signs)
                + 8 * outside_hair_loss(checker)(after, before[hair], signs))
        got = fn(after, before[hair], signs)
    assert float(want.abs().min()) > 0
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    fn, weight, name = shipped_terms("eyeglasses", part_check=16, checker=checker)
    assert (weight, name) == (16.0, PART_CHECK_NAME)
    assert shipped_terms("smiling", checker=checker) == (None, 0.0, None)
    assert set(hair_colour_attributes()) == {"blond_hair", "black_hair", "red_hair", "grey_hair"}
    for attribute, weights, refused in (("smiling", (0, 48, 0), HAIR_COLOUR_NAME),
                                        ("eyeglasses", (16, 0, 8), OUTSIDE_HAIR_NAME),
                                        ("bald", (16, 0, 0), PART_CHECK_NAME)):
        with pytest.raises(TermRefused) as e:
            shipped_terms(attribute, *weights, checker=checker)
        assert e.value.term == refused and f"'{attribute}'" in str(e.value)
    # not strict (evaluate, one set of weights for every attribute): those terms are left out
    fn, weight, name = shipped_terms("smiling", 16, 48, 8, checker=checker, strict=False)
    assert (weight, name) == (16.0, PART_CHECK_NAME)
    assert shipped_terms("bald", 16, 48, 8, checker=checker, strict=False) == (None, 0.0, None)
