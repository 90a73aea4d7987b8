"""The exception types the library raises, each naming what failed and why, and whether trying again may help.

Every error raised on purpose is an ArchiveError, and either a TransientError (the same call may succeed later:
a store or network that failed, a lock held by another run) or a TerminalError (it will fail the same way until a
person changes something: a setting, the source, a manifest). Retry policy reads the type (`is_transient`), as dlt's
TransientException and TerminalException do.
"""

from __future__ import annotations


class ArchiveError(Exception):
    """Base of every error this package raises on purpose. Raised as itself, it is terminal."""

    def __reduce__(self):
        # Errors cross process boundaries (worker processes, Dask): rebuild them
        # from the arguments their constructor took, not from the message.
        return (type(self), getattr(self, "_init_args", self.args))


class TransientError(ArchiveError):
    """The same call may succeed if it is made again."""


class TerminalError(ArchiveError):
    """The call fails the same way until a person changes something; trying again does not help."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failure may pass if the work is tried again.

    An ArchiveError says so by its type (only TransientError may pass). Anything else
    (an OSError, a network library's error, a third-party parser's) is not known to be
    lasting, so it may be tried again.
    """
    if isinstance(exc, ArchiveError):
        return isinstance(exc, TransientError)
    return isinstance(exc, Exception)


class StoreError(TransientError):
    """An object store operation failed; names the key and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self._init_args = (key, reason)
        self.key = key
        self.reason = reason


class ObjectExistsError(StoreError):
    """A write-once key already holds an object (another writer got there first).

    Transient as a StoreError: a retried batch or commit writes under keys of its own attempt.
    """

    def __init__(self, key: str):
        super().__init__(key, "already exists (write-once key)")
        self._init_args = (key,)


class ObjectNotFoundError(StoreError):
    """The key holds no object."""

    def __init__(self, key: str):
        super().__init__(key, "no such object")
        self._init_args = (key,)


class SourceError(TerminalError):
    """The ingest source cannot be walked at all (missing, not a directory...), or changed under the run."""


class ManifestError(TerminalError):
    """A run manifest is missing, unreadable or does not validate."""


class ConfigurationError(TerminalError):
    """A setting (DEST, limits, credentials) is unusable; raised before any work starts."""


class NotFoundError(TerminalError):
    """What a command names (a run, a path, a doc_id) is not in the store."""


class DamagedPartError(TerminalError):
    """A part file a committed manifest lists is missing or differs from the sha256 and size the manifest records:
    nothing is read from it."""

    def __init__(self, key: str, run_id: str, reason: str):
        super().__init__(f"part {key} of run {run_id} {reason}; nothing was read from it (archive verify names every "
                         "damaged part)")
        self._init_args = (key, run_id, reason)
        self.key = key
        self.run_id = run_id
        self.reason = reason
