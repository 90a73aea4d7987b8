"""Errors say whether trying again may help: the flows' retry policy reads the type."""

from __future__ import annotations

import pickle

import pytest

from archive.commitlock import CommitLockTimeout
from archive.errors import (
    ArchiveError,
    ConfigurationError,
    DamagedPartError,
    ManifestError,
    NotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    SourceError,
    StoreError,
    TerminalError,
    TransientError,
    is_transient,
)
from archive.extract import ExtractionError
from archive.gc import ReferencesUnknown
from archive.metadata import SidecarError
from archive.publish import DamagedManifest, DamagedManifestError


@pytest.mark.parametrize("error", [
    StoreError("objects/x", "connection reset"),
    ObjectNotFoundError("runs/x.json"),
    ObjectExistsError("runs/x.json"),
    CommitLockTimeout("locks/commit held by another run"),
    OSError(104, "Connection reset by peer"),
    RuntimeError("a third-party library failed"),
])
def test_failures_that_may_pass_are_retried(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    ConfigurationError("no such bucket"),
    SourceError("not a directory"),
    ManifestError("runs/x.json does not validate"),
    DamagedManifestError(DamagedManifest("x", "runs/x.json", "truncated JSON at byte 812")),
    DamagedPartError("datasets/files/run=x/part-00000.parquet", "x", "is missing from the store"),
    NotFoundError("no committed run x"),
    ArchiveError("raised as itself"),
    ReferencesUnknown("a manifest cannot be read"),
    SidecarError("metadata.csv", "no header"),
    ExtractionError("corrupt", "bad bytes"),
    KeyboardInterrupt(),
])
def test_failures_that_last_are_not_retried(error):
    assert not is_transient(error)


def test_every_error_is_one_or_the_other_and_survives_pickling():
    for error in (StoreError("k", "r"), ObjectExistsError("k"), ConfigurationError("c"), NotFoundError("n"),
                  DamagedManifestError(DamagedManifest("x", "runs/x.json", "truncated JSON at byte 812")),
                  DamagedPartError("datasets/files/run=x/part-00000.parquet", "x", "is missing from the store")):
        assert isinstance(error, (TransientError, TerminalError))
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert is_transient(back) == is_transient(error)
