"""Exports for auditors and other repositories, each checked by the standard's own validator: PREMIS 3.0 and METS
against the official XSDs (tests/standards/, offline), OCFL 1.1 with ocfl-py's validator, PROV-O JSON-LD with rdflib
and SPARQL, with no network."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from archive.export.mets import export_mets
from archive.export.ocfl import export_ocfl, object_path, record_id
from archive.export.premis import export_premis
from archive.provenance import LOC_EVENT_TYPE, PREMIS_EVENT_TYPES, export_run_prov, prov_text
from archive.publish import committed_manifests
from archive.storage import open_store
from tests.xsd import METS_NS, PREMIS_NS, mets_schema, premis_schema, problems

P = {"premis": PREMIS_NS, "mets": METS_NS}
ORGANISATION = "Harbour Town Archives"
NEW_TEXT = "Minutes of the harbour committee, second sitting.\nThe pier is to be rebuilt before winter.\n"


def _ingest(store, source_dir: Path, when: dt.datetime, collection: str) -> str:
    """One committed ingest run of source_dir, started at when (run ids order runs by start)."""
    from archive.catalogue.keyindex import CommittedDocuments
    from archive.ingest import commit_run, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.publish import committed_manifests
    from archive.sources import open_source

    source = open_source(str(source_dir))
    run = RunContext(new_run_id(when), collection, source.url)
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    summary = process_batch(store, source, run, 0, refs, known=CommittedDocuments(store, committed_manifests(store)))
    commit_run(store, run, [summary], parameters={}, warnings=[])
    return run.run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory, seeds_dir):
    """A store with two runs of one collection: the seeds, then the seeds again (duplicates of committed documents)
    with one seed under a second name in a folder, and a new file."""
    base = tmp_path_factory.mktemp("export")
    store = open_store(str(base / "store"))
    first = _ingest(store, seeds_dir, dt.datetime(2026, 3, 1, 9, tzinfo=dt.timezone.utc), "harbour")
    again = base / "again"
    shutil.copytree(seeds_dir, again)
    (again / "copies").mkdir()
    shutil.copy(seeds_dir / "003_383d63a257376c65.txt", again / "copies" / "minutes-copy.txt")
    (again / "new-minutes.txt").write_text(NEW_TEXT)
    second = _ingest(store, again, dt.datetime(2026, 3, 2, 9, tzinfo=dt.timezone.utc), "harbour")
    return store, first, second


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _event_types(root) -> list[tuple[str, str]]:
    return [(e.text, e.get("valueURI")) for e in root.iter(f"{{{PREMIS_NS}}}eventType")]


def test_every_event_type_maps_to_a_loc_term():
    assert {code for _, code in PREMIS_EVENT_TYPES.values()} <= {
        "ing", "mes", "for", "nor", "mee", "val", "qua", "fix", "app", "acc", "mem", "dea", "del", "unp"}
    assert len({code for _, code in PREMIS_EVENT_TYPES.values()}) == len(PREMIS_EVENT_TYPES)


def test_premis_of_a_run_is_valid_premis_3_with_fixity_formats_loc_event_types_and_agents(runs, seeds_dir,
                                                                                        tmp_path):
    store, first, second = runs
    out = tmp_path / "run.premis.xml"
    result = export_premis(store, second, out, organisation=ORGANISATION)
    root = etree.parse(str(out))
    assert problems(premis_schema(), root) == []
    assert result["objects"] == len(root.findall("premis:object", P))

    # Each original: its sha256 as fixity, its size, its PRONOM PUID, the path it was first seen under.
    seed = seeds_dir / "003_383d63a257376c65.txt"
    (obj,) = root.xpath("premis:object[premis:objectIdentifier/premis:objectIdentifierValue=$v]", namespaces=P,
                        v=f"urn:archive:original:{_sha(seed)}")
    assert obj.findtext(".//premis:messageDigest", namespaces=P) == _sha(seed)
    assert obj.find(".//premis:messageDigestAlgorithm", P).get("valueURI").endswith("/sha256")
    assert int(obj.findtext(".//premis:size", namespaces=P)) == seed.stat().st_size
    assert obj.findtext(".//premis:formatRegistryKey", namespaces=P) == "x-fmt/111"
    assert obj.findtext("premis:originalName", namespaces=P) == seed.name

    # Events are typed with LoC terms only; the archive's own deduplication and publication are appraisal and
    # accession, their own type kept in the detail.
    types = _event_types(root)
    assert all(uri == LOC_EVENT_TYPE + PREMIS_EVENT_TYPES_BY_LABEL[label] for label, uri in types)
    assert {label for label, _ in types} >= {"ingestion", "message digest calculation", "format identification",
                                             "normalization", "appraisal", "accession"}
    assert not {"deduplication", "publication"} & {label for label, _ in types}
    appraisal = root.xpath("premis:event[premis:eventType='appraisal']", namespaces=P)
    assert len(appraisal) == 6  # the five seeds again, and the copy of one under a new name
    assert all("archive event type: deduplication" in e.findtext(".//premis:eventDetail", namespaces=P)
               for e in appraisal)
    copy = [e for e in appraisal if "copies/minutes-copy.txt" in e.findtext(".//premis:eventDetail", namespaces=P)]
    assert [e.findtext(".//premis:linkingObjectIdentifierValue", namespaces=P) for e in copy] == [
        f"urn:archive:original:{_sha(seed)}"]

    # Agents: the organisation, the software with its version, the person who started the run, the tools.
    agents = {a.findtext("premis:agentType", namespaces=P): a for a in root.findall("premis:agent", P)}
    assert agents["organization"].findtext("premis:agentName", namespaces=P) == ORGANISATION
    assert agents["person"].findtext("premis:agentName", namespaces=P).count("@") == 1
    software = [a for a in root.findall("premis:agent", P) if a.findtext("premis:agentName", namespaces=P) == "archive"]
    assert software and software[0].findtext("premis:agentVersion", namespaces=P)
    roles = {r.text for r in root.iter(f"{{{PREMIS_NS}}}linkingAgentRole")}
    assert roles == {"authorizer", "executing program", "implementer"}

    # The schema is really applied: an event without its type is rejected.
    event = root.find("premis:event", P)
    event.remove(event.find("premis:eventType", P))
    assert problems(premis_schema(), root)


PREMIS_EVENT_TYPES_BY_LABEL = {label: code for label, code in PREMIS_EVENT_TYPES.values()}


def test_mets_of_a_run_is_valid_mets_with_its_files_and_the_premis_inside(runs, seeds_dir, tmp_path):
    store, first, _ = runs
    out = tmp_path / "run.mets.xml"
    export_mets(store, first, out, organisation=ORGANISATION)
    root = etree.parse(str(out))
    assert problems(mets_schema(), root) == []
    originals = root.findall(".//mets:fileGrp[@USE='original']/mets:file", P)
    assert sorted(f.get("CHECKSUM") for f in originals) == sorted(_sha(s) for s in seeds_dir.iterdir())
    assert {f.get("CHECKSUMTYPE") for f in originals} == {"SHA-256"}
    assert len(root.findall(".//mets:fileGrp[@USE='text']/mets:file", P)) == 5
    labels = {d.get("LABEL") for d in root.iter(f"{{{METS_NS}}}div")}
    assert {s.name for s in seeds_dir.iterdir()} <= labels
    # Each original's PREMIS object and events sit in the administrative section its file points to.
    seed = seeds_dir / "000_1b6d2751a6b6d7cc.txt"
    (file_,) = [f for f in originals if f.get("CHECKSUM") == _sha(seed)]
    (amd,) = root.xpath("//mets:amdSec[@ID=$id]", namespaces=P, id=file_.get("ADMID"))
    assert amd.findtext(".//premis:objectIdentifierValue", namespaces=P) == f"urn:archive:original:{_sha(seed)}"
    assert {label for label, _ in _event_types(amd)} >= {"ingestion", "normalization", "accession"}
    assert root.find(".//mets:agent[@TYPE='ORGANIZATION']/mets:name", P).text == ORGANISATION

    # The PREMIS inside the METS is validated too: an event whose date is misnamed is rejected.
    when = root.find(".//premis:eventDateTime", P)
    when.tag = f"{{{PREMIS_NS}}}eventDate"
    assert problems(mets_schema(), root)


def _validate_ocfl(root: Path):
    import ocfl

    storage = ocfl.StorageRoot(root=str(root))
    valid = storage.validate(log_warnings=True)
    assert valid and storage.structure_error is None, storage.structure_error
    assert storage.num_objects == storage.good_objects, storage.errors
    assert storage.errors == []  # not even a warning
    return storage


def _inventory(root: Path, sha: str) -> dict:
    return json.loads((root / object_path(record_id(sha)) / "inventory.json").read_text())


def _object_inventory(key: str) -> bool:
    """Whether a path is an object's own inventory (or its sidecar): the one file a new version replaces."""
    path = Path(key)
    return path.name.startswith("inventory.json") and not path.parent.name.startswith("v")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ocfl_root_passes_the_validator_and_a_later_run_adds_versions_without_rewriting(runs, seeds_dir, tmp_path):
    store, first, second = runs
    root = tmp_path / "ocfl"
    result = export_ocfl(store, root, run_id=first)
    assert result["created"] == 5 and result["versions_added"] == 5
    storage = _validate_ocfl(root)
    assert storage.num_objects == 5
    assert (root / "0=ocfl_1.1").read_text() == "ocfl_1.1\n"

    seed = seeds_dir / "003_383d63a257376c65.txt"
    inventory = _inventory(root, _sha(seed))
    assert inventory["id"] == record_id(_sha(seed)) and inventory["head"] == "v1"
    assert inventory["digestAlgorithm"] == "sha512"
    sha512 = hashlib.sha512(seed.read_bytes()).hexdigest()
    # (This seed's text is its own bytes, normalised already: OCFL stores them once for both paths.)
    assert f"original/{seed.name}" in inventory["versions"]["v1"]["state"][sha512]
    assert inventory["fixity"]["sha256"][_sha(seed)] == inventory["manifest"][sha512]
    logical = {p for paths in inventory["versions"]["v1"]["state"].values() for p in paths}
    assert logical >= {"text.txt", "metadata/document.json", "metadata/files.json", "metadata/premis.xml",
                       "metadata/runs.json"}
    obj = root / object_path(record_id(_sha(seed)))
    assert problems(premis_schema(), etree.parse(str(obj / "v1/content/metadata/premis.xml"))) == []
    before = _files(root)

    # Exporting the same run again changes nothing; exporting the later run adds a version where it touched.
    assert export_ocfl(store, root, run_id=first)["unchanged"] == 5
    assert _files(root) == before
    later = export_ocfl(store, root, run_id=second)
    assert (later["created"], later["updated"], later["versions_added"]) == (1, 5, 6)
    storage = _validate_ocfl(root)
    assert storage.num_objects == 6
    after = _files(root)
    kept = {k: v for k, v in before.items() if not _object_inventory(k)}
    assert {k: after[k] for k in kept} == kept  # every version written before, byte for byte
    inventory = _inventory(root, _sha(seed))
    assert inventory["head"] == "v2" and second in inventory["versions"]["v2"]["message"]
    assert {"original/copies/minutes-copy.txt", f"original/{seed.name}"} <= set(
        inventory["versions"]["v2"]["state"][sha512])
    assert inventory["manifest"][sha512] == [f"v1/content/original/{seed.name}"]  # the bytes are stored once
    runs_file = (obj / "v2/content/metadata/runs.json").read_text()
    assert [r["run_id"] for r in json.loads(runs_file)] == [first, second]
    new = _inventory(root, hashlib.sha256(NEW_TEXT.encode()).hexdigest())
    assert new["head"] == "v1" and first not in new["versions"]["v1"]["message"]

    # The validator is really applied: a changed byte in a stored original fails it.
    (obj / f"v1/content/original/{seed.name}").write_bytes(b"bit rot")
    import ocfl

    tampered = ocfl.StorageRoot(root=str(root))
    tampered.validate()
    assert tampered.good_objects == tampered.num_objects - 1


def test_ocfl_export_of_a_collection_holds_each_of_its_runs_as_a_version(runs, seeds_dir, tmp_path):
    store, first, second = runs
    root = tmp_path / "ocfl"
    result = export_ocfl(store, root, collection="harbour")
    assert result["runs"] == [first, second] and result["objects"] == 6 and result["versions_added"] == 11
    _validate_ocfl(root)
    inventory = _inventory(root, _sha(seeds_dir / "000_1b6d2751a6b6d7cc.txt"))
    assert [inventory["versions"][v]["message"].split()[3] for v in ("v1", "v2")] == [first, second]
    with pytest.raises(Exception, match="neither empty nor an OCFL"):
        export_ocfl(store, tmp_path, run_id=first)  # a directory holding other things is not taken for a root


def test_prov_jsonld_parses_offline_and_answers_a_sparql_query_for_loc_event_types(runs, monkeypatch):
    import rdflib

    store, first, second = runs
    text = prov_text(export_run_prov(store, second, ORGANISATION), "jsonld")
    contexts = json.loads(text)["@context"]
    assert not [c for c in contexts if isinstance(c, str)]  # embedded, not a URL to fetch

    def no_network(*args, **kwargs):
        raise AssertionError("the JSON-LD asked for the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    graph = rdflib.Graph().parse(data=text, format="json-ld")

    query = """
        PREFIX prov: <http://www.w3.org/ns/prov#>
        PREFIX archive: <urn:archive:>
        SELECT ?event ?type ?agent WHERE {
            ?event a <http://id.loc.gov/vocabulary/preservation/eventType/app> ;
                   archive:event_type ?type ;
                   prov:qualifiedCommunication [ prov:activity ?run ] ;
                   prov:qualifiedAssociation [ prov:agent ?agent ] ;
                   prov:qualifiedUsage [ prov:entity ?original ] .
            ?run a archive:ingest-run .
            ?agent a prov:SoftwareAgent .
            ?original a archive:Original .
        }"""
    rows = list(graph.query(query))
    assert len({r.event for r in rows}) == 6  # the six duplicates, typed appraisal
    assert {str(r.type) for r in rows} == {"deduplication"}
    ingestions = graph.query("SELECT (COUNT(?e) AS ?n) WHERE { ?e a <%sing> }" % LOC_EVENT_TYPE)
    assert int(next(iter(ingestions)).n) == 8  # seven files stored, and the run's own start
    kinds = {str(o) for o in graph.objects(None, rdflib.RDF.type) if str(o).startswith("http://www.w3.org/ns/prov#")}
    assert {"http://www.w3.org/ns/prov#SoftwareAgent", "http://www.w3.org/ns/prov#Person",
            "http://www.w3.org/ns/prov#Organization"} <= kinds
    assert not [o for o in graph.objects() if isinstance(o, rdflib.Literal) and str(o).startswith("prov:")]


def _audit(store, when: dt.datetime) -> str:
    """A committed fixity audit of every run, as archive verify makes it (without its Prefect flow)."""
    from archive.audit import check_objects, check_parts, commit_audit, record_checks, referenced_objects
    from archive.provenance import RunContext, new_run_id

    run = RunContext(new_run_id(when), None, store.url)
    manifests = list(committed_manifests(store))
    parts = record_checks(store, run, 0, check_parts(store, manifests))
    referenced = referenced_objects(store, manifests, {p["key"] for m in manifests for p in m["parts"]})
    objects = record_checks(store, run, 1, check_objects(store, referenced))
    commit_audit(store, run, [parts, objects], {})
    return run.run_id


def test_an_audit_run_exports_its_fixity_checks_linked_to_the_originals_and_parts_it_checked(seeds_dir, tmp_path):
    store = open_store(str(tmp_path / "store"))
    ingest = _ingest(store, seeds_dir, dt.datetime(2026, 3, 1, 9, tzinfo=dt.timezone.utc), "harbour")
    audit = _audit(store, dt.datetime(2026, 3, 8, 3, tzinfo=dt.timezone.utc))
    (ingested,) = [m for m in committed_manifests(store) if m["run_id"] == ingest]

    export_premis(store, audit, tmp_path / "audit.premis.xml")
    root = etree.parse(str(tmp_path / "audit.premis.xml"))
    assert problems(premis_schema(), root) == []
    checks = root.xpath("premis:event[premis:eventType='fixity check']", namespaces=P)
    assert len(checks) == 5 + len(ingested["parts"])
    linked = {e.findtext(".//premis:linkingObjectIdentifierValue", namespaces=P) for e in checks}
    assert linked == ({f"urn:archive:original:{_sha(s)}" for s in seeds_dir.iterdir()}
                      | {f"urn:archive:part:{p['key']}" for p in ingested["parts"]})
    objects = {o.findtext(".//premis:objectIdentifierValue", namespaces=P) for o in root.findall("premis:object", P)}
    assert linked <= objects  # every object checked is described
    export_mets(store, audit, tmp_path / "audit.mets.xml")
    assert problems(mets_schema(), etree.parse(str(tmp_path / "audit.mets.xml"))) == []

    # In OCFL, the audit is a version of each original it checked, whose PREMIS holds the check.
    export_ocfl(store, tmp_path / "ocfl", run_id=ingest)
    assert export_ocfl(store, tmp_path / "ocfl", run_id=audit)["versions_added"] == 5
    _validate_ocfl(tmp_path / "ocfl")
    seed = seeds_dir / "001_291c46b230e7e5bc.txt"
    obj = tmp_path / "ocfl" / object_path(record_id(_sha(seed)))
    premis = etree.parse(str(obj / "v2/content/metadata/premis.xml"))
    assert [e.get("valueURI") for e in premis.iter(f"{{{PREMIS_NS}}}eventType")][-1] == LOC_EVENT_TYPE + "fix"


def _archive(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


def test_export_command_writes_each_format_and_refuses_a_wrong_call(runs, tmp_path):
    store, first, second = runs
    dest = store.url.removeprefix("file://")
    for fmt in ("premis", "mets"):
        done = _archive("export", first, str(tmp_path / f"run.{fmt}.xml"), "--format", fmt, "--dest", dest,
                        "--organisation", ORGANISATION, "--json", tmp_path=tmp_path)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert json.loads(done.stdout)["format"] == fmt
        schema = premis_schema() if fmt == "premis" else mets_schema()
        assert problems(schema, etree.parse(str(tmp_path / f"run.{fmt}.xml"))) == []
    done = _archive("export", "--collection", "harbour", str(tmp_path / "ocfl"), "--format", "ocfl", "--dest", dest,
                    tmp_path=tmp_path)
    assert done.returncode == 0 and "6 object(s)" in done.stdout and "11 version(s) added" in done.stdout
    _validate_ocfl(tmp_path / "ocfl")
    prov = _archive("prov", second, "--dest", dest, "--format", "jsonld", tmp_path=tmp_path)
    assert prov.returncode == 0 and "http://id.loc.gov/vocabulary/preservation/eventType/" in prov.stdout

    assert _archive("export", str(tmp_path / "x.xml"), "--format", "premis", "--dest", dest,
                    tmp_path=tmp_path).returncode == 2  # neither RUN_ID nor --collection
    assert _archive("export", "--collection", "harbour", str(tmp_path / "x.xml"), "--format", "mets", "--dest", dest,
                    tmp_path=tmp_path).returncode == 2
    missing = _archive("export", "20990101T000000Z-dead", str(tmp_path / "x.xml"), "--format", "premis", "--dest",
                       dest, tmp_path=tmp_path)
    assert missing.returncode == 1 and "no committed run" in missing.stderr


def test_runs_fixture_has_the_runs_it_claims(runs):
    store, first, second = runs
    assert [m["run_id"] for m in committed_manifests(store)] == [first, second]
