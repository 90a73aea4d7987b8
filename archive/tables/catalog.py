"""The Iceberg catalog embedded in the store: table metadata kept under tables/, committed write-once.

Each table lives at tables/<namespace>/<name>/ (the Hadoop catalog's layout, so Spark's `type=hadoop` catalog and
DuckDB's iceberg_scan read it too). Its metadata is metadata/v<N>.metadata.json: a commit writes v<N+1> with the
store's write-once put (local: a hard link; S3: If-None-Match), so of two committers that read v<N> only one lands
and the other gets CommitFailedException, reads again and retries. The current metadata is the highest N listed.
Manifests and manifest lists (Avro, named by UUID) are written by pyiceberg through a FileIO on the store's own
pyarrow filesystem (the same endpoint and credentials as the store); data files are the datasets' part files, added
where they are, never copied.

ARCHIVE_CATALOG_URI names a catalog of the team's instead: a REST catalog (http(s)://) or a SQL one (sqlite:///...,
postgresql://...), its type inferred from the URI as pyiceberg infers it; pyiceberg's standard configuration of the
catalog ARCHIVE_CATALOG_NAME (default archive) applies to it.
"""

from __future__ import annotations

import os
import re

import pyarrow.fs
from pyiceberg.catalog import Catalog, MetastoreCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.io import WAREHOUSE
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.metadata import TableMetadata, TableMetadataUtil
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

from ..errors import ObjectExistsError
from ..storage import Store

TABLES_PREFIX = "tables/"
NAMESPACE = "datasets"
_VERSION = re.compile(r"v([0-9]+)\.metadata\.json")


def location(store: Store, key: str) -> str:
    """Where key is, as Iceberg metadata records it: s3://bucket/prefix/key, or an absolute local path."""
    path = store.arrow_path(key)
    return f"s3://{path}" if store.url.startswith("s3://") else path


def key_of(store: Store, where: str) -> str | None:
    """The store key of a location (location's inverse), None if it is not in this store."""
    root = location(store, "x")[:-1]
    return where[len(root):] if where.startswith(root) else None


class StoreFileIO(PyArrowFileIO):
    """pyiceberg's pyarrow FileIO on the store's own filesystem: the endpoint and credentials the store resolved."""

    def __init__(self, store: Store):
        self._store = store
        super().__init__()

    def _initialize_fs(self, scheme: str, netloc: str | None = None) -> pyarrow.fs.FileSystem:
        if scheme in ("s3", "s3a", "s3n") or scheme == "file":
            return self._store.arrow_filesystem()
        return super()._initialize_fs(scheme, netloc)


class StoreCatalog(MetastoreCatalog):
    """An Iceberg catalog of one namespace (datasets), whose tables' metadata is committed write-once in the store."""

    def __init__(self, store: Store, name: str = "archive"):
        super().__init__(name, **{WAREHOUSE: location(store, TABLES_PREFIX.rstrip("/"))})
        self.store = store
        self.io = StoreFileIO(store)

    # -- tables

    def _metadata_dir(self, identifier) -> str:
        namespace, table = self._parts(identifier)
        return f"{TABLES_PREFIX}{namespace}/{table}/metadata/"

    def _parts(self, identifier) -> tuple[str, str]:
        namespace, table = self.identifier_to_database_and_table(identifier, NoSuchTableError)
        if namespace != NAMESPACE:
            raise NoSuchNamespaceError(f"namespace {namespace!r} is not in this store's catalog (only {NAMESPACE})")
        return namespace, table

    def _current(self, identifier) -> tuple[int, str] | None:
        """(N, key) of the table's current metadata file v<N>.metadata.json, None if there is none."""
        prefix = self._metadata_dir(identifier)
        found = [(int(m.group(1)), info.key) for info in self.store.list(prefix + "v")  # (not the Avro files)
                 if (m := _VERSION.fullmatch(info.key[len(prefix):]))]
        return max(found) if found else None

    def load_table(self, identifier) -> Table:
        current = self._current(identifier)
        if current is None:
            raise NoSuchTableError(f"no table {identifier} in {self.store.url}/{TABLES_PREFIX}")
        metadata = TableMetadataUtil.parse_raw(self.store.get_bytes(current[1]))
        return Table(identifier=self._parts(identifier), metadata=metadata,
                     metadata_location=location(self.store, current[1]), io=self.io, catalog=self)

    def _write(self, identifier, version: int, metadata: TableMetadata) -> str:
        """Commit metadata as v<version>: write-once, so a concurrent committer of the same version fails here."""
        key = f"{self._metadata_dir(identifier)}v{version}.metadata.json"
        try:
            self.store.put_bytes(key, metadata.model_dump_json().encode("utf-8"))
        except ObjectExistsError:
            raise CommitFailedException(f"{key} was committed by another process meanwhile") from None
        return location(self.store, key)

    def create_table(self, identifier, schema, location=None, partition_spec=UNPARTITIONED_PARTITION_SPEC,
                     sort_order=UNSORTED_SORT_ORDER, properties=None) -> Table:
        staged = self._create_staged_table(identifier, schema, location, partition_spec, sort_order,
                                           properties or {})
        if self._current(identifier) is not None:
            raise TableAlreadyExistsError(f"table {identifier} exists")
        try:
            where = self._write(identifier, 1, staged.metadata)
        except CommitFailedException:
            raise TableAlreadyExistsError(f"table {identifier} was created by another process meanwhile") from None
        return Table(identifier=staged.name(), metadata=staged.metadata, metadata_location=where, io=self.io,
                     catalog=self)

    def commit_table(self, table: Table, requirements, updates) -> CommitTableResponse:
        current = self._current(table.name())
        base = self.load_table(table.name()) if current else None
        staged = self._update_and_stage_table(base, table.name(), requirements, updates)
        if base is not None and staged.metadata == base.metadata:
            return CommitTableResponse(metadata=base.metadata, metadata_location=base.metadata_location)
        where = self._write(table.name(), (current[0] if current else 0) + 1, staged.metadata)
        return CommitTableResponse(metadata=staged.metadata, metadata_location=where)

    def _load_file_io(self, properties=None, location=None):
        return self.io

    def list_tables(self, namespace) -> list[tuple[str, str]]:
        if self.identifier_to_tuple(namespace) != (NAMESPACE,):
            raise NoSuchNamespaceError(f"namespace {namespace!r} is not in this store's catalog")
        prefix = f"{TABLES_PREFIX}{NAMESPACE}/"
        names = {info.key[len(prefix):].split("/", 1)[0] for info in self.store.list(prefix)}
        return sorted((NAMESPACE, name) for name in names)

    # -- the one namespace

    def list_namespaces(self, namespace=()) -> list[tuple[str, ...]]:
        return [(NAMESPACE,)] if not namespace else []

    def load_namespace_properties(self, namespace) -> dict[str, str]:
        if self.identifier_to_tuple(namespace) != (NAMESPACE,):
            raise NoSuchNamespaceError(f"namespace {namespace!r} is not in this store's catalog")
        return {}

    def create_namespace(self, namespace, properties=None) -> None:
        raise NamespaceAlreadyExistsError(f"this store's catalog has the one namespace {NAMESPACE}")

    # -- what a write-once catalog of committed runs does not do

    def _refuse(self, *_args, **_kwargs):
        raise NotImplementedError("the store's catalog only creates tables and appends to them (write-once)")

    register_table = drop_table = purge_table = rename_table = drop_namespace = _refuse
    update_namespace_properties = list_views = load_view = register_view = drop_view = view_exists = _refuse


def open_catalog(store: Store) -> Catalog:
    """The store's embedded catalog, or the catalog ARCHIVE_CATALOG_URI names (REST or SQL)."""
    uri = os.environ.get("ARCHIVE_CATALOG_URI")
    if not uri:
        return StoreCatalog(store)
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog(os.environ.get("ARCHIVE_CATALOG_NAME", "archive"), uri=uri)
    catalog.create_namespace_if_not_exists(NAMESPACE)
    return catalog
