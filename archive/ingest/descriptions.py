"""The run's sidecar metadata.csv: found in the source or given, read once, looked up per file, kept as an original."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import ObjectExistsError
from ..fixity import sha256_hex
from ..metadata import SIDECAR_NAME, Sidecar, SidecarError, filename_keys
from ..sources import FileRef, Source
from ..storage import Store, object_key
from .sidecarindex import SidecarIndex, report_text


@dataclass(frozen=True)
class Descriptions:
    """The batch's sidecar metadata.csv: where it is in the source, what it says, or why it cannot be used.

    As loaded (load_descriptions), the sidecar is a SidecarIndex on local disk; what a batch is sent is its
    share (for_batch), a Sidecar of the rows naming its files, with the whole sidecar's report."""

    path: str | None = None  # the sidecar's path inside the source (None: given with --metadata, or none)
    sidecar: Sidecar | SidecarIndex | None = None
    error: str | None = None  # the sidecar as a whole is unusable
    report: str | None = None  # of a batch's share (for_batch): what the whole sidecar gave (sidecar_report)
    warned: bool = False  # of a batch's share: the whole sidecar has problems

    def for_batch(self, paths: Iterable[str]) -> Descriptions:
        """What a batch of the files at paths needs: the rows and problems naming them (or, for a container, its
        members), and the report of the whole sidecar. A batch is sent its share, not the whole sidecar; the rows
        shared count as seen (unmatched_rows)."""
        if not isinstance(self.sidecar, SidecarIndex):
            return self
        return Descriptions(self.path, self.sidecar.share(filename_keys(paths)), self.error, self.sidecar.report(),
                            self.sidecar.problems > 0)

    def lookup(self, path: str) -> tuple[dict[str, str] | None, str | None]:
        """(Dublin Core values for the file at path, or a problem naming the line, column and value)."""
        if self.sidecar is None:
            return None, None
        row = self.sidecar.lookup(path)
        if row is not None:
            return row.dublin_core, None
        problems = [p for p in self.sidecar.problems_for(path) if p.severity == "error"]
        if problems:
            return None, f"{self.sidecar.source_name} " + "; ".join(str(p) for p in problems)
        return None, None

    def stated(self, path: str) -> tuple[dict[str, str] | None, str | None]:
        """(the Dublin Core values a valid row states for the file at path, where: "metadata.csv line 4"), or
        (None, None)."""
        row = self.sidecar.lookup(path) if self.sidecar is not None else None
        if row is None:
            return None, None
        return row.dublin_core, f"{self.sidecar.source_name} line {row.line}"


def load_descriptions(source: Source, refs_at_root: Iterable[FileRef] = (), explicit: bytes | None = None,
                      explicit_name: str | None = None) -> Descriptions:
    """Read the sidecar: explicit bytes (--metadata FILE), else metadata.csv at the source root."""
    path, data, name = None, explicit, explicit_name or SIDECAR_NAME
    if data is None:
        for ref in refs_at_root:
            if ref.path == SIDECAR_NAME and not ref.skip_reason:
                path = ref.path
                try:
                    data = source.read(ref)
                except OSError as exc:
                    return Descriptions(path, None, f"{SIDECAR_NAME} cannot be read: {exc.strerror or exc}")
                break
    if data is None:
        return Descriptions()
    try:
        return Descriptions(path, SidecarIndex(data, source_name=name))
    except SidecarError as exc:
        return Descriptions(path, None, str(exc))


def sidecar_report(sidecar: Sidecar | SidecarIndex) -> str:
    """What the sidecar gave the batch: rows used and rejected, and the first problems found."""
    if isinstance(sidecar, SidecarIndex):
        return sidecar.report()
    return report_text(len(sidecar.rows), len({p.line for p in sidecar.errors}), sidecar.problems,
                       len(sidecar.problems))


def unmatched_rows(descriptions: Descriptions, seen: Iterable[str]) -> list[str]:
    """Sidecar rows naming files the source does not have: a typo or a missing file, said in words."""
    if descriptions.sidecar is None:
        return []
    return [f"{descriptions.sidecar.source_name} line {row.line} describes {row.filename!r}, which is not in the source"
            for row in descriptions.sidecar.unmatched(seen)]  # (and, of an index, not in a batch's share)


def store_sidecar(store: Store, data: bytes) -> str:
    """Keep a sidecar given from outside the source (--metadata) like any original."""
    sha256 = sha256_hex(data)
    key = object_key(sha256)
    if not store.exists(key):
        try:
            store.put_bytes(key, data, sha256=sha256)
        except ObjectExistsError:
            pass
    return key
