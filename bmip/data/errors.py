"""Exceptions of the data layer; each message says what went wrong and what to do about it."""
from __future__ import annotations


class DataError(Exception):
    """Base class: anything the data layer refuses to work with."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset folder or file is missing (the message names the download command)."""


class MissingImagesError(DataError, FileNotFoundError):
    """A split lists images that are not on disk."""


class ImageDecodeError(DataError, OSError):
    """An image file cannot be decoded (empty, truncated, not an image, unsupported); the message names it."""


class DataCheckError(DataError):
    """`bmip check-data` found unreadable images; the message lists every one, by dataset."""


class SplitFileError(DataError, ValueError):
    """A split file is malformed or inconsistent (labels vs class names, paths, counts)."""


class DegenerateDatasetError(DataError, ValueError):
    """A dataset that would give meaningless numbers: too few classes for its protocol, or two class
    folders that are one directory (the same images as two classes)."""


class DownloadError(DataError):
    """A download failed on every mirror."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its recorded size or hash; it was deleted, never used."""


class ManualDownloadRequired(DataError):
    """The dataset's licence needs a manual step; the message says exactly what to put where."""


class DeadSourceError(DownloadError):
    """No live source is known for a file; the message says how to supply it by hand."""


class UnsafeArchiveError(DataError, ValueError):
    """An archive entry would land outside the target (absolute path, '..', link, device)."""


class NestedCopyError(ManualDownloadRequired):
    """A hand-supplied folder is nested one level too deep (`cars_train/cars_train/*.jpg`, as in the
    common Kaggle copy of Stanford Cars); the message gives the `mv` command that fixes it."""
