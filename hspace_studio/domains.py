"""The domains the command line and the app can run with, and the one they start with.

A domain (:mod:`hspace_studio.engine.domain`) supplies the default model, classifier,
segmenter, fit terms, presets and commands of its own for one kind of image. Two are
known: the toy faces (``toyfaces``, the default) and ``generic``, no domain at all (the
model, classifier and segmenter are the user's own files). ``hspace-studio --domain NAME``
or the environment variable ``HSPACE_DOMAIN`` chooses one.
"""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from typing import Iterator, Optional

from .engine.domain import Domain, active_domain, use_domain

# name -> (module, attribute) of the Domain object
DOMAINS = {"toyfaces": ("hspace_studio.toyfaces.domain", "TOY_FACES"),
           "generic": ("hspace_studio.engine.domain", "GENERIC")}
DEFAULT = "toyfaces"
ENV = "HSPACE_DOMAIN"  # the domain to start with when none is given on the command line

_chosen: Optional[str] = None  # the name of the domain activated here (None: none yet)


def get(name: str) -> Domain:
    """The domain ``name`` (not activated)."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain '{name}' (known: {', '.join(DOMAINS)})")
    module, attr = DOMAINS[name]
    return getattr(importlib.import_module(module), attr)


def activate(name: Optional[str] = None) -> Domain:
    """Make the domain ``name`` (None: ``$HSPACE_DOMAIN``, else the default) the active one
    and return it."""
    global _chosen
    name = name or os.environ.get(ENV) or DEFAULT
    domain = get(name)
    use_domain(domain)
    _chosen = name
    return domain


def ensure() -> Domain:
    """The active domain, activating ``$HSPACE_DOMAIN`` or the default one if none has been
    chosen yet."""
    return active_domain() if _chosen is not None else activate()


@contextmanager
def chosen(name: Optional[str] = None) -> Iterator[Domain]:
    """The domain ``name`` active for the body, and the one before it after (a command run
    in-process leaves the caller's domain as it was); None: :func:`ensure`'s."""
    global _chosen
    before, before_name = active_domain(), _chosen
    domain = activate(name) if name else ensure()
    try:
        yield domain
    finally:
        if name:
            use_domain(before)
            _chosen = before_name
