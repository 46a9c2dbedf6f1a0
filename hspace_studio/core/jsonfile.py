"""Reading JSON files a user hands us, with the project's error types (no Qt, no torch).

``read_json(path, what)`` raises :class:`~.errors.MissingFileError` for a missing file
and :class:`~.errors.InvalidFileError` for everything else that can be wrong with one:
too large, unreadable, not UTF-8, not JSON, nested too deeply for the parser. It never
evaluates anything: JSON only.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import InvalidFileError, MissingFileError, reason

MAX_JSON_BYTES = 256 * 1024 * 1024


def read_json(path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES):
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{what} not found: {p}")
    if not p.is_file():
        raise InvalidFileError(f"{what} {p} is not a file")
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise InvalidFileError(f"{what} {p} is too large ({size / 2**20:.0f} MiB; "
                                   f"at most {max_bytes / 2**20:.0f} MiB)")
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InvalidFileError(f"{what} {p} cannot be read ({e.strerror or type(e).__name__})") from e
    if len(data) > max_bytes:  # grew while we looked
        raise InvalidFileError(f"{what} {p} is too large")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InvalidFileError(f"{what} {p} is not valid JSON (not UTF-8 text)") from e
    except RecursionError as e:
        raise InvalidFileError(f"{what} {p} is not valid JSON (nested too deeply)") from e
    except ValueError as e:
        raise InvalidFileError(f"{what} {p} is not valid JSON ({reason(e, 100)})") from e
