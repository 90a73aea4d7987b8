"""Parquet part files and the run manifest, whose write-once commit makes a run visible."""

from __future__ import annotations

import io
import json
import os
import secrets
import tempfile
import warnings
from dataclasses import asdict, dataclass
from typing import Container, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from . import SOFTWARE_NAME, __version__, chain
from .errors import ManifestError, ObjectExistsError, ObjectNotFoundError, StoreError
from .fixity import digest_file, sha256_hex
from .records import DATASETS, arrow_schema, to_table, utc_now
from .storage import Store
from .validate import describe_problems, problems, schema_id

MANIFEST_PREFIX = "runs/"


@dataclass(frozen=True)
class PartInfo:
    """What a manifest records of one part file: enough to find and re-verify it."""

    dataset: str
    key: str
    sha256: str
    bytes: int
    rows: int


def part_key(dataset: str, run_id: str, index: int, attempt: str | None = None) -> str:
    """datasets/<name>/run=<run_id>/part-00000[-attempt].parquet.

    The attempt suffix keeps a retried batch from colliding with the parts its
    failed attempt may have left behind; only parts a manifest lists count.
    """
    suffix = f"-{attempt}" if attempt else ""
    return f"datasets/{dataset}/run={run_id}/part-{index:05d}{suffix}.parquet"


def new_attempt() -> str:
    return secrets.token_hex(3)


def write_part(store: Store, dataset: str, key: str, rows: list[dict]) -> PartInfo:
    """Write rows as one Parquet file (zstd) under key, write-once."""
    return write_table_part(store, dataset, key, to_table(dataset, rows))


# A table of more than this many bytes is written to a temporary file and streamed into the store from there,
# instead of into memory (the Parquet file, and a copy of it, beside the table).
SPOOL_PART_BYTES = 32 << 20


def parquet_options(schema: pa.Schema) -> dict:
    """How a part is written: zstd, dictionaries and statistics, but for whole texts (the large_string columns,
    such as documents' text), written plain and without statistics: a dictionary of texts that never repeat, or
    a column's minimum and maximum (each a copy of a text, in the footer and in each page's header) cost time and,
    for a long text, several times its size in memory while it is written."""
    texts = {f.name for f in schema if pa.types.is_large_string(f.type)}
    if not texts:
        return {"compression": "zstd", "write_statistics": True}
    others = [f.name for f in schema if f.name not in texts]
    return {"compression": "zstd", "use_dictionary": others, "write_statistics": others}


def write_table_part(store: Store, dataset: str, key: str, table: pa.Table) -> PartInfo:
    """Write an Arrow table of a dataset's schema as one Parquet file (zstd) under key, write-once."""
    table = table.cast(arrow_schema(dataset))
    options = parquet_options(table.schema)
    if table.nbytes <= SPOOL_PART_BYTES:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, **options)
        return put_part(store, dataset, key, buffer.getvalue(), table.num_rows)
    spool = tempfile.NamedTemporaryFile(prefix="archive-part-", suffix=".parquet", delete=False)
    try:
        with spool:
            pq.write_table(table, spool, **options)
        return put_part_file(store, dataset, key, spool.name, table.num_rows)
    finally:
        os.unlink(spool.name)


def put_part(store: Store, dataset: str, key: str, data: bytes, rows: int) -> PartInfo:
    """Store a Parquet file's bytes under key, write-once, checked against the sha256 the store reports."""
    digest = sha256_hex(data)
    result = store.put_bytes(key, data, sha256=digest)
    if result.stored_sha256 is not None and result.stored_sha256 != digest:
        raise StoreError(key, f"store reports sha256 {result.stored_sha256}, wrote {digest}")
    return PartInfo(dataset, key, digest, len(data), rows)


def put_part_file(store: Store, dataset: str, key: str, path: str, rows: int) -> PartInfo:
    """put_part of a Parquet file on local disk, streamed from it."""
    digests, size = digest_file(path)
    digest = digests["sha256"]
    result = store.put_file(key, path, sha256=digest)
    if result.stored_sha256 is not None and result.stored_sha256 != digest:
        raise StoreError(key, f"store reports sha256 {result.stored_sha256}, wrote {digest}")
    return PartInfo(dataset, key, digest, size, rows)


def manifest_key(run_id: str) -> str:
    return f"{MANIFEST_PREFIX}{run_id}.json"


def software_components() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    components = {}
    for name in ("pyarrow", "jsonschema", "charset-normalizer", "py3langid", "prefect", "boto3", "datasketch"):
        try:
            components[name] = version(name)
        except PackageNotFoundError:
            pass
    return components


def build_manifest(
    *,
    run_id: str,
    kind: str,
    collection: str | None,
    source: str | None,
    started_at: str,
    flow_run_id: str | None,
    started_by: dict,
    parameters: dict,
    counts: dict[str, int],
    parts: list[PartInfo],
    notes: list[str] | None = None,
) -> dict:
    manifest = {
        "manifest_version": "1",
        "run_id": run_id,
        "kind": kind,
        "status": "committed",
        "collection": collection,
        "source": source,
        "started_at": started_at,
        "committed_at": utc_now(),
        "software": {"name": SOFTWARE_NAME, "version": __version__, "components": software_components()},
        "schemas": {dataset: schema_id(kind_) for dataset, (_, kind_) in DATASETS.items()},
        "flow_run_id": flow_run_id,
        "started_by": started_by,
        "parameters": parameters,
        "counts": counts,
        "parts": [asdict(p) for p in sorted(parts, key=lambda p: (p.dataset, p.key))],
    }
    if notes:
        manifest["notes"] = notes
    return manifest


def commit_manifest(store: Store, manifest: dict, *, locked: bool = False) -> str:
    """Link the manifest into the run log's hash chain (archive/chain.py), validate it and write runs/<run_id>.json
    once. From this moment the run exists. Under the store's commit lock, taken here unless the caller holds it
    (locked), so that the chain stays one line; when taken here, the Iceberg tables follow once it is released
    (archive/tables; a caller that holds the lock calls follow_after_commit after releasing it).

    Every part it lists must already be in the store with the recorded size:
    a manifest never points at bytes that are not there.
    """
    if not locked:
        from .commitlock import commit_lock
        from .tables import follow_after_commit

        with commit_lock(store, manifest["run_id"]):
            key = commit_manifest(store, manifest, locked=True)
        follow_after_commit(store)
        return key
    manifest["chain"] = chain.next_link(store)
    found = problems("manifest", manifest)
    if found:
        raise ManifestError(f"manifest of run {manifest.get('run_id')} is invalid: {describe_problems(found)}")
    sizes = store.sizes([part["key"] for part in manifest["parts"]])
    for part in manifest["parts"]:
        size = sizes[part["key"]]
        if size != part["bytes"]:
            found = "missing" if size is None else f"{size} bytes"
            raise ManifestError(f"part {part['key']} is {found}, manifest says {part['bytes']}")
    key = manifest_key(manifest["run_id"])
    data = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    try:
        store.put_bytes(key, data, sha256=sha256_hex(data))
    except ObjectExistsError:
        raise ManifestError(f"run {manifest['run_id']} is already committed ({key} exists); manifests are never "
                            "overwritten") from None
    chain.remember(store, key, data)
    return key


def committed_manifest(store: Store, run_id: str) -> dict | None:
    """run_id's manifest if the run is committed, else None (DamagedManifestError if it is damaged)."""
    try:
        return load_manifest(store, manifest_key(run_id))
    except ObjectNotFoundError:
        return None


@dataclass(frozen=True)
class DamagedManifest:
    """A manifest under runs/ that cannot be used: it does not parse, or does not validate. Its run is left out of
    every read and command, and named, until the manifest is restored."""

    run_id: str  # from the key's name: the manifest itself cannot be trusted to say it
    key: str
    damage: str  # what is wrong, e.g. "truncated JSON at byte 812"

    def __str__(self) -> str:
        return f"run {self.run_id} left out: its manifest {self.key} is damaged: {self.damage}"


class DamagedManifestWarning(UserWarning):
    """Warned by readers (open_dataset) that go on without a run whose manifest is damaged."""

    def __init__(self, damaged: DamagedManifest):
        super().__init__(str(damaged))
        self.damaged = damaged

    def __reduce__(self):
        return (type(self), (self.damaged,))


class DamagedManifestError(ManifestError):
    """The manifest asked for is damaged (DamagedManifest says how)."""

    def __init__(self, damaged: DamagedManifest):
        super().__init__(f"{damaged.key} is damaged: {damaged.damage}")
        self._init_args = (damaged,)
        self.damaged = damaged


def _run_of(key: str) -> str:
    return key[len(MANIFEST_PREFIX):].removesuffix(".json")


def parse_manifest(key: str, data: bytes) -> dict:
    """The manifest stored under key, checked: DamagedManifestError if it does not parse, does not validate, or
    names another run than its key."""

    def damaged(damage: str) -> DamagedManifestError:
        return DamagedManifestError(DamagedManifest(_run_of(key), key, damage))

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise damaged(f"not UTF-8 at byte {exc.start}") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        at = len(text[:exc.pos].encode("utf-8"))
        if not text.strip():
            raise damaged(f"empty ({len(data)} bytes)") from None
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):  # the bytes stop short
            raise damaged(f"truncated JSON at byte {len(data)}") from None
        raise damaged(f"not valid JSON at byte {at}: {exc.msg}") from None
    found = problems("manifest", manifest) if isinstance(manifest, dict) else None
    if found is None:
        raise damaged(f"not a JSON object but {type(manifest).__name__}")
    if found:
        raise damaged(f"does not validate: {describe_problems(found)}")
    if manifest["run_id"] != _run_of(key):
        raise damaged(f"records run_id {manifest['run_id']!r}, not the run its key names")
    return manifest


def load_manifest(store: Store, key: str) -> dict:
    data = store.get_bytes(key)
    chain.remember(store, key, data)  # the next commit's link, or `archive runs`'s head, without reading it again
    return parse_manifest(key, data)


def committed_manifests(store: Store, *, skip: Container[str] = (),
                        damaged: list[DamagedManifest] | None = None) -> Iterator[dict]:
    """Every committed run's manifest, oldest first (run ids sort by time); one listing of runs/,
    and a read per manifest but those of the run ids in skip.

    A damaged manifest (it does not parse or validate) is left out, so that every other run stays readable:
    appended to damaged when a list is given (the caller reports it), else warned (DamagedManifestWarning)."""
    for info in store.list(MANIFEST_PREFIX):
        if info.key.endswith(".json") and info.key.count("/") == 1 and _run_of(info.key) not in skip:
            try:
                manifest = load_manifest(store, info.key)
            except DamagedManifestError as exc:
                if damaged is None:
                    warnings.warn(DamagedManifestWarning(exc.damaged), stacklevel=2)
                else:
                    damaged.append(exc.damaged)
                continue
            yield manifest
