"""E-mail (RFC 5322, MIME) read with Python's own email package: the message's header fields and its text body
decoded (quoted-printable, base64, its charset), never the raw MIME; its attachments named, not read as text.
"""

from __future__ import annotations

import platform
from email.utils import parsedate_to_datetime

from ..identify import Format
from . import Extracted, ExtractionError
from .budget import Meter

HEADERS = ("From", "To", "Cc", "Date", "Subject")


def extract_eml(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    from email import policy
    from email.parser import BytesParser

    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        head = [f"{name}: {' '.join(str(message[name]).split())}" for name in HEADERS if message[name]]
        body = message.get_body(preferencelist=("plain", "html"))
        text = _part_text(body) if body is not None else ""
        attachments = [(part.get_filename() or part.get_content_type(),
                        len(part.get_payload(decode=True) or part.as_bytes())) for part in message.iter_attachments()]
    except (LookupError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ExtractionError("corrupt", f"the message cannot be read: email {type(exc).__name__}: {exc}") from None
    notes = [f"body {body.get_content_type()}, {body.get_content_charset() or 'us-ascii'}" if body is not None
             else "no text body"]
    if attachments:
        notes.append(f"{len(attachments)} attachment{'s' if len(attachments) != 1 else ''} not read as text: "
                     + ", ".join(f"{name} ({size:,} bytes)" for name, size in attachments[:20]))
    return Extracted(text="\n".join(head) + "\n\n" + text, extractor="python email",
                     extractor_version=platform.python_version(), metadata=_metadata(message), notes=notes)


def _part_text(part) -> str:
    content = part.get_content()
    if isinstance(content, bytes):
        content = content.decode(part.get_content_charset() or "utf-8", "replace")
    if part.get_content_type() == "text/html":
        from .office import html_text

        return html_text(content.encode("utf-8"))
    return content


def _metadata(message) -> dict[str, str]:
    metadata = {}
    if message["Subject"]:
        metadata["title"] = " ".join(str(message["Subject"]).split())
    if message["From"]:
        metadata["creator"] = " ".join(str(message["From"]).split())
    if message["Date"]:
        try:
            metadata["date"] = parsedate_to_datetime(str(message["Date"])).date().isoformat()
        except (TypeError, ValueError, IndexError):
            pass
    return metadata
