"""The project's own error types. Everything a user can cause raises one of these."""


class HSpaceError(Exception):
    """Base class: a problem the user can fix, with a one-line readable message."""


class ModelLoadError(HSpaceError):
    """A model could not be found, downloaded or understood."""


class FileFormatError(HSpaceError):
    """A file is missing, unreadable, truncated or not of the expected kind."""


class ModelMismatchError(HSpaceError):
    """A file was made for another model, h-space point or shape."""


class ImageError(FileFormatError):
    """An image file cannot be read."""


class Cancelled(HSpaceError):
    """A long operation was cancelled by the user."""
