"""The few exception types the library raises, each naming what failed and why."""


class ArchiveError(Exception):
    """Base of every error this package raises on purpose."""

    def __reduce__(self):
        # Errors cross process boundaries (worker processes, Dask): rebuild them
        # from the arguments their constructor took, not from the message.
        return (type(self), getattr(self, "_init_args", self.args))


class StoreError(ArchiveError):
    """An object store operation failed; names the key and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self._init_args = (key, reason)
        self.key = key
        self.reason = reason


class ObjectExistsError(StoreError):
    """A write-once key already holds an object (another writer got there first)."""

    def __init__(self, key: str):
        super().__init__(key, "already exists (write-once key)")
        self._init_args = (key,)


class ObjectNotFoundError(StoreError):
    """The key holds no object."""

    def __init__(self, key: str):
        super().__init__(key, "no such object")
        self._init_args = (key,)


class SourceError(ArchiveError):
    """The ingest source cannot be walked at all (missing, not a directory...)."""


class ManifestError(ArchiveError):
    """A run manifest is missing, unreadable or does not validate."""


class ConfigurationError(ArchiveError):
    """A setting (DEST, limits, credentials) is unusable; raised before any work starts."""
