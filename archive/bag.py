"""BagIt (RFC 8493) export of a run's originals, with sha256 and sha512 manifests, via bagit-python."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from . import SOFTWARE_NAME, __version__
from .errors import ArchiveError, NotFoundError
from .fixity import sha256_hex
from .publish import load_manifest, manifest_key
from .read import open_dataset
from .storage import Store

MANIFEST_TAG_FILE = "archive-run-manifest.json"


def export_bag(store: Store, run_id: str, out_dir: str | os.PathLike, *, processes: int = 2) -> dict:
    """Write a bag of every original a run saw, under the paths it had in the source.

    The bag names the run, collection and software in bag-info.txt and carries
    the run's manifest as a tag file, so the bag can be traced back to the store.
    """
    import bagit

    key = manifest_key(run_id)
    if not store.exists(key):
        raise NotFoundError(f"no committed run {run_id} in {store.url}")
    manifest = load_manifest(store, key)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ArchiveError(f"{out} is not empty; a bag is written into a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    files = open_dataset(store, "files", runs=[run_id]).to_table(columns=["path", "object_key", "sha256"]).to_pylist()
    count = 0
    for row in files:
        if not row["object_key"]:
            continue
        relative = _safe_relative(row["path"], row["sha256"])
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with store.open_read(row["object_key"]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        count += 1
    if count == 0:
        raise ArchiveError(f"run {run_id} kept no originals; there is nothing to bag")
    manifest_bytes = store.get_bytes(key)
    info = {
        "External-Identifier": run_id,
        "External-Description": f"Original bitstreams of archive run {run_id}, under their source paths",
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
    bag.save(processes=processes)  # rewrites the tag manifests to cover the manifest tag file
    return {"run_id": run_id, "bag": str(out), "files": count, "algorithms": ["sha256", "sha512"]}


def _safe_relative(path: str, sha256: str) -> str:
    """The source path, or a name made from the checksum when the path could escape the bag."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("..", ".") for p in parts):
        return f"_unsafe-names/{sha256}"
    return path
