"""The project's own error types. Everything a user can cause raises one of these."""


class HSpaceError(Exception):
    """Base class: a problem the user can fix, with a one-line readable message."""


class ModelLoadError(HSpaceError):
    """A model could not be found, downloaded or understood."""


class FileFormatError(HSpaceError):
    """A file is missing, unreadable, truncated or not of the expected kind."""


class MissingFileError(FileFormatError, FileNotFoundError):
    """A file or folder is not there. Also a ``FileNotFoundError``, for callers (and older
    code) that catch the built-in type."""


class InvalidFileError(FileFormatError, ValueError):
    """A file is there but its content is bad (not JSON, wrong shapes, NaN ...). Also a
    ``ValueError``, for callers that catch the built-in type."""


class ModelMismatchError(HSpaceError):
    """A file was made for another model, h-space point or shape."""


class ImageError(FileFormatError):
    """An image file cannot be read."""


class Cancelled(HSpaceError):
    """A long operation was cancelled by the user."""


def reason(e: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (at most ``limit`` characters), or
    its type's name: what a one-line error says after "cannot load ...:", never empty."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(e).__name__

