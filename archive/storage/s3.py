"""S3Store: the object store on S3 or an S3-compatible server, write-once through conditional writes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterable, Iterator
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config
from botocore.utils import determine_content_length
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import ArchiveError, ConfigurationError, ObjectExistsError, ObjectNotFoundError, StoreError
from ..fixity import open_for_reading
from .crt import CrtPut
from .base import ObjectInfo, PutResult, Store, validate_key

MiB = 1 << 20
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000
DEFAULT_LIST_PAGE_SIZE = 1000
TMP_PREFIX = ".tmp/"  # probes live here; list() hides it, as LocalStore hides its .tmp directory

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# Error codes that no retry can fix: they concern the bucket or the credentials,
# so every later call would fail the same way.
_CONFIGURATION_CODES = {
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied (check the credentials' permissions on the bucket)",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "AccountProblem": "the AWS account has a problem that prevents the operation",
    "InvalidAccessKeyId": "the access key id is not known to the server",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
    "TokenRefreshRequired": "the session token must be refreshed",
    "InvalidBucketName": "not a valid bucket name",
    "PermanentRedirect": "the bucket is served by another endpoint or region",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region",
    "NotImplemented": "the server does not implement this request (conditional writes or checksums?)",
}
# The server refused a body that does not match the SHA-256 sent with it (or its signed
# payload hash): the bytes were damaged on the way and nothing was stored, so the same
# bytes are sent again, up to SEND_ATTEMPTS times in all. (botocore does not retry a 400.)
_DAMAGED_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch"})
SEND_ATTEMPTS = 3


def _damaged(code: str) -> str:
    return (f"the server refused the bytes {SEND_ATTEMPTS} times as not matching their SHA-256 ({code}): "
            "they are damaged between here and the server (network, proxy); nothing was stored")


# Total attempts, the first one included: botocore's Config spells that total_max_attempts
# (its max_attempts counts retries only), as AWS_MAX_ATTEMPTS and pyarrow's max_attempts do.
_RETRIES = {"mode": "standard", "total_max_attempts": 5}

# botocore's data loader only caches the service model files it reads from disk.
# Sharing it takes a new session's client from ~150 ms to ~10 ms, which counts
# when every unpickled store on a worker makes its own session.
_loader_lock = threading.Lock()
_shared_loader = None


def _new_session() -> botocore.session.Session:
    global _shared_loader
    session = botocore.session.Session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
    return session


# Below this size a PUT's body goes with its headers at once: botocore otherwise
# sends "Expect: 100-continue" with every body and waits a round trip for the
# server's go-ahead, which only pays for bodies worth not sending twice.
SMALL_BODY = 1 * MiB


def _no_continue_for_small_bodies(request, **_) -> None:
    size = determine_content_length(request.body)
    if size is not None and size <= SMALL_BODY and "Expect" in request.headers:
        del request.headers["Expect"]  # not a signed header: the signature stands


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _hex_of_b64(value: str) -> str | None:
    """S3 reports SHA-256 checksums as base64; composite ones end in -<parts>."""
    try:
        raw = base64.b64decode(value.split("-", 1)[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(error.get("Code") or status), int(status)


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/prefix; the prefix has no leading or trailing '/'."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigurationError("an S3 location must look like s3://bucket/prefix")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Never echo the URL: whatever precedes '@' may be a secret.
        raise ConfigurationError(
            "credentials in an s3:// URL are not supported: use the standard AWS chain "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"s3://{parts.netloc}: an S3 location takes no query string or fragment")
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigurationError(f"s3://{bucket}: not a valid S3 bucket name")
    prefix = parts.path.strip("/")
    if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
        raise ConfigurationError(f"s3://{bucket}/{prefix}: the prefix has an empty, '.' or '..' segment")
    return bucket, prefix


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
    """

    probe_before_put = False  # a HEAD costs half a PUT (moto: 2.5 against 4.1 ms)
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
        self._lock = threading.Lock()
        self._session = None
        self._client_obj = None
        self._crt_put = None

    @classmethod
    def from_url(cls, url: str, **settings) -> "S3Store":
        """The store at url. Timeouts may also come from ARCHIVE_S3_CONNECT_TIMEOUT and
        ARCHIVE_S3_READ_TIMEOUT (seconds), e.g. for workers that must give up sooner."""
        for name, variable in (("connect_timeout", "ARCHIVE_S3_CONNECT_TIMEOUT"), ("read_timeout", "ARCHIVE_S3_READ_TIMEOUT")):
            if name not in settings and os.environ.get(variable):
                try:
                    settings[name] = float(os.environ[variable])
                except ValueError:
                    raise ConfigurationError(f"{variable}={os.environ[variable]!r} is not a number of seconds") from None
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **settings)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_lock", "_session", "_client_obj", "_crt_put"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._session = None
        self._client_obj = None
        self._crt_put = None

    # -- plumbing -----------------------------------------------------------

    @property
    def _client(self):
        # Created on first use (and again after unpickling): sessions are not
        # shareable between processes, clients are shareable between threads.
        # A plain botocore session resolves the same chain as boto3's.
        with self._lock:
            if self._client_obj is None:
                self._session = _new_session()
                self._client_obj = self._session.create_client(
                    "s3",
                    config=Config(
                        retries=self._retries(), connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
                    ),
                )
                self._client_obj.meta.events.register_last("before-sign.s3.PutObject", _no_continue_for_small_bodies)
                self._client_obj.meta.events.register_last("before-sign.s3.UploadPart", _no_continue_for_small_bodies)
                try:
                    self._crt_put = CrtPut.for_client(
                        self._client_obj, self._session, self.bucket, connect_timeout=self.connect_timeout,
                        read_timeout=self.read_timeout, retries=self._retries())
                except BotoCoreError:
                    self._crt_put = None  # botocore's own call will say what is wrong
            return self._client_obj

    def _retries(self) -> dict:
        """Standard retries, 5 attempts, unless AWS_MAX_ATTEMPTS / AWS_RETRY_MODE (or a profile) say otherwise."""
        attempts = self._session.get_config_variable("max_attempts")
        mode = self._session.get_config_variable("retry_mode")
        return {
            "mode": mode if mode in ("standard", "adaptive") else _RETRIES["mode"],
            "total_max_attempts": int(attempts) if attempts else _RETRIES["total_max_attempts"],
        }

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _read_key(self, key: str) -> str:
        if not isinstance(key, str) or not key or key.startswith("/"):
            raise StoreError(str(key), "not a valid object key")
        return self._full(key)

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self._full(key)}" if key else self.url

    def _endpoint(self) -> str:
        """The endpoint as scheme://host[:port]: no user info, path or query."""
        parts = urlsplit(self._client.meta.endpoint_url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"

    def _error(self, exc: Exception, key: str | None, action: str) -> ArchiveError:
        """One-line ArchiveError for a botocore failure; names bucket and key, never credentials.

        The server's own message is left out: it is not ours to vet (AWS puts
        principal ARNs in AccessDenied messages). The error code says enough.
        """
        where = self._where(key)
        if isinstance(exc, ClientError):
            code, status = _code(exc)
            if code in ("NoSuchKey", "404"):
                return ObjectNotFoundError(key or "")
            reason = _CONFIGURATION_CODES.get(code)
            if reason is None and status in (401, 403):
                reason = "access denied (check the credentials and their permissions)"
            if reason is not None:
                return ConfigurationError(f"{where}: {action} failed: {reason} ({code}, bucket {self.bucket!r})")
            return StoreError(key or self.url, f"{action} failed on {where}: S3 error {code} (HTTP {status})")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigurationError(
                f"{where}: no usable AWS credentials: set them through the standard AWS chain "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...)"
            )
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            what = "cannot reach" if isinstance(exc, BotoConnectionError) else "no answer from"
            return StoreError(
                key or self.url,
                f"{action} failed: {what} the S3 endpoint {self._endpoint()} ({type(exc).__name__}, after retries)",
            )
        if isinstance(exc, FlexibleChecksumError):
            return StoreError(key or self.url, f"{action}: the bytes read do not match the stored SHA-256 checksum")
        return StoreError(key or self.url, f"{action} failed on {where}: {type(exc).__name__}")

    # -- writes ---------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> PutResult:
        full = self._full(validate_key(key))
        digest = hashlib.sha256(data).digest()
        _check_claim(key, digest, sha256)
        response = self._put_object(key, full, data, digest)
        stored = self._stored_sha256(key, full, response.get("ChecksumSHA256"), digest)
        return PutResult(key=key, size=len(data), stored_sha256=stored)

    def put_file(self, key: str, path: str | os.PathLike, *, sha256: str | None = None) -> PutResult:
        validate_key(key)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if size < self.multipart_threshold:
            # Below the threshold one read into memory is the whole cost: the bytes
            # hashed are exactly the bytes sent, even if the file changes meanwhile.
            try:
                with open_for_reading(path) as src:
                    data = src.read()
            except OSError as exc:
                raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
            return self.put_bytes(key, data, sha256=sha256)
        return self._put_multipart(key, path, size, sha256)

    def _send_put(self, full: str, body: bytes, digest: bytes) -> dict:
        """One conditional PutObject (with its retries): small bodies through the CRT's client when there is one."""
        client = self._client
        if self._crt_put is not None and len(body) <= SMALL_BODY:
            return self._crt_put.put_object(full, body, _b64(digest))
        return client.put_object(
            Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*", ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(digest)
        )

    def _put_object(self, key: str, full: str, body: bytes, digest: bytes) -> dict:
        for attempt in range(SEND_ATTEMPTS):
            try:
                return self._send_put(full, body, digest)
            except ClientError as exc:
                code, status = _code(exc)
                if code == "PreconditionFailed" or status == 412:
                    landed = self._own_write_landed(exc, full, digest.hex())
                    if landed is not None:
                        return landed
                    raise ObjectExistsError(key) from None
                last = attempt == SEND_ATTEMPTS - 1
                if code == "ConditionalRequestConflict" and not last:
                    # A concurrent write is in flight; once it ends, a retry settles who won.
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if code == "ConditionalRequestConflict":
                    raise StoreError(key, "concurrent conditional writes kept conflicting (409); retry later") from None
                if code in _DAMAGED_CODES:
                    if not last:
                        continue
                    raise StoreError(key, _damaged(code)) from None
                raise self._error(exc, key, "PutObject") from exc
            except (BotoConnectionError, HTTPClientError) as exc:
                # Every attempt's answer was lost (reset, timeout), yet one of them may have
                # landed; a retry of the caller's would then meet its own object as taken.
                landed = self._holds(full, digest.hex())
                if landed is not None:
                    return landed
                raise self._error(exc, key, "PutObject") from exc
            except BotoCoreError as exc:
                raise self._error(exc, key, "PutObject") from exc
        raise AssertionError("unreachable")

    def _own_write_landed(self, exc: ClientError, full: str, sha256_hex: str) -> dict | None:
        """After a 412 on a retried request: did our own earlier attempt create the object?

        botocore retries a write whose answer was lost (timeout, reset); if the
        first attempt did land, the retry meets our own object. The same SHA-256
        means the key holds exactly these bytes, written once: success. (Another
        writer that stored identical bytes first is indistinguishable, and for
        write-once content the same outcome.)
        """
        if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return None
        return self._holds(full, sha256_hex)

    def _holds(self, full: str, sha256_hex: str) -> dict | None:
        """{"ChecksumSHA256": ...} when the server says the key holds bytes of this SHA-256, else None."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError):
            return None
        reported = head.get("ChecksumSHA256")
        if reported is None or _hex_of_b64(reported) != sha256_hex:
            return None
        return {"ChecksumSHA256": reported}

    def _stored_sha256(self, key: str, full: str, reported: str | None, digest: bytes) -> str | None:
        """The server's checksum as hex, after checking it is the one we sent."""
        if reported is None:
            return None  # a server without flexible checksums: nothing to compare
        stored = _hex_of_b64(reported)
        if stored != digest.hex():
            # The object exists only because our conditional write created it: take it
            # away again so the key does not hold bytes that do not match their hash.
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full)
            except (ClientError, BotoCoreError):
                pass  # the error below names the key; audit finds what stays
            raise StoreError(key, f"the server stored SHA-256 {reported!r}, expected {digest.hex()}")
        return stored

    def _part_size_for(self, size: int) -> int:
        part = self.part_size
        while -(-size // part) > MAX_PARTS:
            part *= 2
        return part

    def _put_multipart(self, key: str, path, size: int, claimed: str | None) -> PutResult:
        full = self._full(key)
        # Not the guard (the conditional complete is), just no point sending GBs
        # for a key that is already taken.
        if self.exists(key):
            raise ObjectExistsError(key)
        try:
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256")[
                "UploadId"
            ]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key, "CreateMultipartUpload") from exc
        whole = hashlib.sha256()
        part_digests: list[bytes] = []
        parts: list[dict] = []
        total = 0
        try:
            try:
                src = open_for_reading(path)
            except OSError as exc:
                raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
            with src:
                part_size = self._part_size_for(size)
                # One part in memory at a time, hashed as it is read and sent.
                while chunk := _read(src, part_size, key, path):
                    number = len(parts) + 1
                    digest = hashlib.sha256(chunk).digest()
                    whole.update(chunk)
                    response = self._upload_part(key, full, upload_id, number, chunk, digest)
                    reported = response.get("ChecksumSHA256")
                    if reported is not None and _hex_of_b64(reported) != digest.hex():
                        raise StoreError(key, f"the server stored part {number} with SHA-256 {reported!r}")
                    parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _b64(digest)})
                    part_digests.append(digest)
                    total += len(chunk)
                    del chunk
            # Checked before completing: a mismatch leaves nothing visible.
            _check_claim(key, whole.digest(), claimed)
            self._complete(key, full, upload_id, parts, part_digests)
        except BaseException:
            self._abort(full, upload_id)
            raise
        # S3 keeps no full-object SHA-256 for multipart objects (only a checksum of
        # the part checksums), so this is the hash of exactly the bytes whose parts
        # the server confirmed one by one.
        return PutResult(key=key, size=total, stored_sha256=whole.hexdigest())

    def _upload_part(self, key: str, full: str, upload_id: str, number: int, chunk: bytes, digest: bytes) -> dict:
        for attempt in range(SEND_ATTEMPTS):
            try:
                return self._client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
            except ClientError as exc:
                code, _ = _code(exc)
                if code in _DAMAGED_CODES:
                    if attempt < SEND_ATTEMPTS - 1:
                        continue  # a part sent again under its number replaces nothing that was kept
                    raise StoreError(key, f"part {number}: {_damaged(code)}") from None
                raise self._error(exc, key, f"UploadPart {number}") from exc
            except BotoCoreError as exc:
                raise self._error(exc, key, f"UploadPart {number}") from exc
        raise AssertionError("unreachable")

    def _complete(self, key: str, full: str, upload_id: str, parts: list[dict], part_digests: list[bytes]) -> None:
        composite = hashlib.sha256(b"".join(part_digests)).hexdigest()  # S3's checksum of the part checksums
        try:
            response = self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            code, status = _code(exc)
            if code == "PreconditionFailed" or status == 412:
                if self._own_write_landed(exc, full, composite):
                    return
                raise ObjectExistsError(key) from None
            if code == "ConditionalRequestConflict":
                # A concurrent write was in flight; whether it landed decides.
                if self.exists(key):
                    raise ObjectExistsError(key) from None
                raise StoreError(key, "a concurrent conditional write conflicted (409); retry the upload") from None
            raise self._error(exc, key, "CompleteMultipartUpload") from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            if self._holds(full, composite):
                return  # the answer was lost, the upload completed
            raise self._error(exc, key, "CompleteMultipartUpload") from exc
        except BotoCoreError as exc:
            raise self._error(exc, key, "CompleteMultipartUpload") from exc
        reported = response.get("ChecksumSHA256")
        if reported is not None and _hex_of_b64(reported) != composite:
            raise StoreError(key, f"the server's composite SHA-256 {reported!r} does not match the parts sent")

    def _abort(self, full: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # the original error matters more; a lifecycle rule reaps stray uploads

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
        return _ObjectStream(response["Body"], self, key, full)

    def size(self, key: str) -> int | None:
        full = self._read_key(key)
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])
        except ClientError as exc:
            if _code(exc)[1] == 404:
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
        except ClientError as exc:
            code, status = _code(exc)
            if status == 404 or code == "NoSuchBucket":
                raise ConfigurationError(f"DEST {self.url}: bucket {self.bucket!r} does not exist") from None
            if status in (401, 403):
                raise ConfigurationError(
                    f"DEST {self.url}: access to bucket {self.bucket!r} denied "
                    "(check the credentials and their permissions)"
                ) from None
            raise ConfigurationError(f"DEST {self.url}: bucket {self.bucket!r} unusable: S3 error {code}") from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise self._error(exc, None, "HeadBucket") from None
        except BotoCoreError as exc:
            raise ConfigurationError(
                f"DEST {self.url}: cannot reach the S3 endpoint {self._endpoint()} ({type(exc).__name__})"
            ) from None

        probe = f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        full = self._full(probe)
        try:
            try:
                self._put_object(probe, full, b"", hashlib.sha256(b"").digest())
            except ArchiveError as exc:
                raise ConfigurationError(f"DEST {self.url}: cannot write to bucket {self.bucket!r}: {exc}") from None
            try:
                # Other bytes than the first probe's: should the 412 be lost and retried,
                # the retry must not take the first probe for its own write.
                self._put_object(probe, full, b"second", hashlib.sha256(b"second").digest())
            except ObjectExistsError:
                pass  # the server enforced If-None-Match: write-once holds
            except ArchiveError as exc:
                raise ConfigurationError(f"DEST {self.url}: probe write failed: {exc}") from None
            else:
                raise ConfigurationError(
                    f"DEST {self.url}: the S3 server ignores If-None-Match, so write-once cannot be guaranteed"
                )
        finally:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full)
            except (ClientError, BotoCoreError):
                pass  # list() hides .tmp/, and an earlier error says what went wrong

    # -- pyarrow --------------------------------------------------------------

    def arrow_filesystem(self):
        """pyarrow's S3FileSystem on the endpoint, region and credentials the AWS chain resolved for boto."""
        import pyarrow.fs

        client = self._client
        options: dict = {
            "region": client.meta.region_name or "us-east-1",
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.read_timeout,
            "retry_strategy": pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=self._retries()["total_max_attempts"]),
        }
        try:
            credentials = self._session.get_credentials()
        except BotoCoreError as exc:
            raise self._error(exc, None, "resolving credentials") from None
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(access_key=frozen.access_key, secret_key=frozen.secret_key)
            if frozen.token:
                options["session_token"] = frozen.token
        endpoint = urlsplit(client.meta.endpoint_url)
        if not (endpoint.hostname or "").endswith(".amazonaws.com"):
            # A custom endpoint (MinIO, moto, Ceph...): pyarrow then uses path-style addressing.
            options.update(endpoint_override=endpoint.netloc.rpartition("@")[2], scheme=endpoint.scheme)
        ca_bundle = self._session.get_config_variable("ca_bundle")
        if ca_bundle:
            options["tls_ca_file_path"] = ca_bundle
        return pyarrow.fs.S3FileSystem(**options)

    def arrow_path(self, key: str) -> str:
        return f"{self.bucket}/{self._full(validate_key(key))}"


class _ObjectStream(io.RawIOBase):
    """An object's body: reads turn botocore failures (checksum, connection) into StoreError.

    botocore retries a request until its response head arrives, not the body
    after it: a connection dropped mid-body is this class's to retry. It asks
    for the object again (the stored checksum verified again, over all of it),
    checks that the bytes already handed out are the ones it gets back, and
    goes on from there; as many attempts as botocore makes for a request.
    """

    _BROKEN = (ResponseStreamingError, ReadTimeoutError, IncompleteReadError)

    def __init__(self, body, store: S3Store, key: str, full: str):
        super().__init__()
        self._body = body
        self._store = store
        self._key = key
        self._full = full
        self._position = 0
        self._handed_out = hashlib.sha256()
        self._attempt = 1
        self._attempts = store._retries()["total_max_attempts"]

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        amount = None if size is None or size < 0 else size
        while True:
            try:
                if self._body is None:
                    self._reopen()
                data = self._body.read(amount)
            except self._BROKEN as exc:
                self._drop_body()
                if self._attempt >= self._attempts:
                    raise self._store._error(exc, self._key, "GetObject") from exc
                self._attempt += 1
                continue
            except (BotoCoreError, ClientError) as exc:
                raise self._store._error(exc, self._key, "GetObject") from exc
            self._position += len(data)
            self._handed_out.update(data)
            return data

    def _reopen(self) -> None:
        """The object again, read up to where the broken body stopped."""
        try:
            response = self._store._client.get_object(Bucket=self._store.bucket, Key=self._full, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            raise self._store._error(exc, self._key, "GetObject") from exc
        self._body = response["Body"]
        again, left = hashlib.sha256(), self._position
        while left:
            chunk = self._body.read(min(left, MiB))
            if not chunk:
                raise StoreError(self._key, "GetObject: the object became shorter while it was being read")
            again.update(chunk)
            left -= len(chunk)
        if again.digest() != self._handed_out.digest():
            raise StoreError(self._key, "GetObject: the object changed while it was being read")

    def _drop_body(self) -> None:
        try:
            self._body.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped either way
            pass
        self._body = None

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and self._body is not None:
            self._body.close()
        super().close()


def _read(src, size: int, key: str, path) -> bytes:
    try:
        return src.read(size)
    except OSError as exc:
        raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc


def _check_claim(key: str, digest: bytes, claimed: str | None) -> None:
    if claimed is not None and claimed.lower() != digest.hex():
        raise StoreError(key, f"content hashes to SHA-256 {digest.hex()}, not the expected {claimed}")
