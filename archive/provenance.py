"""Provenance: the run's context and PREMIS event constructors (PROV export builds on these)."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field

from . import SOFTWARE_NAME, __version__
from .records import utc_now

# PREMIS 3 event types (id.loc.gov/vocabulary/preservation/eventType) this pipeline records.
INGESTION = "ingestion"
MESSAGE_DIGEST = "message digest calculation"
FORMAT_IDENTIFICATION = "format identification"
NORMALIZATION = "normalization"
METADATA_EXTRACTION = "metadata extraction"
VALIDATION = "validation"
QUARANTINE = "quarantine"
DEDUPLICATION = "deduplication"
PUBLICATION = "publication"
FIXITY_CHECK = "fixity check"
METADATA_MODIFICATION = "metadata modification"  # a record's new version: its description or its bytes changed
DEACCESSION = "deaccession"  # a record withdrawn from the current views
DELETION = "deletion"  # an original's bytes purged with a withdrawal
UNPACKING = "unpacking"  # a container's members taken out, each a file of its own

SUCCESS, FAILURE, WARNING = "success", "failure", "warning"

# Each event type above as a term of the Library of Congress PREMIS event type vocabulary: (label, code); the term's
# URI is LOC_EVENT_TYPE + code. Deduplication and publication are not PREMIS terms: the exports type them as the
# terms they are instances of (docs/auditors.md says why) and keep the archive's own type beside it.
LOC_EVENT_TYPE = "http://id.loc.gov/vocabulary/preservation/eventType/"
PREMIS_EVENT_TYPES = {
    INGESTION: ("ingestion", "ing"),
    MESSAGE_DIGEST: ("message digest calculation", "mes"),
    FORMAT_IDENTIFICATION: ("format identification", "for"),
    NORMALIZATION: ("normalization", "nor"),
    METADATA_EXTRACTION: ("metadata extraction", "mee"),
    VALIDATION: ("validation", "val"),
    QUARANTINE: ("quarantine", "qua"),
    FIXITY_CHECK: ("fixity check", "fix"),
    METADATA_MODIFICATION: ("metadata modification", "mem"),
    DEACCESSION: ("deaccession", "dea"),
    DELETION: ("deletion", "del"),
    UNPACKING: ("unpacking", "unp"),
    DEDUPLICATION: ("appraisal", "app"),  # the same bytes as a kept document: not made a document again
    PUBLICATION: ("accession", "acc"),  # the document (or the run's records) added to the holdings readers see
}


def premis_event_type(event_type: str) -> tuple[str, str]:
    """The PREMIS event type of one of the archive's: its label and its LoC URI."""
    try:
        label, code = PREMIS_EVENT_TYPES[event_type]
    except KeyError:
        raise ValueError(f"event type {event_type!r} has no PREMIS event type (archive.provenance."
                         "PREMIS_EVENT_TYPES)") from None
    return label, LOC_EVENT_TYPE + code


ORGANISATION_ENV = "ARCHIVE_ORGANISATION"
UNNAMED_ORGANISATION = "unnamed organisation"


def organisation_name(given: str | None = None) -> str:
    """The organisation an export names as keeping the archive: given, else $ARCHIVE_ORGANISATION."""
    return (given or os.environ.get(ORGANISATION_ENV) or "").strip() or UNNAMED_ORGANISATION


def starter_name(started_by: dict) -> str:
    """Who started a run, as an agent's name: the deployment, else user@host."""
    user, host = started_by.get("user") or "unknown", started_by.get("host") or "unknown"
    return started_by.get("deployment") or f"{user}@{host}"


def new_run_id(now: dt.datetime | None = None) -> str:
    """Sortable UTC time plus a random suffix: 20261122T153000Z-3f9a."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def who_started() -> dict:
    """The person or deployment behind a run: the OS user and host, and the
    Prefect deployment and schedule when the flow layer knows them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = os.environ.get("USER")
    return {"user": user, "host": socket.gethostname(), "deployment": None, "schedule": None}


class _RandomBytes(threading.local):
    """Bytes from os.urandom drawn RANDOM_DRAW at a time, each handed out once: one system call for 256 event
    ids instead of one for each (seven a file). One store a thread."""

    def __init__(self):
        self.data, self.at = b"", 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            self.data, self.at = os.urandom(max(RANDOM_DRAW, n)), 0
        self.at += n
        return self.data[self.at - n:self.at]


RANDOM_DRAW = 4096
_random_bytes = _RandomBytes()
if hasattr(os, "register_at_fork"):
    # A forked child draws its own bytes, never its parent's: only the forking thread lives on in the child,
    # so emptying that thread's store is enough.
    os.register_at_fork(after_in_child=_random_bytes.__init__)


def random_uuid() -> str:
    """A random (version 4) UUID as text, as str(uuid.uuid4()) makes it, more cheaply (every event has one)."""
    raw = bytearray(_random_bytes.take(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class RunContext:
    """What every record and event of a run carries. Small and picklable."""

    run_id: str
    collection: str | None
    source: str
    flow_run_id: str | None = None
    started_at: str = field(default_factory=utc_now)
    started_by: dict = field(default_factory=who_started)

    def event(
        self,
        event_type: str,
        outcome: str,
        detail: str,
        *,
        sha256: str | None = None,
        path: str | None = None,
        tool: str | None = None,
    ) -> dict:
        """One event row (schemas/event.schema.json)."""
        return {
            "event_id": random_uuid(),
            "run_id": self.run_id,
            "flow_run_id": self.flow_run_id,
            "event_type": event_type,
            "event_time": utc_now(),
            "outcome": outcome,
            "detail": detail,
            "object_sha256": sha256,
            "source_path": path,
            "agent": SOFTWARE_NAME,
            "agent_version": __version__,
            "tool": tool,
        }


# -- W3C PROV export ---------------------------------------------------------

PROV_FORMATS = {"json": "json", "provn": "provn", "jsonld": "jsonld"}


def run_prov_document(manifest: dict, files: list[dict], documents: list[dict], events: list[dict],
                      organisation: str | None = None):
    """A run as a W3C PROV document (prov.model.ProvDocument), PROV-O when read as RDF.

    Entities: the originals (by sha256), the documents made from them, the part
    files and the manifest. Activities: the run, and each recorded step (one
    per event, typed with its PREMIS event type's LoC URI). Agents: the software
    (with its version; a prov:SoftwareAgent), the tools it ran, the person
    (prov:Person) or deployment (prov:SoftwareAgent) that started the run, and
    the organisation (prov:Organization) they act for.
    """
    from prov.model import PROV, PROV_LABEL, PROV_TYPE, ProvDocument

    run_id = manifest["run_id"]
    doc = ProvDocument()
    doc.set_default_namespace("urn:archive:")
    arc = doc.add_namespace("archive", "urn:archive:")
    loc = doc.add_namespace("eventType", LOC_EVENT_TYPE)
    org_name = organisation_name(organisation)
    org = doc.agent(f"archive:organisation-{_local(org_name)}", {PROV_TYPE: PROV["Organization"],
                                                                  PROV_LABEL: org_name})
    software = manifest["software"]
    agent = doc.agent(f"archive:software-{software['name']}-{software['version']}", {
        PROV_TYPE: PROV["SoftwareAgent"], PROV_LABEL: f"{software['name']} {software['version']}",
        "archive:name": software["name"], "archive:version": software["version"],
        **{f"archive:component-{k}": v for k, v in sorted(software["components"].items())},
    })
    who = manifest["started_by"]
    starter = doc.agent(f"archive:starter-{_local(starter_name(who))}", {
        PROV_TYPE: PROV["SoftwareAgent"] if who.get("deployment") else PROV["Person"],
        PROV_LABEL: starter_name(who), "archive:user": who.get("user") or "", "archive:host": who.get("host") or "",
        "archive:deployment": who.get("deployment") or "",
    })
    doc.actedOnBehalfOf(agent, starter)
    doc.actedOnBehalfOf(starter, org)
    run = doc.activity(f"archive:run-{run_id}", manifest["started_at"], manifest["committed_at"], {
        PROV_TYPE: arc[f"{manifest['kind']}-run"], "archive:run_id": run_id,
        "archive:flow_run_id": manifest.get("flow_run_id") or "",
        "archive:collection": manifest.get("collection") or "",
    })
    doc.wasAssociatedWith(run, agent)
    doc.wasAssociatedWith(run, starter)

    originals = {}
    for f in files:
        sha = f.get("sha256")
        if sha and sha not in originals:
            originals[sha] = doc.entity(f"archive:original-{sha}", {
                PROV_TYPE: arc["Original"], "archive:sha256": sha, "archive:object_key": f["object_key"],
                "archive:size": f["size"] if f["size"] is not None else -1, "archive:media_type": f["media_type"] or "",
                "archive:puid": f.get("puid") or "",
            })
            doc.used(run, originals[sha])
    manifest_entity = doc.entity(f"archive:manifest-{run_id}",
                                 {PROV_TYPE: PROV["Collection"], "archive:key": f"runs/{run_id}.json"})
    doc.wasGeneratedBy(manifest_entity, run)
    parts = {}
    for part in manifest["parts"]:
        parts[part["key"]] = entity = doc.entity(f"archive:part-{_local(part['key'])}", {
            PROV_TYPE: PROV["Collection"], "archive:key": part["key"], "archive:dataset": part["dataset"],
            "archive:sha256": part["sha256"], "archive:bytes": part["bytes"], "archive:rows": part["rows"],
        })
        doc.wasGeneratedBy(entity, run)
        doc.hadMember(manifest_entity, entity)
    document_entities = {}
    for d in documents:
        entity = doc.entity(f"archive:document-{d['doc_id']}", {
            PROV_TYPE: arc["Document"], "archive:doc_id": d["doc_id"], "archive:text_sha256": d["text_sha256"],
            "archive:source_path": d["source_path"],
        })
        document_entities[d["doc_id"]] = entity
        if d["doc_id"] in originals:
            doc.wasDerivedFrom(entity, originals[d["doc_id"]])
        if d.get("part") in parts:
            doc.hadMember(parts[d["part"]], entity)
    tools = {}
    for e in events:
        label, uri = premis_event_type(e["event_type"])
        step = doc.activity(f"archive:event-{e['event_id']}", e["event_time"], e["event_time"], {
            PROV_TYPE: loc[uri.rpartition("/")[2]], PROV_LABEL: label, "archive:event_type": e["event_type"],
            "archive:outcome": e["outcome"], "archive:detail": e["detail"], "archive:tool": e["tool"] or "",
        })
        doc.wasInformedBy(step, run)
        doc.wasAssociatedWith(step, agent)
        if e["tool"]:
            if e["tool"] not in tools:
                tools[e["tool"]] = doc.agent(f"archive:tool-{_local(e['tool'])}", {
                    PROV_TYPE: PROV["SoftwareAgent"], PROV_LABEL: e["tool"]})
                doc.actedOnBehalfOf(tools[e["tool"]], agent)
            doc.wasAssociatedWith(step, tools[e["tool"]])
        sha = e["object_sha256"]
        if sha in originals:
            doc.used(step, originals[sha])
        if e["event_type"] == NORMALIZATION and sha in document_entities:
            doc.wasGeneratedBy(document_entities[sha], step)
    return doc


def prov_text(document, fmt: str) -> str:
    """The document as text: PROV-JSON, PROV-N, or JSON-LD with its context embedded (it parses offline)."""
    if fmt == "provn":
        text = document.get_provn()
    elif fmt == "jsonld":
        text = document.serialize(format="jsonld", context="embed", indent=2)
    else:
        text = document.serialize(format=PROV_FORMATS[fmt], indent=2)
    return text if text.endswith("\n") else text + "\n"


def _local(text: str) -> str:
    """A string made safe as the local part of a qualified name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def export_run_prov(store, run_id: str, organisation: str | None = None):
    """The PROV document of one committed run, read from its manifest and datasets."""
    import pyarrow.dataset as ds

    from .errors import NotFoundError
    from .partcheck import verify_parts
    from .publish import load_manifest, manifest_key
    from .read import open_dataset

    if not store.exists(manifest_key(run_id)):
        raise NotFoundError(f"no committed run {run_id} in {store.url}")
    manifest = load_manifest(store, manifest_key(run_id))
    runs = [run_id]
    files = open_dataset(store, "files", runs=runs).to_table().to_pylist()
    events = open_dataset(store, "events", runs=runs).to_table().to_pylist()
    documents = []
    verify_parts(store, [(run_id, part) for part in manifest["parts"] if part["dataset"] == "documents"])
    for part in manifest["parts"]:
        if part["dataset"] == "documents":
            part_data = ds.dataset(store.arrow_path(part["key"]), format="parquet",
                                   filesystem=store.arrow_filesystem())
            table = part_data.to_table(columns=["doc_id", "text_sha256", "source_path"])
            documents.extend({**row, "part": part["key"]} for row in table.to_pylist())
    return run_prov_document(manifest, files, documents, events, organisation)
