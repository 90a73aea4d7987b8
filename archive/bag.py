"""BagIt (RFC 8493) export of a run as an archival information package, with sha256 and sha512 manifests, via
bagit-python: the originals under their source paths, the derived texts, the run's datasets, METS with PREMIS, PREMIS,
PROV-O and the events, all in the payload (data/); the run's manifest as a tag file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from . import SOFTWARE_NAME, __version__
from .errors import ArchiveError, DamagedPartError, NotFoundError, TerminalError
from .fixity import sha256_hex
from .publish import load_manifest, manifest_key
from .read import open_dataset
from .storage import Store

MANIFEST_TAG_FILE = "archive-run-manifest.json"
RENAMED_TAG_FILE = "archive-renamed-paths.json"  # recorded path -> name in the bag, for the paths not under their own
UNSAFE_NAMES = "_unsafe-names"


OBJECTS, TEXTS, DATASETS, METADATA = "objects", "texts", "datasets", "metadata"  # folders under the bag's data/
METS_FILE = "METS.xml"


def export_bag(store: Store, run_id: str, out_dir: str | os.PathLike, *, processes: int = 2,
               organisation: str | None = None) -> dict:
    """Write a bag of a run, laid out under data/ as an Archivematica AIP is:

    objects/   every original the run saw, under the path it had in the source (as recorded: display_path), each
               in a file of its own (BagNames)
    texts/     the normalised text of each document the run published, <doc_id>.txt (UTF-8)
    datasets/  the run's Parquet part files (documents, files, quarantine, events, reuse), as the manifest lists them
    METS.xml   METS of the run (PREMIS 3.0 inside), its file section pointing at the files above
    metadata/  premis.xml (PREMIS 3.0), prov.jsonld (PROV-O, context embedded), events.jsonl (one event a line)

    bag-info.txt names the run, collection and software; the run's manifest is a tag file, so the bag can be traced
    back to the store. Each original and part is hashed as it is copied: one that differs from the sha256 recorded
    for it stops the bag with an error naming it (a bag never carries damaged bytes under fresh checksums).
    """
    import bagit

    from .export.gather import gather_run

    key = manifest_key(run_id)
    if not store.exists(key):
        raise NotFoundError(f"no committed run {run_id} in {store.url}")
    manifest = load_manifest(store, key)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ArchiveError(f"{out} is not empty; a bag is written into a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    files = open_dataset(store, "files", runs=[run_id]).to_table(columns=["path", "object_key", "sha256"]).to_pylist()
    kept = sorted((row for row in files if row["object_key"]), key=lambda row: row["path"])
    if not kept:
        raise ArchiveError(f"run {run_id} kept no originals; there is nothing to bag")
    names = BagNames([(row["path"], row["sha256"]) for row in kept])
    placed: dict[tuple[str, str], str] = {}
    for row, name in zip(kept, names.names):
        found = _write_original(store, row["object_key"], out / OBJECTS / name)
        if found is None:
            # The file system cannot have this name (too long; taken by a name it does not tell apart, such as
            # another letter case; a file where a folder must be): the original goes under a name of its own.
            name = names.rename(row["path"], row["sha256"], lambda n: not (out / OBJECTS / n).exists())
            found = _write_original(store, row["object_key"], out / OBJECTS / name)
            if found is None:
                raise ArchiveError(f"{row['path']!r} cannot be written into the bag, not even as {name}")
        if found != row["sha256"]:
            raise TerminalError(f"original {row['object_key']} ({row['path']!r}) hashes to {found}, not its sha256 "
                                f"{row['sha256']}: it is damaged in the store (archive verify names every damaged "
                                f"object); the bag in {out} is not finished")
        placed[(row["sha256"], row["path"])] = f"{OBJECTS}/{name}"
    records = gather_run(store, run_id)
    texts = _write_texts(store, manifest, out / TEXTS)
    for part in manifest["parts"]:
        target = out / DATASETS / _part_name(part["key"])
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as dst:
            found = _copy_hashing(store, part["key"], dst)
        if found != part["sha256"]:
            raise DamagedPartError(part["key"], run_id, f"hashes to {found}, not the sha256 its manifest records; "
                                   f"the bag in {out} is not finished")
    _write_metadata(store, run_id, records, placed, out, organisation)
    manifest_bytes = store.get_bytes(key)
    info = {
        "External-Identifier": run_id,
        "External-Description": f"Archival information package of archive run {run_id}: originals under their "
                                "source paths, derived texts, datasets, METS, PREMIS and PROV",
        "Bag-Group-Identifier": manifest.get("collection") or "",
        "Archive-Run-Id": run_id,
        "Archive-Collection": manifest.get("collection") or "",
        "Archive-Source": manifest.get("source") or "",
        "Archive-Software": f"{SOFTWARE_NAME} {__version__}",
        "Archive-Run-Software": f"{manifest['software']['name']} {manifest['software']['version']}",
        "Archive-Manifest-Key": key,
        "Archive-Manifest-SHA256": sha256_hex(manifest_bytes),
    }
    bag = bagit.make_bag(str(out), {k: v for k, v in info.items() if v}, processes=processes,
                         checksums=["sha256", "sha512"])
    (out / MANIFEST_TAG_FILE).write_bytes(manifest_bytes)
    if names.renamed:
        (out / RENAMED_TAG_FILE).write_text(json.dumps(names.renamed, indent=1, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    bag.save(processes=processes)  # rewrites the tag manifests to cover the tag files
    return {"run_id": run_id, "bag": str(out), "files": len(kept), "texts": texts,
            "parts": len(manifest["parts"]), "events": len(records.events), "algorithms": ["sha256", "sha512"],
            "renamed": names.renamed}


def _part_name(key: str) -> str:
    """datasets/<name>/run=<id>/part-....parquet -> <name>/run=<id>/part-....parquet (its folder made)."""
    return key.removeprefix("datasets/")


def _write_texts(store: Store, manifest: dict, folder: Path) -> int:
    """Each document's text as <doc_id>.txt, a documents part at a time, a batch of rows at a time."""
    from .catalogue.view import dataset

    count = 0
    folder.mkdir(parents=True, exist_ok=True)
    for part in manifest["parts"]:
        if part["dataset"] != "documents":
            continue
        for batch in dataset(store, "documents", [part["key"]]).to_batches(columns=["doc_id", "text"], batch_size=256):
            for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
                count += 1
    return count


def _write_metadata(store: Store, run_id: str, records, placed: dict[tuple[str, str], str], out: Path,
                    organisation: str | None) -> None:
    """METS.xml (its file section pointing into the bag), metadata/premis.xml, prov.jsonld and events.jsonl."""
    from .export.mets import mets_xml
    from .export.premis import premis_of, to_bytes
    from .provenance import export_run_prov, prov_text

    first_place: dict[str, str] = {}
    for (sha256, _), name in sorted(placed.items()):
        first_place.setdefault(sha256, name)

    class InTheBag:
        def original(self, original, path: str) -> str:  # (a path another run saw: the bytes where this run's are)
            return placed.get((original.sha256, path)) or first_place[original.sha256]

        def text(self, document: dict) -> str:
            return f"{TEXTS}/{document['doc_id']}.txt"

        def part(self, part: dict) -> str:
            return f"{DATASETS}/{_part_name(part['key'])}"

    (out / METS_FILE).write_bytes(to_bytes(mets_xml(records, organisation, InTheBag())))
    (out / METADATA).mkdir()
    (out / METADATA / "premis.xml").write_bytes(to_bytes(premis_of(records, organisation).document()))
    (out / METADATA / "prov.jsonld").write_text(prov_text(export_run_prov(store, run_id, organisation), "jsonld"),
                                                encoding="utf-8")
    with open(out / METADATA / "events.jsonl", "w", encoding="utf-8") as events:
        for event in records.events:
            events.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")


class BagNames:
    """The name under the bag's data/ of each original, from its recorded path: that path, or UNSAFE_NAMES/<sha256>
    (<sha256>-2, -3... for further paths of the same bytes) when the path cannot be a file of its own. No two paths
    get one name: recorded paths are distinct for distinct files (display_path is lossless) and a path is moved
    when it could leave the bag (absolute, `..`), has empty or `.` segments (it would land on another path's file),
    is a folder another path needs, or repeats a path already named. renamed: recorded path -> its name in the bag.
    """

    def __init__(self, rows: list[tuple[str, str]]):
        folders = {path[:i] for path, _ in rows for i, char in enumerate(path) if char == "/"} | {UNSAFE_NAMES}
        own = {path for path, _ in rows if _own_name(path) and path not in folders}
        self.renamed: dict[str, str] = {}
        self._taken = own | folders
        self.names: list[str] = []
        given = set()
        for path, sha256 in rows:
            name = path if path in own and path not in given else self.rename(path, sha256)
            given.add(name)
            self.names.append(name)

    def rename(self, path: str, sha256: str, free: Callable[[str], bool] = lambda name: True) -> str:
        """A new name for path under UNSAFE_NAMES, taken by no other path and free by the test given."""
        name, n = f"{UNSAFE_NAMES}/{sha256}", 1
        while name in self._taken or not free(name):
            n += 1
            name = f"{UNSAFE_NAMES}/{sha256}-{n}"
        self._taken.add(name)
        self.renamed[path] = name
        return name


def _own_name(path: str) -> bool:
    """Whether path can name a file in the bag as it is: relative, with no empty, `.` or `..` segment."""
    return "\0" not in path and all(part not in ("", ".", "..") for part in path.split("/"))


def _write_original(store: Store, object_key: str, target: Path) -> str | None:
    """The original copied to target, a new file: the sha256 of what was copied; None (nothing written) where the
    file system cannot have that name: too long, not valid for it, a file by that name (as it compares names) or in
    the way of its folder."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        dst = open(target, "xb")
    except (FileExistsError, NotADirectoryError, IsADirectoryError, ValueError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
            return None
        raise
    with dst:
        return _copy_hashing(store, object_key, dst)


def _copy_hashing(store: Store, key: str, dst) -> str:
    """Copy an object into an open file, a MiB at a time; the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    with store.open_read(key) as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()
