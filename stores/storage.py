"""The error of a write that the disk refused (full, file too large, over quota): nothing of it was kept."""

from anomaly_distill.errors import DataError


class StorageError(DataError):
    """A write that could not be made, with where and why. A DataError so that the command line prints the reason
    on one line and exits non-zero; the service answers it with 503 (try again later), not 422."""


def storage_error(what: str, error: BaseException, kept: str = "nothing of it was kept") -> StorageError:
    """`what` could not be written, and why: the OS's reason ("No space left on device") rather than a traceback."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return StorageError(f"{what} could not be written: {reason}; {kept}")
