"""What an export reads from the store: committed runs' rows, gathered per run (PREMIS, METS) or per original
(OCFL), never from uncommitted parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..catalogue.view import dataset
from ..errors import NotFoundError
from ..publish import committed_manifests
from ..read import open_dataset
from ..records import json_form
from ..storage import Store

DOCUMENT_COLUMNS = ["doc_id", "text_sha256", "run_id", "collection", "source_path", "object_key", "media_type", "puid",
                    "encoding", "extractor", "extractor_version", "title", "date", "date_text", "creator", "language",
                    "publisher", "source", "rights", "description", "subject", "identifier", "type", "char_count",
                    "word_count", "ingested_at"]


@dataclass
class Original:
    """One original bitstream (content-addressed: its sha256 is its key) and every path it was seen under."""

    sha256: str
    object_key: str
    size: int | None
    media_type: str | None
    puid: str | None
    paths: list[str] = field(default_factory=list)


@dataclass
class Records:
    """The rows an export describes: runs (their manifests, in run order), originals, the documents made from them
    (with text_bytes, the UTF-8 size of the text), files rows, events, and the part files the events concern."""

    manifests: list[dict]
    originals: dict[str, Original]
    documents: list[dict]
    files: list[dict]
    events: list[dict]
    parts: dict[str, dict]  # sha256 -> the part as its manifest lists it, with run_id

    @property
    def manifest(self) -> dict:
        """The run, when the records are one run's."""
        return self.manifests[-1]


def manifests_by_id(store: Store) -> dict[str, dict]:
    return {m["run_id"]: m for m in committed_manifests(store)}


def run_manifest(manifests: dict[str, dict], run_id: str, store: Store) -> dict:
    try:
        return manifests[run_id]
    except KeyError:
        raise NotFoundError(f"no committed run {run_id} in {store.url}") from None


def gather_run(store: Store, run_id: str) -> Records:
    """One committed run: its files rows, events and documents; the originals its rows and events concern (an audit
    run's, from the runs that saw them); the part files it wrote or checked."""
    manifests = manifests_by_id(store)
    manifest = run_manifest(manifests, run_id, store)
    files = _rows(open_dataset(store, "files", runs=[run_id]))
    events = _rows(open_dataset(store, "events", runs=[run_id]))
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    parts = _parts_by_sha(manifests.values())
    mentioned = {e["object_sha256"] for e in events if e["object_sha256"]}
    concerned = mentioned - set(parts)
    seen = [f for f in files if f["sha256"]]
    missing = concerned - {f["sha256"] for f in seen}
    if missing:  # originals an audit (or reuse) run checked: described from the runs that saw them
        seen += [f for f in _rows(open_dataset(store, "files"), ds.field("sha256").isin(sorted(missing)))
                 if f["sha256"]]
    own_parts = {p["sha256"]: {**p, "run_id": run_id} for p in manifest["parts"]}
    return Records([manifest], _originals(seen), _documents(store, [manifest]), files, events,
                   {**{sha: parts[sha] for sha in mentioned & set(parts)}, **own_parts})


def gather_originals(store: Store, shas: Iterable[str], until: str, manifests: dict[str, dict]) -> Records:
    """Everything committed runs up to run id until (included) recorded of these originals, every run's rows."""
    shas = sorted(set(shas))
    runs = sorted(r for r in manifests if r <= until)
    wanted = ds.field("sha256").isin(shas)
    files = [f for f in _rows(open_dataset(store, "files", runs=runs), wanted) if f["sha256"]]
    events = _rows(open_dataset(store, "events", runs=runs), ds.field("object_sha256").isin(shas))
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    chosen = [manifests[r] for r in runs]
    documents = [d for d in _documents(store, chosen, ds.field("doc_id").isin(shas))]
    return Records(chosen, _originals(files), documents, files, events, {})


def runs_of_collection(manifests: dict[str, dict], collection: str) -> list[str]:
    return sorted(r for r, m in manifests.items() if m.get("collection") == collection)


def document_texts(store: Store, documents: list[dict]) -> dict[tuple[str, str], str]:
    """(run_id, doc_id) -> the document's normalised text, read from its part."""
    texts = {}
    by_part: dict[str, list[str]] = {}
    for d in documents:
        by_part.setdefault(d["part"], []).append(d["doc_id"])
    for key, doc_ids in by_part.items():
        table = _part(store, key).to_table(filter=ds.field("doc_id").isin(doc_ids),
                                           columns=["run_id", "doc_id", "text"])
        texts.update(((r["run_id"], r["doc_id"]), r["text"]) for r in table.to_pylist())
    return texts


def _rows(dataset: ds.Dataset, expression=None) -> list[dict]:
    return [json_form(r) for r in dataset.to_table(filter=expression).to_pylist()]


def _part(store: Store, key: str) -> ds.Dataset:
    return dataset(store, "documents", [key])


def _documents(store: Store, manifests: list[dict], expression=None) -> list[dict]:
    """The documents rows (without their text) of these runs' documents parts, each with its part and text_bytes."""
    documents = []
    for manifest in manifests:
        for part in manifest["parts"]:
            if part["dataset"] != "documents":
                continue
            table = _part(store, part["key"]).to_table(filter=expression, columns=DOCUMENT_COLUMNS + ["text"])
            sizes = pc.binary_length(table["text"].cast("large_binary")).to_pylist()
            for row, size in zip(table.drop_columns(["text"]).to_pylist(), sizes):
                documents.append({**json_form(row), "part": part["key"], "text_bytes": size})
    return documents


def _originals(files: list[dict]) -> dict[str, Original]:
    found: dict[str, Original] = {}
    for f in sorted(files, key=lambda f: (f["run_id"], f["path"])):
        original = found.setdefault(f["sha256"], Original(f["sha256"], f["object_key"], f["size"], f["media_type"],
                                                          f["puid"]))
        if f["path"] not in original.paths:
            original.paths.append(f["path"])
    return found


def _parts_by_sha(manifests: Iterable[dict]) -> dict[str, dict]:
    return {p["sha256"]: {**p, "run_id": m["run_id"]} for m in manifests for p in m["parts"]}
