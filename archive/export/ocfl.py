"""An OCFL 1.1 storage root of the archive's originals: one OCFL object per original (its sha256, the doc_id of the
document made from it), holding the original under every source path it was seen under, the normalised text, the
document record, its files rows, the runs that touched it and its PREMIS; one version per committed run that touched
it, in run order. Exporting a later run adds versions to the objects it touched, never rewriting one: a version once
written is left as it is (docs/auditors.md)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ..errors import ArchiveError, NotFoundError
from ..provenance import starter_name
from ..read import open_dataset
from ..storage import Store
from .gather import (
    Records,
    document_texts,
    gather_originals,
    manifests_by_id,
    run_manifest,
    runs_of_collection,
)
from .premis import premis_of, to_bytes

SPEC = "1.1"
ROOT_DECLARATION = f"0=ocfl_{SPEC}"
OBJECT_DECLARATION = f"0=ocfl_object_{SPEC}"
INVENTORY_TYPE = f"https://ocfl.io/{SPEC}/spec/#inventory"
LAYOUT = "0003-hash-and-id-n-tuple-storage-layout"
LAYOUT_CONFIG = {"extensionName": LAYOUT, "digestAlgorithm": "sha256", "tupleSize": 3, "numberOfTuples": 3}
RUNS_FILE = "metadata/runs.json"
CHUNK = 1 << 20


def record_id(sha256: str) -> str:
    """The OCFL object id of an original and what was made of it."""
    return f"urn:archive:record:{sha256}"


def object_path(identifier: str) -> str:
    """Where an object lives under the root: extension 0003 (three 3-character tuples of the sha256 of the id, then
    the id, percent-encoded)."""
    digest = hashlib.sha256(identifier.encode()).hexdigest()
    encoded = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "".join(f"%{b:02x}" for b in c.encode())
                      for c in identifier)
    if len(encoded) > 100:
        encoded = f"{encoded[:100]}-{digest}"
    return "/".join([digest[0:3], digest[3:6], digest[6:9], encoded])


def _json(value) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def open_root(out: Path) -> None:
    """An OCFL storage root at out: made in a new or empty directory; an existing root is used as it is."""
    if (out / ROOT_DECLARATION).exists():
        return
    if out.exists() and any(out.iterdir()):
        raise ArchiveError(f"{out} is neither empty nor an OCFL {SPEC} storage root (no {ROOT_DECLARATION})")
    _write(out / ROOT_DECLARATION, f"ocfl_{SPEC}\n".encode())
    _write(out / "ocfl_layout.json", _json({"extension": LAYOUT, "description": "Hashed truncated n-tuple trees "
                                           "with object id encapsulating directory (OCFL extension 0003)"}))
    _write(out / "extensions" / LAYOUT / "config.json", _json(LAYOUT_CONFIG))


def _safe_logical(path: str, sha256: str, n: int) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return f"original/_unsafe-names/{sha256}-{n}"
    return "original/" + "/".join(parts)


class ObjectWriter:
    """One OCFL object in a storage root: reads its inventory, adds versions."""

    def __init__(self, root: Path, sha256: str, store: Store):
        self.sha256, self.store = sha256, store
        self.id = record_id(sha256)
        self.dir = root / object_path(self.id)
        self.inventory = json.loads((self.dir / "inventory.json").read_text()) if (
            self.dir / "inventory.json").exists() else None

    def runs(self) -> list[str]:
        """The runs the object's head version holds (none for a new object)."""
        if not self.inventory:
            return []
        head = self.inventory["versions"][self.inventory["head"]]["state"]
        for digest, paths in head.items():
            if RUNS_FILE in paths:
                content = self.inventory["manifest"][digest][0]
                return [r["run_id"] for r in json.loads((self.dir / content).read_text())]
        return []

    def _original_digest(self) -> str | None:
        """The sha512 of the original, if an earlier version holds it."""
        known = set((self.inventory or {}).get("fixity", {}).get("sha256", {}).get(self.sha256, []))
        for digest, paths in (self.inventory or {}).get("manifest", {}).items():
            if known & set(paths):
                return digest
        return None

    def _copy_original(self, target: Path) -> str:
        """Copy the original from the store into target, checking its sha256 on the way; its sha512."""
        from ..storage import object_key

        sha256, sha512 = hashlib.sha256(), hashlib.sha512()
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.store.open_read(object_key(self.sha256)) as src, open(target, "wb") as dst:
            while chunk := src.read(CHUNK):
                sha256.update(chunk)
                sha512.update(chunk)
                dst.write(chunk)
        if sha256.hexdigest() != self.sha256:
            target.unlink()
            raise ArchiveError(f"original {self.sha256} fails its fixity check in {self.store.url}: sha256 "
                               f"{sha256.hexdigest()}; run archive verify")
        return sha512.hexdigest()

    def add_version(self, state: dict[str, bytes | None], created: str, message: str, user: dict) -> str:
        """A new version whose state is logical path -> bytes (None: the original). Content new to the object is
        written under the version's content directory; the root inventory is replaced last."""
        inventory = self.inventory or {
            "id": self.id, "type": INVENTORY_TYPE, "digestAlgorithm": "sha512", "head": "v0",
            "contentDirectory": "content", "fixity": {"sha256": {}}, "manifest": {}, "versions": {}}
        version = f"v{int(inventory['head'][1:]) + 1}"
        vdir = self.dir / version
        if vdir.exists():  # left by an export that stopped before its inventory: never part of the object
            shutil.rmtree(vdir)
        if not self.inventory:
            _write(self.dir / OBJECT_DECLARATION, f"ocfl_object_{SPEC}\n".encode())
        manifest, fixity = inventory["manifest"], inventory["fixity"]["sha256"]
        new_state: dict[str, list[str]] = {}
        original = self._original_digest()
        for logical in sorted(state):
            data = state[logical]
            content = f"{version}/content/{logical}"
            if data is None:
                if original is None:
                    original = self._copy_original(self.dir / content)
                    manifest[original] = [content]
                    fixity.setdefault(self.sha256, []).append(content)
                digest = original
            else:
                digest = hashlib.sha512(data).hexdigest()
                if digest not in manifest:
                    _write(self.dir / content, data)
                    manifest[digest] = [content]
                    fixity.setdefault(hashlib.sha256(data).hexdigest(), []).append(content)
            new_state.setdefault(digest, []).append(logical)
        inventory["versions"][version] = {"created": created, "message": message, "state": new_state, "user": user}
        inventory["head"] = version
        text = _json(inventory)
        sidecar = f"{hashlib.sha512(text).hexdigest()}  inventory.json\n".encode()
        for where in (vdir, self.dir):  # the version's copy first, the root's last: then the version exists
            _write(where / "inventory.json", text)
            _write(where / "inventory.json.sha512", sidecar)
        self.inventory = inventory
        return version


def _state(sha256: str, records: Records, runs: list[str], texts: dict, organisation: str | None) -> dict:
    """The object's content once these runs (in order) have touched it."""
    upto = set(runs)
    files = [f for f in records.files if f["sha256"] == sha256 and f["run_id"] in upto]
    state: dict[str, bytes | None] = {}
    for f in files:
        for n, path in enumerate(records.originals[sha256].paths):
            if path == f["path"]:
                state[_safe_logical(path, sha256, n)] = None
    documents = [d for d in records.documents if d["doc_id"] == sha256 and d["run_id"] in upto]
    if documents:
        document = documents[-1]
        state["text.txt"] = texts[(document["run_id"], sha256)].encode()
        state["metadata/document.json"] = _json({k: v for k, v in document.items() if k != "text_bytes"})
    state["metadata/files.json"] = _json(files)
    manifests = [m for m in records.manifests if m["run_id"] in upto]
    state[RUNS_FILE] = _json([{k: m.get(k) for k in ("run_id", "kind", "collection", "source", "started_at",
                                                     "committed_at", "started_by", "software")} for m in manifests])
    events = [e for e in records.events if e["object_sha256"] == sha256 and e["run_id"] in upto]
    premis = premis_of(Records(manifests, {sha256: records.originals[sha256]}, documents, files, events, {}),
                       organisation)
    state["metadata/premis.xml"] = to_bytes(premis.document())
    return state


def _message(manifest: dict, sha256: str, records: Records) -> str:
    what = sorted({f["outcome"] + (f" ({f['reason']})" if f["reason"] else "")
                   for f in records.files if f["sha256"] == sha256 and f["run_id"] == manifest["run_id"]})
    if not what:
        what = sorted({f"{e['event_type']} {e['outcome']}" for e in records.events
                       if e["object_sha256"] == sha256 and e["run_id"] == manifest["run_id"]})
    collection = f" of collection {manifest['collection']}" if manifest.get("collection") else ""
    return f"archive {manifest['kind']} run {manifest['run_id']}{collection}: {', '.join(what)}"


def _touched(store: Store, runs: list[str]) -> set[str]:
    """The originals these runs saw or recorded events of."""
    import pyarrow.dataset as ds

    seen = set(open_dataset(store, "files", runs=runs).to_table(
        filter=ds.field("object_key").is_valid(), columns=["sha256"]).column("sha256").to_pylist())
    events = set(open_dataset(store, "events", runs=runs).to_table(
        filter=ds.field("object_sha256").is_valid(), columns=["object_sha256"]).column("object_sha256").to_pylist())
    others = events - seen
    if others:  # an audit's or reuse run's: originals only (not part files)
        seen |= set(open_dataset(store, "files").to_table(
            filter=ds.field("sha256").isin(sorted(others)) & ds.field("object_key").is_valid(),
            columns=["sha256"]).column("sha256").to_pylist())
    return {s for s in seen if s}


def export_ocfl(store: Store, out: str | os.PathLike, *, run_id: str | None = None, collection: str | None = None,
                organisation: str | None = None) -> dict:
    """Bring the objects of the originals a run (or every run of a collection) touched up to date in the OCFL storage
    root out: one version per committed run that touched an object, up to the run (the collection's last)."""
    manifests = manifests_by_id(store)
    if collection is not None:
        targets = runs_of_collection(manifests, collection)
        if not targets:
            raise NotFoundError(f"no committed run of collection {collection!r} in {store.url}")
    else:
        targets = [run_manifest(manifests, run_id, store)["run_id"]]
    until = max(targets)
    shas = _touched(store, targets)
    if not shas:
        raise ArchiveError(f"run(s) {', '.join(targets)} touched no original; there is nothing to export")
    root = Path(out)
    open_root(root)
    records = gather_originals(store, shas, until, manifests)
    texts = document_texts(store, records.documents)
    touching: dict[str, set[str]] = {}
    for row in records.files + records.events:
        sha = row.get("sha256") or row.get("object_sha256")
        touching.setdefault(sha, set()).add(row["run_id"])
    counts = {"created": 0, "updated": 0, "unchanged": 0, "versions_added": 0}
    for sha in sorted(shas):
        writer = ObjectWriter(root, sha, store)
        held = writer.runs()
        runs = sorted(touching.get(sha, ()))
        new = [r for r in runs if not held or r > held[-1]]
        if not new:
            counts["unchanged"] += 1
            continue
        counts["updated" if held else "created"] += 1
        for run in new:
            manifest = manifests[run]
            state = _state(sha, records, held + [r for r in runs if r <= run and r not in held], texts, organisation)
            who = manifest["started_by"]
            writer.add_version(state, manifest["committed_at"], _message(manifest, sha, records),
                               {"name": starter_name(who),
                                "address": f"urn:archive:agent:starter:{quote(starter_name(who), safe='-_.')}"})
            counts["versions_added"] += 1
    return {"format": "ocfl", "out": str(root), "runs": targets, "objects": len(shas), **counts}
