"""How the app shows a direction's label: numbered from 1, as the plots number them.

The engine names the directions it finds by their row in the file, from 0 ("PC 0",
"J 0 (masked)", "pca 0"); files, sessions and recipes keep those labels and rows as they
are. On screen the same directions are "PC 1", "J 1 (masked)", ... A label the user gave
(anything else) is shown as it is.
"""
from __future__ import annotations

import re

_DEFAULT = re.compile(r"^(PC|J|pca|jacobian|supervised|disentangled|imported|custom) (\d+)((?: \(.*\))?)$")


def shown_label(index: int, label: str) -> str:
    """``label`` as the user sees it: an engine's default label of row ``index`` numbered
    from 1; any other label unchanged."""
    m = _DEFAULT.match(label)
    if m is None or int(m.group(2)) != int(index):
        return label
    return f"{m.group(1)} {int(index) + 1}{m.group(3)}"
