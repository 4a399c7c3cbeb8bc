"""Typed errors for bad input.

Every loader in :mod:`core.io` raises a subclass of :class:`InputError` with a message that a
radiologist can act on ("the file is cut short", "this is a 4-D series"), never a bare library
traceback. The dashboard shows ``str(error)``; the CLI prints it and exits with status 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Base class: the input cannot be used, and the message says why in plain words."""


class UnsupportedFormatError(InputError):
    """The file is not NIfTI, DICOM, PNG or JPEG (or a folder / zip of DICOM files)."""


class NotAFileError(InputError):
    """The path is not a regular file: a named pipe (FIFO), a device, a socket, a folder where a file
    was expected, a symbolic link loop or a link to nothing. Such paths are never opened."""


class CorruptFileError(InputError):
    """The file claims a supported format but cannot be decoded (truncated, damaged header ...)."""


class DimensionError(InputError):
    """The image has a number of dimensions SAFEGEN does not handle (e.g. 4-D fMRI / DWI, 1-D)."""


class UnsupportedDataError(InputError):
    """The file is readable but its voxels are of a kind SAFEGEN does not assess (complex or RGB values)."""


class TooSmallError(InputError):
    """The image is smaller in-plane than the smallest size SAFEGEN scores (:data:`core.io.MIN_SCORABLE_SIDE`)."""


class NonFiniteError(InputError):
    """The image holds NaN or infinite voxels."""


class EmptyImageError(InputError):
    """The image has no pixels, or every pixel has the same value (nothing to assess)."""


class TooLargeError(InputError):
    """The file, the bytes it unpacks to or the decoded image exceed a configured size limit."""


class SeriesMismatchError(InputError):
    """The DICOM files of a folder do not form one consistent series."""
