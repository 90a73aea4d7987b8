"""PREMIS 3.0 XML of a run, or of one original's history: objects with fixity, size and format (PRONOM PUIDs), events
typed with the Library of Congress event type URIs, and the agents behind them (organisation, software, tools, the
person or deployment that started each run)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lxml import etree

from ..errors import ArchiveError
from ..provenance import NORMALIZATION, PUBLICATION, organisation_name, premis_event_type, starter_name
from ..storage import Store
from .gather import Original, Records, gather_run

NS = "http://www.loc.gov/premis/v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{NS} http://www.loc.gov/standards/premis/v3/premis.xsd"
VERSION = "3.0"
LOC = "http://id.loc.gov/vocabulary/preservation/"
NSMAP = {"premis": NS, "xsi": XSI}
URN = "URN"
TEXT_FORMAT = ("text/plain; charset=UTF-8", "x-fmt/111")  # the normalised texts: PRONOM's Plain Text File
PARQUET_FORMAT = "application/vnd.apache.parquet"
AGENT_TYPES = {"org": "organization", "per": "person", "sof": "software"}
AGENT_ROLES = {"aut": "authorizer", "imp": "implementer", "exe": "executing program"}

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def original_id(sha256: str) -> str:
    return f"urn:archive:original:{sha256}"


def text_id(doc_id: str) -> str:
    return f"urn:archive:text:{doc_id}"


def part_id(key: str) -> str:
    return f"urn:archive:part:{key}"


@dataclass(frozen=True)
class Agent:
    """A PREMIS agent: its identifier, name, LoC agent type code, the LoC role code it has in the events it is linked
    to, its version (software) and notes."""

    ident: str
    name: str
    kind: str
    role: str
    version: str | None = None
    notes: tuple[str, ...] = ()


class Agents:
    """The agents of events, made once each: the organisation (authorizer), the archive's software of the event's run
    and the tool it ran (executing programs), the person or deployment that started the run (implementer)."""

    def __init__(self, manifests: list[dict], organisation: str | None = None):
        self.manifests = {m["run_id"]: m for m in manifests}
        name = organisation_name(organisation)
        self.organisation = Agent(f"urn:archive:agent:organisation:{_urn_part(name)}", name, "org", "aut")
        self.found: dict[str, Agent] = {self.organisation.ident: self.organisation}

    def _add(self, agent: Agent) -> Agent:
        return self.found.setdefault(agent.ident, agent)

    def of_run(self, manifest: dict) -> list[Agent]:
        software = manifest["software"]
        who = manifest["started_by"]
        starter = starter_name(who)
        notes = tuple(f"{k} {v}" for k, v in sorted(software["components"].items()))
        return [self.organisation,
                self._add(Agent(f"urn:archive:agent:software:{_urn_part(software['name'])}:{software['version']}",
                                software["name"], "sof", "exe", software["version"], notes)),
                self._add(Agent(f"urn:archive:agent:starter:{_urn_part(starter)}", starter,
                                "sof" if who.get("deployment") else "per", "imp", None,
                                tuple(f"{k}: {who[k]}" for k in ("user", "host", "deployment", "schedule")
                                      if who.get(k))))]

    def of_event(self, event: dict) -> list[Agent]:
        agents = self.of_run(self.manifests[event["run_id"]])
        if (event["agent"], event["agent_version"]) != (agents[1].name, agents[1].version):
            agents[1] = self._add(Agent(f"urn:archive:agent:software:{_urn_part(event['agent'])}:"
                                        f"{event['agent_version']}", event["agent"], "sof", "exe",
                                        event["agent_version"]))
        if event["tool"]:
            agents.append(self._add(Agent(f"urn:archive:agent:tool:{_urn_part(event['tool'])}", event["tool"],
                                          "sof", "exe")))
        return agents

    def all(self) -> list[Agent]:
        return list(self.found.values())


def _urn_part(text: str) -> str:
    return quote(text, safe="-_.")


def xml_text(value) -> str:
    """Text as XML 1.0 can carry it: characters it cannot hold (control characters, lone surrogates) escaped."""
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], str(value))


def _sub(parent, tag: str, text=None, vocab: str | None = None, code: str | None = None):
    el = etree.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        el.text = xml_text(text)
    if vocab:
        el.attrib.update({"authority": vocab, "authorityURI": LOC + vocab, "valueURI": f"{LOC}{vocab}/{code}"})
    return el


def _element(tag: str, **attrs) -> etree._Element:
    return etree.Element(f"{{{NS}}}{tag}", nsmap=NSMAP, attrib={"version": VERSION, **attrs})


def _object(ident: str, sha256: str, size: int | None, fmt: str | None, puid: str | None) -> etree._Element:
    obj = _element("object", **{f"{{{XSI}}}type": "premis:file"})
    identifier = _sub(obj, "objectIdentifier")
    _sub(identifier, "objectIdentifierType", URN)
    _sub(identifier, "objectIdentifierValue", ident)
    characteristics = _sub(obj, "objectCharacteristics")
    _sub(characteristics, "compositionLevel", "0")
    fixity = _sub(characteristics, "fixity")
    _sub(fixity, "messageDigestAlgorithm", "SHA-256", "cryptographicHashFunctions", "sha256")
    _sub(fixity, "messageDigest", sha256)
    if size is not None:
        _sub(characteristics, "size", size)
    form = _sub(characteristics, "format")
    _sub(_sub(form, "formatDesignation"), "formatName", fmt or "unknown")
    if puid:
        registry = _sub(form, "formatRegistry")
        _sub(registry, "formatRegistryName", "PRONOM")
        _sub(registry, "formatRegistryKey", puid)
    return obj


def _storage(obj, location_type: str, location: str) -> None:
    content = _sub(_sub(obj, "storage"), "contentLocation")
    _sub(content, "contentLocationType", location_type)
    _sub(content, "contentLocationValue", location)


def original_object(original: Original) -> etree._Element:
    """An original bitstream: sha256 fixity, size, media type and PUID, the first source path it had, its store key."""
    obj = _object(original_id(original.sha256), original.sha256, original.size, original.media_type, original.puid)
    if original.paths:
        _sub(obj, "originalName", original.paths[0])
    _storage(obj, "archive store key", original.object_key)
    return obj


def text_object(document: dict, normalization: str | None) -> etree._Element:
    """The normalised text of a document, derived from its original by the normalization event (its id)."""
    obj = _object(text_id(document["doc_id"]), document["text_sha256"], document.get("text_bytes"), *TEXT_FORMAT)
    _storage(obj, "archive documents part (row doc_id)", f"{document['part']}#doc_id={document['doc_id']}")
    relationship = _sub(obj, "relationship")
    _sub(relationship, "relationshipType", "derivation")
    _sub(relationship, "relationshipSubType", "has source")
    related = _sub(relationship, "relatedObjectIdentifier")
    _sub(related, "relatedObjectIdentifierType", URN)
    _sub(related, "relatedObjectIdentifierValue", original_id(document["doc_id"]))
    if normalization:
        event = _sub(relationship, "relatedEventIdentifier")
        _sub(event, "relatedEventIdentifierType", "UUID")
        _sub(event, "relatedEventIdentifierValue", normalization)
    return obj


def part_object(part: dict) -> etree._Element:
    """A Parquet part file of a run, as its manifest lists it."""
    obj = _object(part_id(part["key"]), part["sha256"], part["bytes"], PARQUET_FORMAT, None)
    _storage(obj, "archive store key", part["key"])
    return obj


def event_element(event: dict, agents: list[Agent], objects: list[tuple[str, str]]) -> etree._Element:
    """An event: its PREMIS type (label and LoC URI), time, the archive's own type and the context as detail, the
    outcome and its detail, the agents with their roles, the objects (identifier, LoC role code: sou, out)."""
    label, uri = premis_event_type(event["event_type"])
    el = _element("event")
    identifier = _sub(el, "eventIdentifier")
    _sub(identifier, "eventIdentifierType", "UUID")
    _sub(identifier, "eventIdentifierValue", event["event_id"])
    _sub(el, "eventType", label, "eventType", uri.rpartition("/")[2])
    _sub(el, "eventDateTime", event["event_time"])
    detail = [f"archive event type: {event['event_type']}"] if event["event_type"] != label else []
    detail += [f"source path: {event['source_path']}"] if event.get("source_path") else []
    detail += [f"tool: {event['tool']}"] if event["tool"] else []
    detail += [f"run: {event['run_id']}"] + ([f"flow run: {event['flow_run_id']}"] if event["flow_run_id"] else [])
    _sub(_sub(el, "eventDetailInformation"), "eventDetail", "; ".join(detail))
    outcome = _sub(el, "eventOutcomeInformation")
    _sub(outcome, "eventOutcome", event["outcome"])
    if event["detail"]:
        _sub(_sub(outcome, "eventOutcomeDetail"), "eventOutcomeDetailNote", event["detail"])
    for agent in agents:
        link = _sub(el, "linkingAgentIdentifier")
        _sub(link, "linkingAgentIdentifierType", URN)
        _sub(link, "linkingAgentIdentifierValue", agent.ident)
        _sub(link, "linkingAgentRole", AGENT_ROLES[agent.role], "eventRelatedAgentRole", agent.role)
    for ident, role in objects:
        link = _sub(el, "linkingObjectIdentifier")
        _sub(link, "linkingObjectIdentifierType", URN)
        _sub(link, "linkingObjectIdentifierValue", ident)
        _sub(link, "linkingObjectRole", {"sou": "source", "out": "outcome"}[role], "eventRelatedObjectRole", role)
    return el


def agent_element(agent: Agent) -> etree._Element:
    el = _element("agent")
    identifier = _sub(el, "agentIdentifier")
    _sub(identifier, "agentIdentifierType", URN)
    _sub(identifier, "agentIdentifierValue", agent.ident)
    _sub(el, "agentName", agent.name)
    _sub(el, "agentType", AGENT_TYPES[agent.kind], "agentType", agent.kind)
    if agent.version:
        _sub(el, "agentVersion", agent.version)
    for note in agent.notes:
        _sub(el, "agentNote", note)
    return el


def linked_objects(event: dict, records: Records, published: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The objects an event concerns, with their roles: its original (source) or part file (source), and for a
    normalization or publication the text it made (outcome; published: (run_id, doc_id) of the documents)."""
    sha = event["object_sha256"]
    if not sha:
        return []
    if sha in records.originals:
        links = [(original_id(sha), "sou")]
        if event["event_type"] in (NORMALIZATION, PUBLICATION) and (event["run_id"], sha) in published:
            links.append((text_id(sha), "out"))
        return links
    if sha in records.parts:
        return [(part_id(records.parts[sha]["key"]), "sou")]
    return []


@dataclass
class Premis:
    """The PREMIS elements of some records, each a root of its own (so METS can wrap them one by one)."""

    objects: list[etree._Element]
    events: list[etree._Element]
    agents: list[etree._Element]

    def document(self) -> etree._Element:
        """One premis:premis document: objects, then events, then agents, as the schema orders them."""
        root = etree.Element(f"{{{NS}}}premis", nsmap=NSMAP,
                             attrib={"version": VERSION, f"{{{XSI}}}schemaLocation": SCHEMA_LOCATION})
        for el in self.objects + self.events + self.agents:
            el.attrib.pop("version", None)
            root.append(el)
        return root


def premis_of(records: Records, organisation: str | None = None) -> Premis:
    agents = Agents(records.manifests, organisation)
    objects = [original_object(o) for o in sorted(records.originals.values(), key=lambda o: (o.paths, o.sha256))]
    made = {(e["run_id"], e["object_sha256"]): e["event_id"] for e in records.events
            if e["event_type"] == NORMALIZATION}
    objects += [text_object(d, made.get((d["run_id"], d["doc_id"]))) for d in records.documents]
    objects += [part_object(p) for p in sorted(records.parts.values(), key=lambda p: p["key"])]
    if not objects:
        raise ArchiveError("nothing to describe: no original, document or part file")
    for manifest in records.manifests:
        agents.of_run(manifest)
    published = {(d["run_id"], d["doc_id"]) for d in records.documents}
    events = [event_element(e, agents.of_event(e), linked_objects(e, records, published)) for e in records.events]
    return Premis(objects, events, [agent_element(a) for a in agents.all()])


def to_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export_premis(store: Store, run_id: str, out: str | os.PathLike, *, organisation: str | None = None) -> dict:
    """Write one run as a PREMIS 3.0 document to the file out."""
    premis = premis_of(gather_run(store, run_id), organisation)
    write_atomically(out, to_bytes(premis.document()))
    return {"run_id": run_id, "format": "premis", "out": str(out), "objects": len(premis.objects),
            "events": len(premis.events), "agents": len(premis.agents)}
