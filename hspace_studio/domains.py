"""The domains the command line and the app can run with, and the one they start with.

A domain (:mod:`hspace_studio.engine.domain`) supplies the default model, classifier,
segmenter and fit terms for one kind of image. The toy faces are the only one shipped;
it is active unless another is chosen.
"""
from __future__ import annotations

import importlib

from .engine.domain import GENERIC, Domain, active_domain, use_domain

# name -> (module, attribute) of the Domain object
DOMAINS = {"toyfaces": ("hspace_studio.toyfaces.domain", "TOY_FACES")}
DEFAULT = "toyfaces"


def activate(name: str = DEFAULT) -> Domain:
    """Make the domain ``name`` the active one and return it."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain '{name}' (known: {', '.join(DOMAINS)})")
    module, attr = DOMAINS[name]
    domain = getattr(importlib.import_module(module), attr)
    use_domain(domain)
    return domain


def ensure() -> Domain:
    """The active domain, activating the default one if none has been chosen yet."""
    return activate() if active_domain() is GENERIC else active_domain()
