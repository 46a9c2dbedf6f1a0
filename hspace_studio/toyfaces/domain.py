"""The toy faces as a domain of the general tool (:mod:`hspace_studio.engine.domain`).

The embedded default model is trained on these faces; the domain supplies its attribute
classifier and part segmenter (folders in the toy networks' own format, loaded by
:mod:`.nets`), the fit terms read by the segmenter (:mod:`.part_checks`), the presets of
``supervised --optimize`` (the model card's recipes) and its own commands, ``demo`` and
``evaluate`` (:mod:`.commands`).
"""
from __future__ import annotations

from ..core.errors import reason

import json
from pathlib import Path
from typing import Dict

import torch

from ..engine.annotate import AttributeClassifier, ClassifierError, _check_names, _file_digest
from ..engine.domain import Domain, FolderFormat, Preset, TermRefused
from ..engine.segmenter import Segmenter, SegmenterError
from .generator import ATTRIBUTE_NAMES
from .part_checks import hair_colour_attributes
from .quality import CLASSIFIER_DIR, SEGMENTER_DIR

# fit terms: the name given to --term, and the keyword of part_checks.shipped_terms it sets
TERMS = {
    "part-check": ("part_check", "the segmenter's check that the edit drew its attribute's part "
                                 "(eyeglasses, smiling, mouth_open, blond_hair)"),
    "hair-colour": ("hair_colour", "pull the hair to the attribute's palette colour (hair colours)"),
    "outside-hair": ("outside_hair", "hold the pixels outside the unedited hair (hair colours)"),
}


def _toy_folder(kind: str):
    def matches(folder: Path) -> bool:
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(cfg, dict) and cfg.get("kind") == kind and "format_version" in cfg
    return matches


class ToyFaceAttributeClassifier(AttributeClassifier):
    """The toy-face attribute classifier (sigmoid of its logits)."""

    def __init__(self, folder=None, device=None):
        from .nets import load_classifier as _load

        folder = Path(folder) if folder is not None else CLASSIFIER_DIR
        if not folder.is_dir():
            raise ClassifierError(f"the toy-face classifier is missing ({folder}); {MISSING['classifier']}")
        try:
            module, names = _load(folder)
        except (FileNotFoundError, ValueError) as e:
            raise ClassifierError(reason(e)) from e
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.module = module.to(self.device).eval()
        self.attributes = _check_names(list(names), str(folder))
        self.name = f"toyfaces:{folder.name}"
        self.folder = folder
        self.input_size = (64, 64)
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors"))
        self.digest = _file_digest(files)

    def _raw(self, x):
        return torch.sigmoid(self.module(x.to(self.device)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module.features(self._prepare(images).to(self.device)).float().cpu()


def load_toy_segmenter(folder, device=None) -> Segmenter:
    from .nets import load_segmenter as _load

    folder = Path(folder)
    try:
        net, parts = _load(folder)
    except (FileNotFoundError, ValueError) as e:
        raise SegmenterError(f"no segmenter: {reason(e)}") from e
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors"))
    seg = Segmenter(net, parts, name=f"toyfaces:{folder.name}", digest=_file_digest(files))
    return seg.to(device) if device is not None else seg


def build_terms(attribute: str, weights: Dict[str, float], strict: bool = True) -> tuple:
    from .part_checks import HAIR_COLOUR_NAME, OUTSIDE_HAIR_NAME, PART_CHECK_NAME, shipped_terms

    try:
        return shipped_terms(attribute, strict=strict, **{TERMS[name][0]: w for name, w in weights.items()})
    except TermRefused as e:  # name the term as --term does
        short = {PART_CHECK_NAME: "part-check", HAIR_COLOUR_NAME: "hair-colour", OUTSIDE_HAIR_NAME: "outside-hair"}
        raise TermRefused(short.get(e.term, e.term), str(e)) from None


# what the model card measured on the default model (held-out faces, scale 1): a mean
# difference of examples flips few faces of these attributes; a fit through the sampler does
_FIT = ("a mean difference of examples flips {mean} of faces here; choose the preset '{preset}' "
        "(Fit through the sampler, 80 iterations, and Check the part{extra}): {fit} flipped in the model card"
        "{kept}")
_KEPT = ", fitted for edits kept where the part can be (evaluate --optimize-keep-in)"
ADVICE = {
    "smiling": _FIT.format(mean="9%", preset="smiling", extra="", fit="95%", kept=_KEPT),
    "eyeglasses": _FIT.format(mean="2%", preset="eyeglasses", extra=", at every step", fit="100%", kept=_KEPT),
    "mouth_open": _FIT.format(mean="10%", preset="mouth-open", extra=", at every step", fit="98%", kept=_KEPT),
    "blond_hair": ("a mean difference of examples flips 11% of faces here; choose the preset 'hair-colour' "
                   "(Fit through the sampler, 100 iterations at every step, kept in each face's own hair "
                   "+1 px, the hair recoloured): 93% flipped in the model card"),
}

# presets: the model card's recipes of supervised --optimize
HAIR_COLOURS_NAMED = tuple(hair_colour_attributes())
_PART = {"terms": {"part-check": 16.0}}
_NOT_KEPT = "; left out: the model card's region where the part can be (no file form)"


def _hair_colour(attribute: str) -> dict:
    """The recolouring's values for one hair colour: the other colours free; the part check
    where the segmenter checks the attribute (blond_hair)."""
    from .part_checks import CHECKED

    out = {"free": [a for a in HAIR_COLOURS_NAMED if a != attribute]}
    if attribute in CHECKED:
        out["terms"] = {"part-check": 16.0}
    return out


PRESETS = [
    Preset("smiling", "smiling: 80 iterations, part-check 16" + _NOT_KEPT,
           {"optimize": 80, **_PART}, attributes=("smiling",)),
    Preset("eyeglasses", "eyeglasses: 80 iterations at every step, part-check 16" + _NOT_KEPT,
           {"optimize": 80, "window": "all", **_PART}, attributes=("eyeglasses",)),
    Preset("mouth-open", "mouth_open: 80 iterations at every step, part-check 16" + _NOT_KEPT,
           {"optimize": 80, "window": "all", **_PART}, attributes=("mouth_open",)),
    Preset("hair-colour", "recolour the hair (hair colours): 100 iterations at every step, kept in each "
           "face's own hair +1 px, hair-colour 48, outside-hair 16, part-check 16 (blond_hair), the other "
           "hair colours free, bald skipped",
           {"optimize": 100, "window": "all", "keep_in_part": ["hair"], "grow": 1,
            "terms": {"hair-colour": 48.0, "outside-hair": 16.0}, "skip": ["bald"]},
           attributes=HAIR_COLOURS_NAMED, for_attribute=_hair_colour),
]

MISSING = {
    "classifier": "train it with `python -m hspace_studio.training.classifier --out resources/toyfaces-classifier` "
                  "(docs/training.md) or pass --classifier",
    "segmenter": "train it with `python -m hspace_studio.training.segmenter --out resources/toyfaces-segmenter` "
                 "(docs/training.md) or pass --segmenter",
}

TOY_FACES = Domain(
    name="toyfaces",
    description="procedural toy faces: the embedded default model's domain",
    default_model="default",
    default_classifier=str(CLASSIFIER_DIR),
    default_segmenter=str(SEGMENTER_DIR),
    classifier_formats=[FolderFormat("toyfaces classifier", _toy_folder("classifier"),
                                     lambda folder, device: ToyFaceAttributeClassifier(folder, device))],
    segmenter_formats=[FolderFormat("toyfaces segmenter", _toy_folder("segmenter"), load_toy_segmenter)],
    terms={name: help for name, (_, help) in TERMS.items()},
    build_terms=build_terms,
    advice=ADVICE,
    presets=PRESETS,
    attributes=tuple(ATTRIBUTE_NAMES),
    # a fit kept in each face's own part: the app's choices and the segmenter parts they name
    part_groups={"mouth": ("mouth",), "eyes": ("left_eye", "right_eye"),
                 "eyes and glasses": ("left_eye", "right_eye", "glasses"), "brows": ("brows",), "hair": ("hair",)},
    commands={"demo": "hspace_studio.toyfaces.commands.demo", "evaluate": "hspace_studio.toyfaces.commands.evaluate"},
    missing_hints=MISSING,
    image_size=(64, 64),
)
