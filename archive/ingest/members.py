"""A container's members as files of the batch: each through the same stages as a file of the source, at its own
path (`accession.zip!/letters/a.txt`), its files row naming the container's sha256, an `unpacking` event for the
container (how many members) and for each member (which container, by what tool).

A ZIP, TAR or mbox is itself kept and recorded `skipped` (`unpacked`), or quarantined whole where unpack.py
refuses it; an e-mail message stays a document, and its attachments are its members."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import provenance as ev
from ..fixity import TOOL as DIGEST_TOOL
from ..identify import Format, identify
from ..sources import FileRef
from .unpack import SEPARATOR, Allowance, Member, Refused, read_member, unpack

if TYPE_CHECKING:
    from .batch import BatchProcessor


@dataclass(frozen=True)
class Within:
    """How a member came: the allowance of the containers around it, the tool that unpacked it, notes on its name."""

    allowance: Allowance
    tool: str
    notes: list[str] = field(default_factory=list)


class Ready:
    """A member's bytes, handed to BatchProcessor.process_file as a read already done."""

    def __init__(self, data: bytes):
        self._data: bytes | None = data

    def result(self) -> bytes:
        data, self._data = self._data, None
        return data if data is not None else b""

    def close(self) -> None:
        self._data = None


def allowance_for(batch: BatchProcessor, within: Within | None) -> Allowance:
    """The allowance a container at this place unpacks under: fresh for a file of the source."""
    return within.allowance.nested() if within is not None else Allowance(batch.options.containers, depth=1)


def unpack_container(batch: BatchProcessor, ref: FileRef, sha256: str, fmt: Format, data: bytes,
                     within: Within | None) -> None:
    """A ZIP, TAR or mbox: its members made files of the batch, the container recorded as unpacked; or the
    container quarantined whole (over a limit, unreadable)."""
    allowance = allowance_for(batch, within)
    try:
        unpacked = unpack(data, fmt, ref.path, allowance)
    except Refused as refused:
        batch.rows.set_aside(ref, sha256, len(data), fmt, refused.reason, refused.detail)
        return
    try:
        count = len(unpacked.members)
        detail = (f"{count:,} member{'s' if count != 1 else ''} unpacked, each a file of its own at "
                  f"{ref.path}{SEPARATOR}NAME")
        batch.rows.event(ev.UNPACKING, ev.SUCCESS, detail, sha256=sha256, path=ref.path, tool=unpacked.tool)
        batch.rows.file_row(ref, "skipped", sha256=sha256, fmt=fmt, reason="unpacked", detail=detail, size=len(data))
        _members(batch, ref, sha256, unpacked.members, Within(allowance, unpacked.tool))
    finally:
        unpacked.cleanup()
    if within is not None:
        within.allowance.settle(allowance)


def unpack_attachments(batch: BatchProcessor, ref: FileRef, sha256: str, fmt: Format, data: bytes,
                       within: Within | None) -> None:
    """An e-mail message's attachments made files of the batch; the message itself is made a document as any file.
    Attachments it cannot give (over a limit, unreadable) are said in a warning event: the message is kept."""
    allowance = allowance_for(batch, within)
    try:
        unpacked = unpack(data, fmt, ref.path, allowance)
    except Refused as refused:
        batch.rows.event(ev.UNPACKING, ev.WARNING, f"attachments not unpacked ({refused.reason}): {refused.detail}",
                         sha256=sha256, path=ref.path)
        return
    if unpacked.members:
        count = len(unpacked.members)
        batch.rows.event(ev.UNPACKING, ev.SUCCESS,
                         f"{count:,} attachment{'s' if count != 1 else ''} unpacked, each a file of its own at "
                         f"{ref.path}{SEPARATOR}NAME", sha256=sha256, path=ref.path, tool=unpacked.tool)
        _members(batch, ref, sha256, unpacked.members, Within(allowance, unpacked.tool))
    if within is not None:
        within.allowance.settle(allowance)


def member_event(batch: BatchProcessor, ref: FileRef, sha256: str, within: Within) -> None:
    """The member's own unpacking event: which container it came from, by what tool, and what became of its name."""
    container = ref.path.rsplit(SEPARATOR, 1)[0]
    notes = "; ".join(within.notes)
    batch.rows.event(ev.UNPACKING, ev.WARNING if within.notes else ev.SUCCESS,
                     f"unpacked from {container} (sha256 {ref.container}){'; ' + notes if notes else ''}",
                     sha256=sha256, path=ref.path, tool=within.tool)


def _members(batch: BatchProcessor, container: FileRef, sha256: str, members: list[Member], within: Within) -> None:
    for member in members:
        ref = FileRef(member.path, f"{container.location}{SEPARATOR}{member.name}", member.size, container=sha256)
        here = Within(within.allowance, within.tool, member.notes)
        withdrawn = batch.options.withdrawn_members.get(member.path)
        if withdrawn:
            batch.rows.skip(ref, "withdrawn", withdrawn)
        elif member.skip:
            batch.rows.skip(ref, "not-a-regular-file", member.skip)
        elif member.size > batch.options.max_file_bytes:
            _keep_too_large(batch, ref, member, here)
        else:
            try:
                data = b"".join(read_member(member))
            except Exception as exc:  # noqa: BLE001 - a damaged member fails its decompressor in any way
                batch.rows.skip(ref, "unreadable", f"cannot be read from {container.path}: {type(exc).__name__}: "
                                                   f"{exc}")
                continue
            batch.process_file(ref, Ready(data), within=here)


def _keep_too_large(batch: BatchProcessor, ref: FileRef, member: Member, within: Within) -> None:
    """A member over max_file_bytes: copied to a temporary file as it is hashed (never whole in memory), kept as
    its original, quarantined too-large."""
    with tempfile.NamedTemporaryFile(prefix="archive-member-") as spool:
        digest, size, head = hashlib.sha256(), 0, b""
        try:
            for chunk in read_member(member):
                head += chunk[:8192 - len(head)]
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        except Exception as exc:  # noqa: BLE001 - a damaged member fails its decompressor in any way
            batch.rows.skip(ref, "unreadable", f"cannot be read from its container: {type(exc).__name__}: {exc}")
            return
        spool.flush()
        sha256 = digest.hexdigest()
        batch.summary.bytes_read += size
        batch.rows.event(ev.MESSAGE_DIGEST, ev.SUCCESS, f"sha256 over {size} bytes (streamed)", sha256=sha256,
                         path=ref.path, tool=DIGEST_TOOL)
        member_event(batch, ref, sha256, within)
        with batch._time("store_originals"):
            batch._store_original(ref, sha256, path=spool.name, size=size)
        batch.rows.set_aside(ref, sha256, size, identify(head), "too-large",
                             f"{size} bytes exceeds the limit of {batch.options.max_file_bytes} bytes "
                             "(max_file_bytes); original kept, no text extracted")
