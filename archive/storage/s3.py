"""S3Store: the object store on S3 or an S3-compatible server, write-once through conditional writes."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterable, Iterator

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from ..errors import ArchiveError, ConfigurationError, ObjectNotFoundError, StoreError
from .base import ObjectInfo, PutResult, Store, validate_key
from .s3_client import S3Connection, parse_s3_url
from .s3_errors import archive_error, error_code, unusable_bucket
from .s3_read import ObjectStream
from .s3_retention import Retention, check_bucket
from .s3_write import DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, MIN_PART_SIZE, TMP_PREFIX, S3Writer

DEFAULT_LIST_PAGE_SIZE = 1000


class S3Store(Store):
    """Objects under s3://bucket/prefix, with the same keys as LocalStore.

    Write-once relies on the server: every write is conditional (If-None-Match: *),
    so two writers racing for a key cannot both win; check_writable() refuses a
    server that ignores the condition. The store hashes the bytes it sends, refuses
    them if they differ from the caller's sha256, and sends the SHA-256 along for
    S3 to verify before it stores anything (AWS does; moto does not). Reads ask
    for the stored checksum back and botocore verifies it as the body streams.

    Endpoint, region and credentials come from the standard AWS chain only. The
    store holds no secrets of its own: it pickles to (bucket, prefix, settings)
    and a worker that unpickles it resolves credentials from its own chain.

    Reads (get_bytes, open_read, size) accept any object key, so the store also
    serves as an ingest source over a prefix whose object names were not made
    by this package; writes accept only validate_key() keys.

    The work is shared out: S3Connection holds the client, S3Writer writes
    (s3_write), ObjectStream reads a body (s3_read), archive_error says what
    failed (s3_errors).
    """

    probe_before_put = False  # a HEAD costs a good part of a PUT: the conditional PUT asks instead
    concurrent_writes = 4  # (botocore's pool keeps 10 connections a client)
    concurrent_heads = 8  # sizes(): HEADs at once
    concurrent_reads = 4  # an audit's GETs at once

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        list_page_size: int = DEFAULT_LIST_PAGE_SIZE,
        connect_timeout: float = 10,
        read_timeout: float = 120,
        retention: Retention | None = None,
    ):
        bucket, prefix = parse_s3_url(f"s3://{bucket}/{prefix}")
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(f"S3 part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        if multipart_threshold < 1 or not 1 <= list_page_size <= 1000:
            raise ConfigurationError("S3 multipart threshold must be positive and list page size within 1..1000")
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.list_page_size = list_page_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retention = retention  # Object Lock on originals and manifests (s3_retention.py)
        self._connect()
        if retention is not None:
            check_bucket(self._client, bucket, retention)

    def _connect(self) -> None:
        """The store's working parts, never pickled: a worker that unpickles the store makes its own."""
        self._connection = S3Connection(self.bucket, connect_timeout=self.connect_timeout,
                                        read_timeout=self.read_timeout)
        self._writer = S3Writer(self, self._connection)

    @classmethod
    def from_url(cls, url: str, **settings) -> "S3Store":
        """The store at url, with the settings of the environment (settings_from_env) under those given."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **{**settings_from_env(), **settings})

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_connection", "_writer"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._connect()

    # -- plumbing -----------------------------------------------------------

    @property
    def _client(self):
        """botocore's S3 client, made on first use (and again after unpickling)."""
        return self._connection.client

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _read_key(self, key: str) -> str:
        if not isinstance(key, str) or not key or key.startswith("/"):
            raise StoreError(str(key), "not a valid object key")
        return self._full(key)

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self._full(key)}" if key else self.url

    def _error(self, exc: Exception, key: str | None, action: str) -> ArchiveError:
        """One-line ArchiveError for a botocore failure; names bucket and key, never credentials."""
        return archive_error(exc, key, action, where=self._where(key), bucket=self.bucket, url=self.url,
                             endpoint=self._connection.endpoint)

    # -- writes ---------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> PutResult:
        return self._writer.put_bytes(key, data, sha256=sha256)

    def put_file(self, key: str, path: str | os.PathLike, *, sha256: str | None = None) -> PutResult:
        return self._writer.put_file(key, path, sha256=sha256)

    # -- reads ----------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body:
            return body.read()

    def open_read(self, key: str) -> BinaryIO:
        full = self._read_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "GetObject") from exc
        return ObjectStream(response["Body"], self._connection, key, full, self._error)

    def size(self, key: str) -> int | None:
        full = self._read_key(key)
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])
        except ClientError as exc:
            if error_code(exc)[1] == 404:
                return None
            raise self._error(exc, key, "HeadObject") from exc
        except BotoCoreError as exc:
            raise self._error(exc, key, "HeadObject") from exc

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        keys = list(keys)
        if len(keys) < 2:
            return super().sizes(keys)
        with ThreadPoolExecutor(min(self.concurrent_heads, len(keys)), thread_name_prefix="store-head") as pool:
            return dict(zip(keys, pool.map(self.size, keys)))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for info in self._iter_objects(prefix):
            if not info.key.startswith(TMP_PREFIX):
                yield info

    def _iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        if prefix.startswith("/"):
            raise StoreError(prefix, "not a valid key prefix")
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": self.list_page_size}
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"][len(base) :], int(item["Size"]), item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix or None, "ListObjectsV2") from exc

    def delete(self, key: str) -> None:
        full = self._full(validate_key(key))
        # S3 deletes a missing key without complaint; LocalStore does not.
        if not self.exists(key):
            raise ObjectNotFoundError(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "DeleteObject") from exc

    # -- setup ----------------------------------------------------------------

    def check_writable(self) -> None:
        """Bucket reachable, writable, and enforcing If-None-Match (else write-once is a promise we cannot keep)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise self._error(exc, None, "HeadBucket") from None
        except (ClientError, BotoCoreError) as exc:
            raise unusable_bucket(exc, url=self.url, bucket=self.bucket, endpoint=self._connection.endpoint) from None
        self._writer.check_write_once()

    def arrow_filesystem(self):
        """pyarrow's S3FileSystem on the endpoint, region and credentials the AWS chain resolved for boto."""
        return self._connection.arrow_filesystem(lambda exc: self._error(exc, None, "resolving credentials"))

    def arrow_path(self, key: str) -> str:
        return f"{self.bucket}/{self._full(validate_key(key))}"


def settings_from_env() -> dict:
    """S3Store settings from the environment: timeouts from ARCHIVE_S3_CONNECT_TIMEOUT and ARCHIVE_S3_READ_TIMEOUT
    (seconds), e.g. for workers that must give up sooner; Object Lock retention of originals and manifests from
    ARCHIVE_S3_RETENTION (governance:DAYS or compliance:DAYS)."""
    settings: dict = {}
    for name, variable in (("connect_timeout", "ARCHIVE_S3_CONNECT_TIMEOUT"),
                           ("read_timeout", "ARCHIVE_S3_READ_TIMEOUT")):
        if os.environ.get(variable):
            try:
                settings[name] = float(os.environ[variable])
            except ValueError:
                value = os.environ[variable]
                raise ConfigurationError(f"{variable}={value!r} is not a number of seconds") from None
    if os.environ.get("ARCHIVE_S3_RETENTION"):
        settings["retention"] = Retention.parse(os.environ["ARCHIVE_S3_RETENTION"])
    return settings
