"""METS of a run, written with metsrw (Artefactual's METS library, the one Archivematica's AIPs are written with):
the file section (originals, their normalised texts, the run's part files) and a structural map of the source's
folders, each file's PREMIS object and events in its own administrative section, as an Archivematica AIP's METS has
them; the run's own events and the agents in the administrative section of the run's top division."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

from ..errors import ArchiveError
from ..provenance import NORMALIZATION
from ..storage import Store
from .gather import Original, Records, gather_run
from .premis import (
    Agents,
    agent_element,
    event_element,
    linked_objects,
    original_object,
    part_object,
    text_object,
    to_bytes,
    write_atomically,
    xml_text,
)

METS_NS = "http://www.loc.gov/METS/"
USE_ORIGINAL, USE_TEXT, USE_DATASET = "original", "text", "dataset"


def _folder(root, folders: dict, path: str):
    """The structMap division of the folder a source path lies in (made with its parents as needed)."""
    import metsrw

    parent, parts = root, PurePosixPath(path).parts[:-1]
    for depth in range(1, len(parts) + 1):
        key = parts[:depth]
        if key not in folders:
            folders[key] = metsrw.FSEntry.dir(xml_text(parts[depth - 1]), [])
            parent.add_child(folders[key])
        parent = folders[key]
    return parent


class StoreLocations:
    """Where each file of a METS is: in the store (an export beside the store), by its key."""

    def original(self, original: Original, path: str) -> str:
        return original.object_key

    def text(self, document: dict) -> str:
        return f"{document['part']}#doc_id={document['doc_id']}"

    def part(self, part: dict) -> str:
        return part["key"]


def mets_of(records: Records, organisation: str | None = None, locations=None):
    """A metsrw.METSDocument of one run's records; locations (StoreLocations by default) gives each file's href."""
    import metsrw

    locations = locations or StoreLocations()

    manifest = records.manifest
    agents = Agents(records.manifests, organisation)
    run_agents = agents.of_run(manifest)
    document = metsrw.METSDocument()
    document.objid = f"urn:archive:run:{manifest['run_id']}"
    document.agents = [metsrw.Agent("CREATOR", type="ORGANIZATION", name=xml_text(run_agents[0].name)),
                       metsrw.Agent("CREATOR", type="SOFTWARE", name=f"{run_agents[1].name} {run_agents[1].version}"),
                       metsrw.Agent("OTHER", type="INDIVIDUAL" if run_agents[2].kind == "per" else "SOFTWARE",
                                    name=xml_text(run_agents[2].name), notes=["started the run"])]
    root = metsrw.FSEntry.dir(f"{manifest['kind']} run {manifest['run_id']}", [])
    originals_dir = metsrw.FSEntry.dir("originals", [])
    texts_dir = metsrw.FSEntry.dir("texts", [])
    datasets_dir = metsrw.FSEntry.dir("datasets", [])
    published = {(d["run_id"], d["doc_id"]) for d in records.documents}
    events_of: dict[str | None, list] = {}
    for e in records.events:
        events_of.setdefault(e["object_sha256"], []).append(e)

    def add_events(entry, sha: str | None) -> None:
        for e in events_of.get(sha, []):
            entry.add_premis_event(event_element(e, agents.of_event(e), linked_objects(e, records, published)))

    folders: dict = {}
    entries = {}
    for original in sorted(records.originals.values(), key=lambda o: (o.paths, o.sha256)):
        for n, path in enumerate(original.paths or [original.sha256]):
            first = entries.get(original.sha256)
            entry = metsrw.FSEntry(path=locations.original(original, path), label=xml_text(PurePosixPath(path).name),
                                   use=USE_ORIGINAL, file_uuid=f"original-{original.sha256}-{n}",
                                   checksum=original.sha256, checksumtype="SHA-256", derived_from=first)
            _folder(originals_dir, folders, path).add_child(entry)
            if first is None:  # the object's metadata once, with the first path it had
                entries[original.sha256] = entry
                entry.add_premis_object(original_object(original))
                add_events(entry, original.sha256)
    made = {(e["run_id"], e["object_sha256"]): e["event_id"] for e in records.events
            if e["event_type"] == NORMALIZATION}
    for d in records.documents:
        entry = metsrw.FSEntry(path=locations.text(d), label=f"{d['doc_id']}.txt", use=USE_TEXT,
                               file_uuid=f"text-{d['doc_id']}", checksum=d["text_sha256"], checksumtype="SHA-256",
                               derived_from=entries.get(d["doc_id"]))
        entry.add_premis_object(text_object(d, made.get((d["run_id"], d["doc_id"]))))
        texts_dir.add_child(entry)
    for part in sorted(records.parts.values(), key=lambda p: p["key"]):
        entry = metsrw.FSEntry(path=locations.part(part), label=PurePosixPath(part["key"]).name, use=USE_DATASET,
                               file_uuid=f"part-{part['sha256']}", checksum=part["sha256"], checksumtype="SHA-256")
        entry.add_premis_object(part_object(part))
        add_events(entry, part["sha256"])
        _folder(datasets_dir, {}, part["key"].removeprefix("datasets/")).add_child(entry)
    for folder in (originals_dir, texts_dir, datasets_dir):
        if folder.children:
            root.add_child(folder)
    add_events(root, None)  # the run's own events: who started it, what it committed
    for agent in agents.all():
        root.add_premis_agent(agent_element(agent))
    if not root.children:
        raise ArchiveError(f"run {manifest['run_id']} has no original, text or part file to list")
    document.append_file(root)
    return document


def export_mets(store: Store, run_id: str, out: str | os.PathLike, *, organisation: str | None = None) -> dict:
    """Write one run as a METS document (PREMIS 3.0 inside) to the file out."""
    records = gather_run(store, run_id)
    root = mets_xml(records, organisation)
    write_atomically(out, to_bytes(root))
    files = root.findall(f".//{{{METS_NS}}}file")
    return {"run_id": run_id, "format": "mets", "out": str(out), "files": len(files),
            "objects": len(records.originals) + len(records.documents) + len(records.parts),
            "events": len(records.events)}


def mets_xml(records: Records, organisation: str | None = None, locations=None):
    """The METS document of one run's records as an lxml element."""
    root = mets_of(records, organisation, locations).serialize()
    for struct_map in root.iter(f"{{{METS_NS}}}structMap"):
        if struct_map.get("TYPE") == "physical":  # (metsrw labels it "Archivematica default")
            struct_map.set("LABEL", "the run's files: originals by source folder, texts, part files")
    return root
