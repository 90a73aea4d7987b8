"""LocalStore: the object store in a local directory, write-once through hard links."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import ConfigurationError, ObjectExistsError, ObjectNotFoundError, StoreError
from ..fixity import open_for_reading
from .base import ObjectInfo, PutResult, Store, validate_key


class LocalStore(Store):
    """A directory. Writes go to a temporary file, then a hard link makes them
    visible atomically and fails if the key exists: write-once without locks.

    Manifests are fsynced one by one. Other objects are made durable together
    by flush() (one syncfs per batch instead of two fsyncs per file, each of
    which waits for the disk); flush() always runs before the manifest that
    makes them visible is written.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._tmp = self.root / ".tmp"
        self._directories = _Directories()
        self._unnamed: bool | None = None  # whether files are made without a name (O_TMPFILE); known at the first put
        self._new_names()

    def _new_names(self) -> None:
        # Temporary files are put-<pid>-<token>-<count> (see _publish): a new token for each copy of the store.
        self._token = uuid.uuid4().hex[:12]
        self._count = itertools.count()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_token", "_count", "_unnamed")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._unnamed = None
        self._new_names()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def check_writable(self) -> None:
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigurationError(f"DEST {self.root} is not writable: {exc.strerror or exc}") from exc

    def _publish(self, key: str, write, sha256: str | None) -> PutResult:
        """write(fd) -> (size, sha256 hex) fills a new file; a hard link publishes it under key.

        The new file has no name until the link (O_TMPFILE, in the key's own directory): nothing is left
        behind by a write that fails or a process that dies, and the kernel does less work a file than for
        a named temporary file in .tmp (create there, link, unlink). Where the file system or kernel has no
        O_TMPFILE, or /proc is not mounted, a named temporary file in .tmp does the same (_named_temporary).
        """
        target = self._path(key)
        if target.exists():
            raise ObjectExistsError(key)
        self._directories.make(target.parent)
        if self._unnamed is None:
            self._unnamed = unnamed_files_possible()
        if self._unnamed:
            fd = self._unnamed_file(key, target.parent)
            if fd is not None:
                return self._fill_and_link(key, target, fd, None, write, sha256)
        fd, tmp_name = self._named_temporary(key)
        return self._fill_and_link(key, target, fd, tmp_name, write, sha256)

    def _unnamed_file(self, key: str, directory: Path) -> int | None:
        """A file without a name in directory, or None (and from now on) where there are none."""
        try:
            flags = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC
            return self._directories.within(directory, lambda: os.open(directory, flags, 0o600))
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                self._unnamed = False  # (EISDIR: a kernel that reads O_TMPFILE as O_DIRECTORY)
                return None
            raise StoreError(key, exc.strerror or str(exc)) from exc

    def _named_temporary(self, key: str) -> tuple[int, str]:
        """A new file in .tmp, named put-<pid>-<token>-<count>: unique to this store object and process."""
        self._directories.make(self._tmp)
        for attempt in range(3):
            tmp_name = os.path.join(self._tmp, f"put-{os.getpid()}-{self._token}-{next(self._count)}")
            try:
                return os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp_name
            except FileExistsError as exc:  # (another copy of the store in this process drew the same token)
                self._new_names()
                if attempt == 2:
                    raise StoreError(key, f"no free temporary name in {self._tmp}: {exc.strerror}") from exc
            except OSError as exc:
                raise StoreError(key, exc.strerror or str(exc)) from exc
        raise AssertionError("unreachable")

    def _fill_and_link(self, key: str, target: Path, fd: int, tmp_name: str | None, write,
                       sha256: str | None) -> PutResult:
        """Fill fd, then link it under target, which must not exist; the descriptor and any name in .tmp go."""
        sync_now = key.startswith("runs/")
        try:
            try:
                size, digest = write(fd)
                if sync_now:
                    os.fsync(fd)
                os.fchmod(fd, 0o444)  # originals and parts are never edited in place
                if sha256 is not None and sha256.lower() != digest:
                    raise StoreError(key, f"content hashes to SHA-256 {digest}, not the expected {sha256}")
                self._link(key, fd, tmp_name, target)
            finally:
                os.close(fd)
            if sync_now:
                _fsync_dir(target.parent)
        except OSError as exc:
            raise StoreError(key, exc.strerror or str(exc)) from exc
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except FileNotFoundError:
                    pass
        return PutResult(key=key, size=size, stored_sha256=digest)

    def _link(self, key: str, fd: int, tmp_name: str | None, target: Path) -> None:
        if tmp_name is None:
            # linkat(AT_SYMLINK_FOLLOW) through /proc, as open(2) shows for O_TMPFILE. os.link calls
            # linkat only when given a directory descriptor; the source path is absolute, so any will do.
            source, flags = f"/proc/self/fd/{fd}", {"src_dir_fd": _root_fd(), "follow_symlinks": True}
        else:
            source, flags = tmp_name, {}
        try:
            self._directories.within(target.parent, lambda: os.link(source, target, **flags))
        except FileExistsError:
            raise ObjectExistsError(key) from None

    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> PutResult:
        def write(fd):
            _write_all(fd, data)
            return len(data), hashlib.sha256(data).hexdigest()

        return self._publish(key, write, sha256)

    def put_file(self, key: str, path, *, sha256: str | None = None) -> PutResult:
        def write(fd):
            size, digest = 0, hashlib.sha256()
            with open_for_reading(path) as src:
                while chunk := src.read(1 << 20):
                    _write_all(fd, chunk)
                    digest.update(chunk)
                    size += len(chunk)
            return size, digest.hexdigest()

        return self._publish(key, write, sha256)

    def flush(self) -> None:
        _syncfs(self.root)

    def get_bytes(self, key: str) -> bytes:
        try:
            with open_for_reading(self._path(key), buffering=0) as stream:
                return stream.readall()
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None
        except OSError as exc:
            raise StoreError(key, exc.strerror or str(exc)) from exc

    def open_read(self, key: str) -> BinaryIO:
        # Unbuffered, from a plain path: its readers (hashing, copying) ask for large
        # chunks, and a Path and a buffer cost more than hashing a small original.
        try:
            return open_for_reading(os.path.join(self.url, validate_key(key)), buffering=0)
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(key, exc.strerror or str(exc)) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in _keys_under(self.root, prefix):
            try:
                stat = (self.root / key).stat()
            except FileNotFoundError:
                continue  # deleted since the walk
            except OSError as exc:
                raise StoreError(key, exc.strerror or str(exc)) from exc
            yield ObjectInfo(key, stat.st_size, stat.st_mtime)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None

    def arrow_filesystem(self):
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem()

    def arrow_path(self, key: str) -> str:
        return str(self._path(key))


class _Directories:
    """The directories a store object has made or found (a store is never pruned of directories)."""

    def __init__(self):
        self._known: set[Path] = set()

    def make(self, directory: Path) -> None:
        """mkdir -p, once per directory and store object: most objects share their parent with one written
        before, and a mkdir that finds the directory there costs a system call and an exception."""
        if directory not in self._known:
            directory.mkdir(parents=True, exist_ok=True)
            if len(self._known) >= 70_000:  # objects/sha256/ab/cd: 65,536 leaves
                self._known.clear()
            self._known.add(directory)

    def within(self, directory: Path, call):
        """call(), and once more if directory went (removed by hand?) since it was made: made again first."""
        try:
            return call()
        except FileNotFoundError:
            self._known.discard(directory)
            self.make(directory)
            return call()


def _keys_under(root: Path, prefix: str) -> list[str]:
    """The keys under root that start with prefix, sorted, .tmp left out."""
    # Walk only the directory the prefix names, then filter by the rest.
    base, _, _ = prefix.rpartition("/")
    start = root / base if base else root
    if not start.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(start):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".tmp"]
        for name in filenames:
            full = Path(dirpath) / name
            key = full.relative_to(root).as_posix()
            if key.startswith(prefix):
                found.append(key)
    return sorted(found)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding path (Linux syncfs), or everything (sync)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def unnamed_files_possible() -> bool:
    """Whether this system has O_TMPFILE and a /proc to link such files in by (the file system may still refuse)."""
    return hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


_root_fd_cache: list[int] = []


def _root_fd() -> int:
    """A descriptor of "/", opened once a process (a fork's copy refers to the same directory)."""
    if not _root_fd_cache:
        _root_fd_cache.append(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    return _root_fd_cache[0]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
