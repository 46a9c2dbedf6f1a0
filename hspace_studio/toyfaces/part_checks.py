"""Whether an edit drew the part its attribute lives in, read by the shipped segmenter.

The attribute classifiers read a dark ring at one eye as "eyeglasses" and an erased mouth
as "not smiling"; these checks look at the parts instead. Each compares an edited image
with its unedited one:

- ``eyeglasses``: an edit towards glasses must leave a lens at *both* eyes (at least
  ``LENS_PIXELS`` glasses pixels within ``EYE_REACH`` pixels of each eye of the unedited
  image); an edit away from glasses must leave a lens at neither.
- ``smiling``: the edited face still has a mouth (at least ``MOUTH_PIXELS`` mouth pixels)
  and the mouth's upper edge bends the way the edit aimed (:func:`mouth_bend`: corners up
  for a smile, down for not smiling).
- ``mouth_open``: a mouth, open (at least ``OPEN_PIXELS`` mouth pixels) where the edit aimed
  at an open mouth and closed (fewer) where it aimed at a closed one.
- ``blond_hair``: the hair keeps its area (edited / unedited hair pixels within
  ``HAIR_RATIO``); a colour change must not cut or grow the hair. A bald head (fewer than
  ``BALD_PIXELS`` hair pixels) has no colour to change: an edit towards blond hair must
  grow hair there (at least ``HAIR_GROWN`` pixels; short hair has 380 and more), one away
  from it must leave the head bald.

The thresholds sit between what the segmenter reads on counterfactual generator pairs
(the same seed drawn with only the attribute changed) and on the broken cases: on 300
seeds, a drawn lens has 18 or more glasses pixels near its eye and an absent one at most
2; a mouth has 23 or more pixels; recolouring the hair moves its area by at most 4%. On
400 generator images a closed mouth has 22-36 pixels and an open one 48-60; the upper
edge's bend has the sign of the true smile on 95% of them (99% where |smile| > 0.1, all
where |smile| > 0.4; correlation 0.97) (``tests/test_part_checks.py`` re-measures
these).

:func:`part_loss` is the differentiable counterpart used by fits (``optimized_direction``'s
``part_term``): the segmenter's soft probabilities in place of its counted pixels.
:func:`hair_colour_loss` is a second term for fits of a hair colour: it pulls the pixels of
the unedited image's hair towards the generator's colour of that hair;
:func:`outside_hair_loss` a third, which holds the pixels outside that hair (so that a
recolouring moves neither the face's outline nor a beard's surroundings).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.domain import TermRefused
from ..engine.segmenter import Segmenter, dilate

LENS_PIXELS = 6
EYE_REACH = 3
MOUTH_PIXELS = 12
OPEN_PIXELS = 42
BEND_MARGIN = 1.0  # pixels: the bend the smiling penalty asks for (a clear smile bends 0.6-1.5 and more)
HAIR_RATIO = (0.8, 1.25)
BALD_PIXELS = 50
HAIR_GROWN = 200
# what the check asks, per attribute (the table's wording)
CHECKED = {"eyeglasses": "a lens at both eyes (towards) / at neither (away)",
           "smiling": "a mouth, bent the aimed way", "mouth_open": "a mouth, open or closed as aimed",
           "blond_hair": "hair area kept (grown on a bald head)"}


def mouth_bend(mouth: torch.Tensor) -> torch.Tensor:
    """How much mouths smile, from the segmenter's mouth probabilities (N, H, W): minus the
    curvature of the parabola ``y = a + b u^2`` fitted to the mouth's upper edge (``u`` -1..1
    across the mouth), in pixels from centre to corner; positive when the corners are up.
    Each column's upper edge is its probability-weighted centre less half its mass (the top
    of a solid run of that length); columns count with weight ``clamp(mass - 0.5, 0, 1)``.
    Differentiable in the probabilities; 0 for a mouth of fewer than three columns."""
    n, h, w = mouth.shape
    mass = mouth.sum(1)  # (N, W)
    rows = torch.arange(h, dtype=mouth.dtype, device=mouth.device)
    top = (mouth * rows[:, None]).sum(1) / mass.clamp(min=1e-6) - mass / 2
    weight = (mass - 0.5).clamp(0, 1)
    cols = torch.arange(w, dtype=mouth.dtype, device=mouth.device).expand(n, w)
    on = weight.detach() > 0
    big = torch.full_like(cols, float(w))
    x0 = torch.where(on, cols, big).min(1).values
    x1 = torch.where(on, cols, -big).max(1).values
    u2 = ((cols - ((x0 + x1) / 2)[:, None]) / ((x1 - x0) / 2).clamp(min=1)[:, None]).pow(2)
    # weighted least squares of top on (1, u^2), per image, in closed form
    s0, s1, s2 = weight.sum(1), (weight * u2).sum(1), (weight * u2 * u2).sum(1)
    t0, t1 = (weight * top).sum(1), (weight * u2 * top).sum(1)
    det = s0 * s2 - s1 * s1
    b = (s0 * t1 - s1 * t0) / det.clamp(min=1e-6)
    return torch.where(on.sum(1) >= 3, -b, torch.zeros_like(b))


class PartChecker(Segmenter):
    """The checks above with one segmenter (``names``: its part names, in output order);
    its labels, probabilities and per-image regions are the general segmenter's."""

    def __init__(self, segmenter, names: Sequence[str], name: str = "toyfaces segmenter"):
        super().__init__(segmenter, names, name=name)

    def eye_zones(self, before_labels: torch.Tensor):
        """Where each eye's lens belongs: the unedited image's eyes grown by ``EYE_REACH``."""
        return [dilate(before_labels == self.index[e], EYE_REACH) for e in ("left_eye", "right_eye")]

    @torch.no_grad()
    def check(self, attribute: str, before: torch.Tensor, after: torch.Tensor,
              towards: torch.Tensor) -> Optional[np.ndarray]:
        """Per edit, True where it passes ``attribute``'s check; None for an attribute
        without one. ``before``/``after``: unedited and edited images (N, 3, H, W);
        ``towards``: True where the edit aimed to give the image the attribute."""
        if attribute not in CHECKED:
            return None
        lb = self.labels(before)
        qa = self.probabilities(after)  # one pass: the labels are its argmax, smiling reads it soft
        la = qa.argmax(1)
        towards = torch.as_tensor(towards, dtype=torch.bool).view(-1)
        if attribute == "eyeglasses":
            glasses = la == self.index["glasses"]
            lens = torch.stack([(glasses & z).flatten(1).sum(1) >= LENS_PIXELS for z in self.eye_zones(lb)], 1)
            ok = torch.where(towards, lens.all(1), ~lens.any(1))
        elif attribute == "mouth_open":
            area = (la == self.index["mouth"]).flatten(1).sum(1)
            ok = (area >= MOUTH_PIXELS) & torch.where(towards, area >= OPEN_PIXELS, area < OPEN_PIXELS)
        elif attribute == "smiling":
            bend = mouth_bend(qa[:, self.index["mouth"]])
            ok = ((la == self.index["mouth"]).flatten(1).sum(1) >= MOUTH_PIXELS) & \
                torch.where(towards, bend > 0, bend < 0)
        else:  # blond_hair
            h0 = (lb == self.index["hair"]).flatten(1).sum(1).float()
            h1 = (la == self.index["hair"]).flatten(1).sum(1).float()
            ratio = h1 / h0.clamp(min=1)
            grown = torch.where(towards, h1 >= HAIR_GROWN, h1 < BALD_PIXELS)
            ok = torch.where(h0 >= BALD_PIXELS, (ratio >= HAIR_RATIO[0]) & (ratio <= HAIR_RATIO[1]), grown)
        return ok.cpu().numpy()


def part_loss(checker: PartChecker, attribute: str) -> Optional[Callable]:
    """A differentiable penalty for edits that fail ``attribute``'s check, as
    ``fn(after, before, signs) -> (N,)`` (images in [-1, 1]; ``signs`` +1 where the edit
    adds the attribute): 0 for an edit that clearly passes, about 1 for one that
    clearly fails (for smiling: up to 1 for the mouth's presence and more for its bend).
    None for an attribute without a check."""
    if attribute not in CHECKED:
        return None
    g, m, h = (checker.index[p] for p in ("glasses", "mouth", "hair"))
    lens_full, mouth_full = 3 * LENS_PIXELS, 2 * MOUTH_PIXELS  # what a clear pass reads
    open_full, closed_full = OPEN_PIXELS + 12, OPEN_PIXELS - 12

    def fn(after: torch.Tensor, before: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        q = checker.probabilities(after)
        if attribute == "eyeglasses":
            zones = checker.eye_zones(checker.labels(before))
            per_eye = torch.stack([(q[:, g] * z.float()).flatten(1).sum(1) for z in zones], 1)
            short = F.relu(1 - per_eye / lens_full).sum(1)  # a lens missing at an eye
            left = (per_eye / lens_full).sum(1)  # any lens left
            return torch.where(signs.view(-1) > 0, short, left)
        area = q[:, m].flatten(1).sum(1)
        if attribute == "smiling":  # a mouth, its upper edge bent at least BEND_MARGIN the aimed way
            return F.relu(1 - area / mouth_full) + F.relu(1 - signs.view(-1) * mouth_bend(q[:, m]) / BEND_MARGIN)
        if attribute == "mouth_open":  # open: grow past the open size; closed: below it, yet there
            return torch.where(signs.view(-1) > 0, F.relu(1 - area / open_full),
                               F.relu(area / closed_full - 1) + F.relu(1 - area / mouth_full))
        with torch.no_grad():
            h0 = (checker.labels(before) == h).flatten(1).sum(1).float()
        h1 = q[:, h].flatten(1).sum(1)
        bald = torch.where(signs.view(-1) > 0, F.relu(1 - h1 / HAIR_GROWN), h1 / HAIR_GROWN)
        return torch.where(h0 >= BALD_PIXELS, (h1 - h0).abs() / h0.clamp(min=BALD_PIXELS), bald)

    return fn


PART_CHECK_NAME = "toy-face segmenter part check"  # the names a fit records for its terms
HAIR_COLOUR_NAME = "hair pulled to its palette colour"
OUTSIDE_HAIR_NAME = "pixels outside the hair held"
HAIR_AWAY = "brown"  # the palette colour no attribute names: where an edit away from a hair colour aims


def hair_colour_attributes() -> List[str]:
    """The attributes :func:`hair_colour_loss` pulls towards: ``<colour>_hair`` for each palette
    colour but brown."""
    from .generator import HAIR_COLOURS

    return [f"{c}_hair" for c in HAIR_COLOURS if c != HAIR_AWAY]


def hair_colour_attribute(attribute: str) -> Optional[str]:
    """The palette colour a hair-colour attribute names (``blond_hair`` -> ``blond``), or None."""
    return attribute[:-len("_hair")] if attribute in hair_colour_attributes() else None


def hair_colour_loss(checker: PartChecker, attribute: str) -> Optional[Callable]:
    """A pull of the hair towards the generator's palette colour, for fits of a hair-colour
    attribute (``blond_hair``, ``black_hair``, ``red_hair``, ``grey_hair``), as
    ``fn(after, before, signs) -> (N,)``: the mean squared RGB distance (images in [-1, 1])
    of the edited image's pixels, over the unedited image's hair, to the attribute's colour
    where ``signs`` > 0 and to brown (the colour that no attribute names, so leaving the
    attribute moves no other one) where ``signs`` < 0. 0 on an image without hair. The
    classifier's score alone gives a weak signal on the way between two hair colours (an
    edit from red towards blond stalls at brown); this one pulls through it. None for an
    attribute that is not a hair colour."""
    from .generator import HAIR_COLOURS

    colour = hair_colour_attribute(attribute)
    if colour is None:
        return None
    h = checker.index["hair"]
    towards = torch.tensor(HAIR_COLOURS[colour], dtype=torch.float32) / 127.5 - 1.0
    away = torch.tensor(HAIR_COLOURS[HAIR_AWAY], dtype=torch.float32) / 127.5 - 1.0

    def fn(after: torch.Tensor, before: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            hair = (checker.labels(before) == h).float()[:, None]
        target = torch.where(signs.view(-1, 1).to(after.device) > 0, towards.to(after.device),
                             away.to(after.device))[:, :, None, None]
        dist = (after.clamp(-1, 1).float() - target).pow(2).sum(1, keepdim=True)
        return (dist * hair).flatten(1).sum(1) / hair.flatten(1).sum(1).clamp(min=1.0)

    return fn


def outside_hair_loss(checker: PartChecker) -> Callable:
    """A penalty on changing the image outside the unedited image's hair, for fits of a hair
    colour, as ``fn(after, before, signs) -> (N,)``: the squared RGB change (images in
    [-1, 1]) summed over the pixels the segmenter does not read as hair in ``before``, per
    hair pixel (so that it weighs a changed pixel as :func:`hair_colour_loss` weighs one
    off its colour). 0 on a bald head (fewer than ``BALD_PIXELS`` hair pixels), where an edit
    towards a hair colour must grow hair."""
    h = checker.index["hair"]

    def fn(after: torch.Tensor, before: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            hair = (checker.labels(before) == h).float()[:, None]
            count = hair.flatten(1).sum(1)
        change = (after.clamp(-1, 1).float() - before.clamp(-1, 1).float()).pow(2).sum(1, keepdim=True)
        out = (change * (1.0 - hair)).flatten(1).sum(1) / count.clamp(min=1.0)
        return torch.where(count >= BALD_PIXELS, out, torch.zeros_like(out))

    return fn


def shipped_checker() -> PartChecker:
    """The checks with the shipped toy-face segmenter (``resources/toyfaces-segmenter``)."""
    from .nets import load_segmenter
    from .quality import SEGMENTER_DIR

    return PartChecker(*load_segmenter(SEGMENTER_DIR))


def shipped_terms(attribute: str, part_check: float = 0.0, hair_colour: float = 0.0,
                  outside_hair: float = 0.0, checker: Optional[PartChecker] = None,
                  strict: bool = True) -> tuple:
    """A fit's segmenter penalty as :func:`combined_term` gives it, from the weights of the part
    check, the pull of the hair to its colour and the hold on the pixels outside the hair (0
    leaves a term out), read by ``checker`` (the shipped segmenter, loaded once, when None).
    The part check exists for :data:`CHECKED` only, the other two for
    :func:`hair_colour_attributes`: a term asked for an ``attribute`` it does not apply to
    raises :class:`TermRefused` naming it, or with ``strict`` False is left out (``evaluate``,
    whose weights hold for all the attributes it fits)."""
    asked = []
    for weight, name in ((part_check, PART_CHECK_NAME), (hair_colour, HAIR_COLOUR_NAME),
                         (outside_hair, OUTSIDE_HAIR_NAME)):
        if not weight > 0:
            continue
        if name == PART_CHECK_NAME and attribute not in CHECKED:
            refusal = f"the segmenter checks the parts of {', '.join(CHECKED)} only, not '{attribute}'"
        elif name != PART_CHECK_NAME and hair_colour_attribute(attribute) is None:
            what = "the hair's colour pull" if name == HAIR_COLOUR_NAME else "holding the pixels outside the hair"
            refusal = f"{what} is for the hair colours {', '.join(hair_colour_attributes())}, not '{attribute}'"
        else:
            asked.append((weight, name))
            continue
        if strict:
            raise TermRefused(name, refusal)
    if not asked:
        return None, 0.0, None
    checker = checker or shipped_checker()
    make = {PART_CHECK_NAME: lambda: part_loss(checker, attribute),
            HAIR_COLOUR_NAME: lambda: hair_colour_loss(checker, attribute),
            OUTSIDE_HAIR_NAME: lambda: outside_hair_loss(checker)}
    return combined_term([(w, make[n](), n) for w, n in asked])


def weighted_sum(terms) -> Callable:
    """One penalty ``fn(after, before, signs)``: the sum of ``weight * fn`` over the
    ``(weight, fn)`` pairs of ``terms`` whose fn is not None (a fit's part check and hair
    colour pull together)."""
    terms = [(float(w), t) for w, t in terms if t is not None]

    def fn(after: torch.Tensor, before: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        return sum(w * t(after, before, signs) for w, t in terms)

    return fn


def combined_term(terms) -> tuple:
    """A fit's segmenter penalty as ``(fn, weight, name)`` from ``(weight, fn, name)`` triples
    (those with weight 0 or fn None left out): one term as it is; several as their
    :func:`weighted_sum`, weight 1, the name giving each weight; ``(None, 0.0, None)`` for none."""
    terms = [(float(w), t, n) for w, t, n in terms if t is not None and w > 0]
    if not terms:
        return None, 0.0, None
    if len(terms) == 1:
        return terms[0][1], terms[0][0], terms[0][2]
    return (weighted_sum((w, t) for w, t, _ in terms), 1.0,
            " + ".join(f"{name} x{w:g}" for w, _, name in terms))

