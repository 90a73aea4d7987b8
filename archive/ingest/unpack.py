"""The members of a container, read with the field's own libraries (zipfile, tarfile, gzip, mailbox, email), bounded
against bombs before a byte of any member is expanded.

A container is a ZIP or TAR (identified by content: a DOCX, ODT or EPUB is no container here), a gzip stream (a
`.tar.gz` unpacked as its TAR, anything else its one member), an mbox (each message a member) or an e-mail message
(each attachment a member). Its members become files of their own in the batch, at the path `CONTAINER!/MEMBER`
(the notation of jar: URLs): `accession.zip!/letters/a.txt`, nested `outer.zip!/inner.tar!/b.txt`, an mbox's
messages `box.mbox!/message-00001.eml`, a message's attachments `letter.eml!/report.pdf`.

What unpacking may cost is bounded by ContainerLimits, checked on the ZIP's central directory, the TAR's headers
or the mbox's table of messages before any member is read: over one, the container is refused (Refused: a
quarantine reason and a detail naming the setting), whole. zipfile never expands a member past the size its
central directory states, so the stated sizes bound the real ones. A gzip stream is decompressed into a temporary
file as far as the bounds allow, and refused as soon as it passes one.
"""

from __future__ import annotations

import io
import os
import platform
import stat
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from .. import containers
from ..errors import ConfigurationError
from ..extract.office import MAX_RATIO
from ..identify import Format
from ..sources import display_path

SEPARATOR = "!/"  # between a container's path and its member's name
MEMBERS = 10_000
DEPTH = 4
EXPANDED_BYTES = 4 << 30
# A member of a MiB or more may expand its compressed bytes so many times, as an entry of a DOCX, ODT or EPUB may
# (extract/office.py): deflate cannot pass about 1,032 on its own, a bomb's layers (or bzip2, LZMA) go far beyond.
RATIO = float(MAX_RATIO)
RATIO_FROM_BYTES = 1 << 20  # members smaller than this are not judged by their compression ratio
TOO_LARGE, TOO_DEEP = "container-too-large", "container-too-deep"
GZIP_TYPE = "application/gzip"
UNPACKED = (containers.ZIP.media_type, containers.TAR.media_type, GZIP_TYPE, containers.MBOX.media_type)


@dataclass(frozen=True)
class ContainerLimits:
    """What unpacking one accession may cost: members, nesting depth and expanded bytes over the whole tree of
    containers under a file of the source, and the compression ratio of any one member. Run settings."""

    members: int = MEMBERS  # --container-members
    depth: int = DEPTH  # --container-depth: containers within containers (a ZIP in a ZIP is depth 2)
    expanded_bytes: int = EXPANDED_BYTES  # --container-bytes
    ratio: float = RATIO  # --container-ratio: a member's size over its compressed size (ZIP)

    def __post_init__(self):
        for name in ("members", "depth", "expanded_bytes", "ratio"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigurationError(f"container limit {name} must be a number above 0, not {value!r}")

    def parameters(self) -> dict[str, float]:
        return {"container_members": self.members, "container_depth": self.depth,
                "container_bytes": self.expanded_bytes, "container_ratio": self.ratio}


@dataclass
class Allowance:
    """What is left of the limits for the tree of containers under one file of the source, shared down it."""

    limits: ContainerLimits
    members: int = 0
    expanded: int = 0
    depth: int = 0  # of the container being unpacked: 1 for a file of the source

    def nested(self) -> Allowance:
        return Allowance(self.limits, self.members, self.expanded, self.depth + 1)

    def settle(self, child: Allowance) -> None:
        self.members, self.expanded = child.members, child.expanded


class Refused(Exception):
    """A container not unpacked: a quarantine reason and a detail a person can act on."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Member:
    """One member: its name in the container (as given), its path in the batch, its stated size, how to read it;
    skip: why it is no file to read (a link, a device)."""

    name: str
    path: str
    size: int
    open: Callable[[], BinaryIO] | None = None
    skip: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Unpacked:
    tool: str
    members: list[Member]
    cleanup: Callable[[], None] = lambda: None


def tool_of(fmt: Format) -> str:
    name = {containers.ZIP.media_type: "zipfile", containers.TAR.media_type: "tarfile",
            containers.MBOX.media_type: "mailbox"}.get(fmt.media_type, "email")
    return f"python {name} {platform.python_version()}"


def unpack(data: bytes, fmt: Format, path: str, allowance: Allowance) -> Unpacked:
    """The members of the container data (at path), checked against the allowance, which they use up; Refused
    when it is over a limit, or when it cannot be read at all (corrupt, encrypted)."""
    if allowance.depth > allowance.limits.depth:
        raise Refused(TOO_DEEP, f"a container {allowance.depth} deep, within {allowance.depth - 1} others: over "
                                f"the limit of {allowance.limits.depth} (--container-depth); kept, not unpacked")
    if fmt.media_type == containers.ZIP.media_type:
        found = _zip(data, path, allowance)
    elif fmt.media_type == containers.TAR.media_type:
        found = _tar(data, path, allowance)
    elif fmt.media_type == GZIP_TYPE:
        found = _gzip(data, path, allowance)
    elif fmt.media_type == containers.MBOX.media_type:
        found = _mbox(data, path, allowance)
    else:
        found = _attachments(data, path, allowance)
    from .pages import images_last

    found.members = images_last(found.members, lambda member: member.path)  # (a page's OCR before its image)
    return found


class _Names:
    """Member paths made safe (no absolute path, no `..`, no empty part) and unique within their container."""

    def __init__(self, container: str):
        self.container, self.used = container, set()

    def path(self, name: str, number: int) -> tuple[str, list[str]]:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
        safe, notes = "/".join(parts) or f"member-{number:05d}", []
        if safe != name.rstrip("/"):
            notes.append(f"member name {name!r} recorded as {safe!r} (no absolute path, no '..')")
        unique, n = safe, 1
        while unique in self.used:
            n += 1
            unique = f"{safe}~{n}"
        if unique != safe:
            notes.append(f"a second member named {safe!r}: recorded as {unique!r}")
        self.used.add(unique)
        return f"{self.container}{SEPARATOR}{display_path(unique)}", notes


def _count(allowance: Allowance, count: int, what: str) -> None:
    allowance.members += count
    if allowance.members > allowance.limits.members:
        raise Refused(TOO_LARGE, f"{allowance.members:,} members in all ({count:,} {what}): over the limit of "
                                 f"{allowance.limits.members:,} (--container-members); kept, not unpacked")


def _expand(allowance: Allowance, size: int) -> None:
    allowance.expanded += size
    if allowance.expanded > allowance.limits.expanded_bytes:
        raise Refused(TOO_LARGE, f"members expanding to {allowance.expanded:,} bytes in all: over the limit of "
                                 f"{allowance.limits.expanded_bytes:,} (--container-bytes); kept, not unpacked")


def _zip(data: bytes, path: str, allowance: Allowance) -> Unpacked:
    import zipfile

    stream = io.BytesIO(data)
    try:
        # The entry count from the end record, before the central directory is parsed into objects (zipfile's
        # own reader of that record; where a Python has none, the count is checked after the parse).
        end_record = getattr(zipfile, "_EndRecData", None)
        end = end_record(stream) if end_record is not None else None
        if end_record is not None and end is None:
            raise zipfile.BadZipFile("no end of central directory record")
        entries = end[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)] if end is not None else None
        archive = zipfile.ZipFile(stream)
        _count(allowance, entries if entries is not None else len(archive.infolist()),
               "entries in its central directory")
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise Refused("corrupt", f"the ZIP cannot be read: {type(exc).__name__}: {exc}") from None
    names, members = _Names(path), []
    for number, info in enumerate(infos, start=1):
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise Refused("encrypted", f"member {info.filename!r} is encrypted: the ZIP needs its password")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_FROM_BYTES and ratio > allowance.limits.ratio:
            raise Refused(TOO_LARGE, f"member {info.filename!r} expands {ratio:,.0f} times ({info.compress_size:,} "
                                     f"to {info.file_size:,} bytes): over the limit of {allowance.limits.ratio:g} "
                                     "(--container-ratio); kept, not unpacked")
        _expand(allowance, info.file_size)
        member_path, notes = names.path(info.filename, number)
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            skip = f"a {_kind(mode)} in the ZIP, not a regular file: nothing to read"
            members.append(Member(info.filename, member_path, info.file_size, skip=skip, notes=notes))
            continue
        members.append(Member(info.filename, member_path, info.file_size,
                              open=lambda info=info: archive.open(info), notes=notes))
    allowance.members += len(members) - len(infos)  # (directories are no members)
    return Unpacked(tool_of(containers.ZIP), members, archive.close)


def _tar(data: bytes | BinaryIO, path: str, allowance: Allowance, tool: str = tool_of(containers.TAR),
         cleanup: Callable[[], None] = lambda: None) -> Unpacked:
    import tarfile

    try:
        archive = tarfile.open(fileobj=io.BytesIO(data) if isinstance(data, bytes) else data, mode="r:")
        infos = []
        while (info := archive.next()) is not None:  # header by header: the bounds are checked as they come
            if not info.isdir():
                infos.append(info)
                _count(allowance, 1, "entries in its headers so far")
                _expand(allowance, info.size)
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        cleanup()
        raise Refused("corrupt", f"the TAR cannot be read: {type(exc).__name__}: {exc}") from None
    except Refused:
        cleanup()
        raise
    names, members = _Names(path), []
    for number, info in enumerate(infos, start=1):
        member_path, notes = names.path(info.name, number)
        if not info.isfile():
            what = f"a link to {info.linkname!r}" if info.issym() or info.islnk() else "a device or pipe"
            members.append(Member(info.name, member_path, info.size, skip=f"{what} in the TAR, not a regular file: "
                                  "nothing to read", notes=notes))
            continue
        members.append(Member(info.name, member_path, info.size,
                              open=lambda info=info: archive.extractfile(info), notes=notes))
    def close():
        archive.close()
        cleanup()

    return Unpacked(tool, members, close)


def _gzip(data: bytes, path: str, allowance: Allowance) -> Unpacked:
    """A gzip stream, decompressed into a temporary file as far as the bounds allow: a TAR in it (`.tar.gz`) is
    unpacked as one; anything else is its one member, named as the container without `.gz`."""
    import gzip
    import tarfile
    import zlib

    room = allowance.limits.expanded_bytes - allowance.expanded + (1 << 20)  # (and a MiB for a TAR's headers)
    stated = int.from_bytes(data[-4:], "little") if len(data) >= 18 else 0  # ISIZE: the size mod 2**32, as stated
    if stated > room or (stated >= RATIO_FROM_BYTES and stated > allowance.limits.ratio * len(data)):
        raise Refused(TOO_LARGE, f"the gzip stream states it expands to {stated:,} bytes from {len(data):,}: over "
                                 f"the limit of {allowance.limits.expanded_bytes:,} (--container-bytes) or "
                                 f"{allowance.limits.ratio:g} times (--container-ratio); kept, not unpacked")
    spool = tempfile.TemporaryFile(prefix="archive-gunzip-")
    size = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > room:
                    raise Refused(TOO_LARGE, f"the gzip stream expands past {size:,} bytes: over the limit of "
                                             f"{allowance.limits.expanded_bytes:,} (--container-bytes); kept, not "
                                             "unpacked")
                if size >= RATIO_FROM_BYTES and size > allowance.limits.ratio * len(data):
                    raise Refused(TOO_LARGE, f"the gzip stream expands over {allowance.limits.ratio:g} times its "
                                             f"{len(data):,} bytes (--container-ratio); kept, not unpacked")
                spool.write(chunk)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        spool.close()
        raise Refused("corrupt", f"the gzip stream cannot be read: {type(exc).__name__}: {exc}") from None
    except Refused:
        spool.close()
        raise
    spool.seek(0)
    if tarfile.is_tarfile(spool):
        spool.seek(0)
        return _tar(spool, path, allowance, f"{tool_of(containers.TAR)} (gzip)", spool.close)
    name = path.rsplit("/", 1)[-1]
    name = name[:-3] if name.lower().endswith(".gz") and len(name) > 3 else f"{name}.content"
    _count(allowance, 1, "the gzip stream's content")
    _expand(allowance, size)

    def reopen() -> BinaryIO:
        copy = os.fdopen(os.dup(spool.fileno()), "rb")
        copy.seek(0)
        return copy

    return Unpacked(f"python gzip {platform.python_version()}",
                    [Member(name, f"{path}{SEPARATOR}{display_path(name)}", size, open=reopen)], spool.close)


def _mbox(data: bytes, path: str, allowance: Allowance) -> Unpacked:
    """Each message of an mbox, as its own RFC 5322 bytes (the `From ` line that separates it is left out)."""
    import mailbox

    spool = tempfile.NamedTemporaryFile(prefix="archive-mbox-", delete=False)  # (mailbox reads a file)
    try:
        with spool:
            spool.write(data)
        box = mailbox.mbox(spool.name, create=False)
        keys = box.keys()
        _count(allowance, len(keys), "messages")
        members = []
        for number, key in enumerate(keys, start=1):
            start, stop = box._toc[key]
            _expand(allowance, stop - start)
            members.append(Member(str(number), f"{path}{SEPARATOR}message-{number:05d}.eml", stop - start,
                                  open=lambda key=key: io.BytesIO(box.get_bytes(key))))
    except (mailbox.Error, OSError, ValueError) as exc:
        os.unlink(spool.name)
        raise Refused("corrupt", f"the mbox cannot be read: {type(exc).__name__}: {exc}") from None

    def cleanup():
        box.close()
        os.unlink(spool.name)

    return Unpacked(tool_of(containers.MBOX), members, cleanup)


def _attachments(data: bytes, path: str, allowance: Allowance) -> Unpacked:
    """An e-mail message's attachments (a message attached is one member, itself unpacked in its turn)."""
    from email import policy
    from email.parser import BytesParser

    try:
        parts = list(BytesParser(policy=policy.default).parsebytes(data).iter_attachments())
    except (LookupError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise Refused("corrupt", f"the message's attachments cannot be read: {type(exc).__name__}: {exc}") from None
    _count(allowance, len(parts), "attachments")
    names, members = _Names(path), []
    for number, part in enumerate(parts, start=1):
        body = _attachment_bytes(part)
        _expand(allowance, len(body))
        name = part.get_filename() or f"attachment-{number}{_extension(part.get_content_type())}"
        member_path, notes = names.path(name, number)
        members.append(Member(name, member_path, len(body), open=lambda body=body: io.BytesIO(body), notes=notes))
    return Unpacked(tool_of(containers.EML), members)


def _attachment_bytes(part) -> bytes:
    """An attachment's own bytes: its content decoded (base64, quoted-printable), an attached message as itself."""
    if part.get_content_type() == "message/rfc822" and part.is_multipart():
        return part.get_payload(0).as_bytes()
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else part.as_bytes()


def _extension(content_type: str) -> str:
    import mimetypes

    return ".eml" if content_type == "message/rfc822" else mimetypes.guess_extension(content_type) or ".bin"


def _kind(mode: int) -> str:
    return "symbolic link" if stat.S_ISLNK(mode) else "device or pipe"


def read_member(member: Member) -> Iterator[bytes]:
    """The member's bytes, in chunks, never more than its stated size (ValueError if it holds more)."""
    left = member.size
    with member.open() as stream:
        while chunk := stream.read(min(1 << 20, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise ValueError(f"member {member.name!r} holds more than the {member.size:,} bytes stated")
            yield chunk
