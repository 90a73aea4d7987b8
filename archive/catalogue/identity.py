"""A record's identity and description: its record_id (from its recorded path), its description (what the bytes'
format and text give, overlaid with what the sidecar states for the path) and the hash that compares descriptions."""

from __future__ import annotations

import hashlib
import json
import uuid

# The namespace of record ids: uuid5(NAMESPACE_URL, "urn:archive:record") = 3539430a-6bca-534f-91b1-214f1d062456.
RECORD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:archive:record")

# The Dublin Core elements a description has, date as stated (a year, a month or a day).
ELEMENTS = ("title", "date", "creator", "language", "publisher", "source", "rights", "description", "subject",
            "identifier", "type")
# The description's columns in a records row: date is the full calendar date (or null), date_text as stated.
COLUMNS = ("title", "date", "date_text", "creator", "language", "publisher", "source", "rights", "description",
           "subject", "identifier", "type")
# What the description hash covers: every column but date, which date_text determines.
HASHED = tuple(c for c in COLUMNS if c != "date")


def record_id(path: str) -> str:
    """The record's id: the UUID version 5 of its recorded path (UTF-8) in RECORD_NAMESPACE. The same path, the same
    id, in any store and any run."""
    return str(uuid.uuid5(RECORD_NAMESPACE, path))


def elements(values: dict) -> dict[str, str]:
    """The non-empty Dublin Core elements of a row's description columns (date as stated)."""
    out = {name: values.get(name) for name in ELEMENTS if name != "date"}
    out["date"] = values.get("date_text")
    return {name: value for name, value in out.items() if value}


def describe(derived: dict[str, str] | None, stated: dict[str, str] | None) -> dict[str, str | None]:
    """The description columns of a record: the derived elements (format and text), each overlaid by the stated
    one (the sidecar row) where it has a value. The same rule as a document's (ingest.stages.dublin_core)."""
    merged: dict[str, str | None] = dict.fromkeys(ELEMENTS)
    for source in (derived or {}, stated or {}):
        for name, value in source.items():
            if name in merged and value:
                merged[name] = value
    date_text = merged.pop("date")
    return {**merged, "date": date_text if date_text and len(date_text) == 10 else None, "date_text": date_text}


def description_sha256(values: dict) -> str:
    """SHA-256 of the description: the JSON object of the HASHED columns (nulls included), keys sorted, no spaces,
    UTF-8. Two equal descriptions have equal hashes, whatever their runs."""
    canonical = json.dumps({name: values.get(name) for name in HASHED}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def as_json(values: dict[str, str] | None) -> str | None:
    """Elements as the JSON object a records row keeps (stated, derived), keys sorted; None stays None."""
    return None if values is None else json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def from_json(text: str | None) -> dict[str, str] | None:
    return None if text is None else json.loads(text)
