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
  domain's default model (the app shows it beside the supervised panel's attribute).

Exactly one domain is active at a time (:func:`use_domain`); the command line and the
app choose it (:mod:`hspace_studio.domains`). The engine never imports a domain's
package: it only reads what the active one registered here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..core.errors import HSpaceError


@dataclass(frozen=True)
class FolderFormat:
    """A network folder format of a domain: ``matches(folder)`` says whether a folder is
    in it; ``load(folder, device)`` returns the classifier or segmenter."""

    name: str
    matches: Callable[[Path], bool]
    load: Callable[[Path, object], object]


@dataclass
class Domain:
    name: str
    description: str = ""
    default_model: str = "default"
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


GENERIC = Domain("generic", "no domain: classifiers and segmenters are the user's own files")
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
