"""How an error reaches the user, the same on the command line and in the app: one line.

An error the user's input can cause (:data:`USER_ERRORS`: the project's own errors, bad
values, missing or unreadable files) is shown as its first line. Anything else is a bug
and says so (``unexpected KeyError: ...``); the caller decides whether to show the
traceback as well (:func:`is_expected`).
"""
from __future__ import annotations

from ..core.errors import HSpaceError

USER_ERRORS = (HSpaceError, ValueError, IndexError, OSError)
# the app also reads a missing key as the user's (a direction set or part that is gone)
APP_ERRORS = USER_ERRORS + (KeyError,)


def first_line(e: BaseException) -> str:
    """The first non-empty line of the message ("" if it has none)."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), "")


def is_expected(e: BaseException, expected=USER_ERRORS) -> bool:
    return isinstance(e, expected)


def error_message(e: BaseException, expected=USER_ERRORS) -> str:
    """One line for ``e``: its first line (or its type's name) where the user can cause it,
    else ``unexpected TYPE: first line``."""
    if is_expected(e, expected):
        return first_line(e) or type(e).__name__
    return f"unexpected {type(e).__name__}: {first_line(e)}"
