"""Domains: what the general tool knows about one kind of image, supplied from outside.

The engine works on any diffusion model; what it knows about faces, or any other
subject, comes from a *domain*: a bundle of

- a default model (a name or folder ``load_model`` accepts);
- a default attribute classifier and a default part segmenter (specs that
  :func:`.annotate.load_classifier` and :func:`.segmenter.load_segmenter` accept);
- the folder formats of its own networks (a domain whose classifier or segmenter is
  saved in a format of its own registers a loader for it; TorchScript files with a JSON
  list of names load without one);
- named fit terms: extra penalties of ``supervised --optimize`` (``--term NAME=WEIGHT``),
  each with a line of help, and the function that builds them for an attribute;
- advice: for an attribute, what finds a direction that does what its name says on the
  domain's default model (the app shows it beside the supervised panel's attribute);
- presets: named recipes of ``supervised --optimize`` (:class:`Preset`: the option values
  each sets, ``supervised --preset NAME``, the app's Preset list);
- the names the app shows before it loads a network: the default classifier's attributes,
  and named groups of the default segmenter's parts (a fit kept in each image's own part);
- commands of its own (``hspace-studio COMMAND``: module names, imported by the command
  line only, never by the engine);
- hints: what to do when one of its shipped networks is missing (how to train it).

Exactly one domain is active at a time (:func:`use_domain`); the command line and the
app choose it (:mod:`hspace_studio.domains`). The engine never imports a domain's
package: it only reads what the active one registered here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from ..core.errors import HSpaceError


@dataclass(frozen=True)
class FolderFormat:
    """A network folder format of a domain: ``matches(folder)`` says whether a folder is
    in it; ``load(folder, device)`` returns the classifier or segmenter."""

    name: str
    matches: Callable[[Path], bool]
    load: Callable[[Path, object], object]


# the options a preset may set, by the supervised command's names (``args`` attributes):
# optimize: iterations; window: "all" (every step) or (T0, T1); terms: {term name: weight};
# free, skip, keep_in_part: lists of names; the rest as the command's option of that name
PRESET_OPTIONS = ("optimize", "train_samples", "keep", "lr", "window", "shared", "per_channel", "still",
                  "free", "skip", "keep_in_part", "grow", "free_steps", "terms")


class PresetRefused(HSpaceError, ValueError):
    """A preset asked for an attribute it is not for, or a preset the domain does not have."""


@dataclass(frozen=True)
class Preset:
    """A named recipe of ``supervised --optimize``: the option values it sets.

    ``options`` maps names of :data:`PRESET_OPTIONS` to values; ``attributes`` lists the
    attributes it is for (empty: any); ``for_attribute(attribute)`` returns the values that
    depend on the attribute (e.g. the other hair colours a recolouring frees), merged over
    ``options``. Everything a preset sets has a file or command-line form, so a fit made
    with one replays from its expanded options."""

    name: str
    description: str
    options: Mapping[str, object] = field(default_factory=dict)
    attributes: Tuple[str, ...] = ()
    for_attribute: Optional[Callable[[str], Dict[str, object]]] = None

    def __post_init__(self):
        unknown = sorted(set(self.options) - set(PRESET_OPTIONS))
        if unknown:
            raise ValueError(f"preset {self.name}: unknown option(s) {', '.join(unknown)} "
                             f"(a preset sets {', '.join(PRESET_OPTIONS)})")

    def expand(self, attribute: str) -> Dict[str, object]:
        """The option values this preset sets for ``attribute`` (a copy); refused with
        :class:`PresetRefused` for an attribute it is not for."""
        if self.attributes and attribute not in self.attributes:
            raise PresetRefused(f"the preset {self.name} is for {', '.join(self.attributes)}, not '{attribute}'")
        out = {k: _copy(v) for k, v in self.options.items()}
        if self.for_attribute is not None:
            extra = dict(self.for_attribute(attribute))
            unknown = sorted(set(extra) - set(PRESET_OPTIONS))
            if unknown:
                raise ValueError(f"preset {self.name}: unknown option(s) {', '.join(unknown)}")
            terms = {**out.get("terms", {}), **extra.pop("terms", {})}
            out.update({k: _copy(v) for k, v in extra.items()})
            if terms:
                out["terms"] = terms
        return out


def _copy(value):
    if isinstance(value, Mapping):
        return {str(k): float(w) for k, w in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


@dataclass
class Domain:
    name: str
    description: str = ""
    default_model: Optional[str] = None  # a name or folder load_model accepts; None: --model is needed
    default_classifier: Optional[str] = None
    default_segmenter: Optional[str] = None
    classifier_formats: List[FolderFormat] = field(default_factory=list)
    segmenter_formats: List[FolderFormat] = field(default_factory=list)
    # fit terms: name -> help, and build_terms(attribute, {name: weight}, strict) -> the fit's
    # penalty (fn, weight, name), or (None, 0, None) when every weight is 0; a term that does
    # not apply to the attribute raises TermRefused with strict, else is left out
    terms: Dict[str, str] = field(default_factory=dict)
    build_terms: Optional[Callable[[str, Dict[str, float], bool], tuple]] = None
    advice: Dict[str, str] = field(default_factory=dict)  # attribute -> a line of advice
    presets: List[Preset] = field(default_factory=list)
    attributes: Tuple[str, ...] = ()  # the default classifier's attribute names
    part_groups: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # name -> default segmenter parts
    commands: Dict[str, str] = field(default_factory=dict)  # command name -> module (add_parser, run)
    missing_hints: Dict[str, str] = field(default_factory=dict)  # "classifier"/"segmenter" -> what to do
    # the images its default classifier and segmenter are made for: unconditional pixel
    # models' images of at most this (height, width) (None: any model's)
    image_size: Optional[Tuple[int, int]] = None

    def makes_its_images(self, image_size, conditional: bool, latent: bool) -> bool:
        """Whether a model is one the domain's default classifier and segmenter mean
        something on (the app offers them only then): with ``image_size`` set, unconditional
        pixel models of images no larger than it; text-to-image, latent and larger-image
        models make other images."""
        if self.image_size is None:
            return True
        h, w = self.image_size
        return not conditional and not latent and image_size[0] <= h and image_size[1] <= w

    def preset(self, name: str) -> Preset:
        """The preset ``name``; refused, naming the ones there are, if the domain has none so named."""
        for p in self.presets:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.presets) or "none"
        raise PresetRefused(f"no preset {name} in the {self.name} domain (it has: {known})")

    def missing(self, kind: str, path) -> str:
        """The message for its default ``kind`` ("classifier", "segmenter") missing at ``path``."""
        hint = self.missing_hints.get(kind) or f"pass --{kind}"
        return f"the {self.name} domain's {kind} is missing ({path}); {hint}"


GENERIC = Domain("generic", "no domain: the model, classifiers and segmenters are the user's own files")
_active: Domain = GENERIC


def use_domain(domain: Domain) -> Domain:
    """Make ``domain`` the active one; returns the one it replaces."""
    global _active
    old, _active = _active, domain
    return old


def active_domain() -> Domain:
    return _active


def folder_format(folder: Path, kind: str) -> Optional[FolderFormat]:
    """The active domain's format of a classifier or segmenter folder, or None."""
    formats = _active.classifier_formats if kind == "classifier" else _active.segmenter_formats
    return next((f for f in formats if f.matches(folder)), None)


class TermRefused(HSpaceError, ValueError):
    """A fit term asked for an attribute it does not apply to (``term``: its name)."""

    def __init__(self, term: str, message: str):
        super().__init__(message)
        self.term = term


def fit_terms(attribute: str, weights: Dict[str, float], strict: bool = True) -> tuple:
    """The active domain's penalty for a fit of ``attribute`` with the terms ``weights``
    (name -> weight; 0 leaves a term out): (fn, weight, name), or (None, 0.0, None)."""
    asked = {k: float(w) for k, w in weights.items() if float(w) > 0}
    if not asked:
        return None, 0.0, None
    unknown = sorted(set(asked) - set(_active.terms))
    if unknown or _active.build_terms is None:
        known = ", ".join(sorted(_active.terms)) or "none"
        raise HSpaceError(f"no fit term {', '.join(unknown) or ', '.join(asked)} in the {_active.name} "
                          f"domain (it has: {known})")
    return _active.build_terms(attribute, asked, strict)
