"""Writes to S3: conditional PUTs, bodies the server found damaged sent again, large files in parts."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
import uuid
import weakref
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import ArchiveError, ConfigurationError, ObjectExistsError, StoreError
from ..fixity import open_for_reading
from .base import MiB, PutResult, validate_key
from .s3_client import SMALL_BODY, S3Connection
from .s3_errors import error_code

if TYPE_CHECKING:
    from .s3 import S3Store

DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000
TMP_PREFIX = ".tmp/"  # check_write_once's probes live here; S3Store.list() hides it, as LocalStore hides its .tmp

# The server refused a body that does not match the SHA-256 sent with it (or its signed
# payload hash): the bytes were damaged on the way and nothing was stored, so the same
# bytes are sent again, up to SEND_ATTEMPTS times in all. (botocore does not retry a 400.)
_DAMAGED_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch"})
SEND_ATTEMPTS = 3


def _damaged(code: str) -> str:
    return (f"the server refused the bytes {SEND_ATTEMPTS} times as not matching their SHA-256 ({code}): "
            "they are damaged between here and the server (network, proxy); nothing was stored")


class S3Writer:
    """A store's writes: each one conditional (If-None-Match: *), so two writers racing for a key cannot both win.

    The writer hashes the bytes it sends, refuses them if they differ from the
    caller's sha256, and sends the SHA-256 along for S3 to verify before it
    stores anything. Files from the store's multipart_threshold up go in parts
    (S3Multipart). Only validate_key() keys are written.
    """

    def __init__(self, store: S3Store, connection: S3Connection):
        # Weak: the store owns its writer, and a cycle would keep the store's client (and its
        # connections) alive until the garbage collector runs.
        self._store = weakref.proxy(store)
        self._connection = connection
        self._multipart = S3Multipart(self._store, connection)

    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> PutResult:
        full = self._store._full(validate_key(key))
        digest = hashlib.sha256(data).digest()
        _check_claim(key, digest, sha256)
        response = self.put_object(key, full, data, digest)
        stored = self._stored_sha256(key, full, response.get("ChecksumSHA256"), digest)
        return PutResult(key=key, size=len(data), stored_sha256=stored)

    def put_file(self, key: str, path: str | os.PathLike, *, sha256: str | None = None) -> PutResult:
        validate_key(key)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if size < self._store.multipart_threshold:
            # Below the threshold one read into memory is the whole cost: the bytes
            # hashed are exactly the bytes sent, even if the file changes meanwhile.
            try:
                with open_for_reading(path) as src:
                    data = src.read()
            except OSError as exc:
                raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
            return self._store.put_bytes(key, data, sha256=sha256)
        return self._multipart.put(key, path, size, sha256)

    def _send_put(self, key: str, full: str, body: bytes, digest: bytes) -> dict:
        """One conditional PutObject (with its retries): small bodies through the CRT's client when there is one,
        but for a key kept under Object Lock retention (its headers go through botocore's)."""
        client = self._connection.client
        crt_put = self._connection.crt_put
        locked = _lock_arguments(self._store, key)
        if crt_put is not None and len(body) <= SMALL_BODY and not locked:
            return crt_put.put_object(full, body, _b64(digest))
        return client.put_object(
            Bucket=self._store.bucket, Key=full, Body=body, IfNoneMatch="*", ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(digest), **locked
        )

    def put_object(self, key: str, full: str, body: bytes, digest: bytes) -> dict:
        """PUT body at full (key's object name) if nothing is there: the server's response, or an ArchiveError."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                return self._send_put(key, full, body, digest)
            except ClientError as exc:
                code, status = error_code(exc)
                if code == "PreconditionFailed" or status == 412:
                    landed = _own_write_landed(self._connection, exc, full, digest.hex())
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
                raise self._store._error(exc, key, "PutObject") from exc
            except (BotoConnectionError, HTTPClientError) as exc:
                # Every attempt's answer was lost (reset, timeout), yet one of them may have
                # landed; a retry of the caller's would then meet its own object as taken.
                landed = _holds(self._connection, full, digest.hex())
                if landed is not None:
                    return landed
                raise self._store._error(exc, key, "PutObject") from exc
            except BotoCoreError as exc:
                raise self._store._error(exc, key, "PutObject") from exc
        raise AssertionError("unreachable")

    def _stored_sha256(self, key: str, full: str, reported: str | None, digest: bytes) -> str | None:
        """The server's checksum as hex, after checking it is the one we sent."""
        if reported is None:
            return None  # a server without flexible checksums: nothing to compare
        stored = _hex_of_b64(reported)
        if stored != digest.hex():
            # The object exists only because our conditional write created it: take it
            # away again so the key does not hold bytes that do not match their hash.
            try:
                self._connection.client.delete_object(Bucket=self._store.bucket, Key=full)
            except (ClientError, BotoCoreError):
                pass  # the error below names the key; audit finds what stays
            raise StoreError(key, f"the server stored SHA-256 {reported!r}, expected {digest.hex()}")
        return stored


    def check_write_once(self) -> None:
        """Raise ConfigurationError unless the server refuses a second write to a key (If-None-Match)."""
        store = self._store
        probe = f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        full = store._full(probe)
        try:
            try:
                self.put_object(probe, full, b"", hashlib.sha256(b"").digest())
            except ArchiveError as exc:
                raise ConfigurationError(f"DEST {store.url}: cannot write to bucket {store.bucket!r}: {exc}") from None
            try:
                # Other bytes than the first probe's: should the 412 be lost and retried,
                # the retry must not take the first probe for its own write.
                self.put_object(probe, full, b"second", hashlib.sha256(b"second").digest())
            except ObjectExistsError:
                pass  # the server enforced If-None-Match: write-once holds
            except ArchiveError as exc:
                raise ConfigurationError(f"DEST {store.url}: probe write failed: {exc}") from None
            else:
                raise ConfigurationError(
                    f"DEST {store.url}: the S3 server ignores If-None-Match, so write-once cannot be guaranteed"
                )
        finally:
            try:
                self._connection.client.delete_object(Bucket=store.bucket, Key=full)
            except (ClientError, BotoCoreError):
                pass  # list() hides .tmp/, and an earlier error says what went wrong


class S3Multipart:
    """Files in parts, one part in memory at a time; the conditional complete keeps the write once-only."""

    def __init__(self, store: S3Store, connection: S3Connection):
        self._store = store  # (its writer's weak proxy of the store)
        self._connection = connection

    def _part_size_for(self, size: int) -> int:
        part = self._store.part_size
        while -(-size // part) > MAX_PARTS:
            part *= 2
        return part

    def put(self, key: str, path, size: int, claimed: str | None) -> PutResult:
        """Upload the file at path (size bytes) to key, its SHA-256 checked against claimed before it completes."""
        store = self._store
        full = store._full(key)
        # Not the guard (the conditional complete is), just no point sending GBs
        # for a key that is already taken.
        if store.exists(key):
            raise ObjectExistsError(key)
        try:
            upload_id = self._connection.client.create_multipart_upload(
                Bucket=store.bucket, Key=full, ChecksumAlgorithm="SHA256", **_lock_arguments(store, key)
            )["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise store._error(exc, key, "CreateMultipartUpload") from exc
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
                return self._connection.client.upload_part(
                    Bucket=self._store.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
            except ClientError as exc:
                code, _ = error_code(exc)
                if code in _DAMAGED_CODES:
                    if attempt < SEND_ATTEMPTS - 1:
                        continue  # a part sent again under its number replaces nothing that was kept
                    raise StoreError(key, f"part {number}: {_damaged(code)}") from None
                raise self._store._error(exc, key, f"UploadPart {number}") from exc
            except BotoCoreError as exc:
                raise self._store._error(exc, key, f"UploadPart {number}") from exc
        raise AssertionError("unreachable")

    def _complete(self, key: str, full: str, upload_id: str, parts: list[dict], part_digests: list[bytes]) -> None:
        composite = hashlib.sha256(b"".join(part_digests)).hexdigest()  # S3's checksum of the part checksums
        try:
            response = self._connection.client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            code, status = error_code(exc)
            if code == "PreconditionFailed" or status == 412:
                if _own_write_landed(self._connection, exc, full, composite):
                    return
                raise ObjectExistsError(key) from None
            if code == "ConditionalRequestConflict":
                # A concurrent write was in flight; whether it landed decides.
                if self._store.exists(key):
                    raise ObjectExistsError(key) from None
                raise StoreError(key, "a concurrent conditional write conflicted (409); retry the upload") from None
            raise self._store._error(exc, key, "CompleteMultipartUpload") from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            if _holds(self._connection, full, composite):
                return  # the answer was lost, the upload completed
            raise self._store._error(exc, key, "CompleteMultipartUpload") from exc
        except BotoCoreError as exc:
            raise self._store._error(exc, key, "CompleteMultipartUpload") from exc
        reported = response.get("ChecksumSHA256")
        if reported is not None and _hex_of_b64(reported) != composite:
            raise StoreError(key, f"the server's composite SHA-256 {reported!r} does not match the parts sent")

    def _abort(self, full: str, upload_id: str) -> None:
        try:
            self._connection.client.abort_multipart_upload(Bucket=self._store.bucket, Key=full, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # the original error matters more; a lifecycle rule reaps stray uploads


def _own_write_landed(connection: S3Connection, exc: ClientError, full: str, sha256_hex: str) -> dict | None:
    """After a 412 on a retried request: did our own earlier attempt create the object?

    botocore retries a write whose answer was lost (timeout, reset); if the
    first attempt did land, the retry meets our own object. The same SHA-256
    means the key holds exactly these bytes, written once: success. (Another
    writer that stored identical bytes first is indistinguishable, and for
    write-once content the same outcome.)
    """
    if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
        return None
    return _holds(connection, full, sha256_hex)


def _holds(connection: S3Connection, full: str, sha256_hex: str) -> dict | None:
    """{"ChecksumSHA256": ...} when the server says the key holds bytes of this SHA-256, else None."""
    try:
        head = connection.client.head_object(Bucket=connection.bucket, Key=full, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError):
        return None
    reported = head.get("ChecksumSHA256")
    if reported is None or _hex_of_b64(reported) != sha256_hex:
        return None
    return {"ChecksumSHA256": reported}


def _lock_arguments(store, key: str) -> dict:
    """Object Lock retention for key, when the store keeps it (originals and manifests): else nothing."""
    retention = getattr(store, "retention", None)
    return retention.put_arguments() if retention is not None and retention.applies_to(key) else {}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _hex_of_b64(value: str) -> str | None:
    """S3 reports SHA-256 checksums as base64; composite ones end in -<parts>."""
    try:
        raw = base64.b64decode(value.split("-", 1)[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _read(src, size: int, key: str, path) -> bytes:
    try:
        return src.read(size)
    except OSError as exc:
        raise StoreError(key, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc


def _check_claim(key: str, digest: bytes, claimed: str | None) -> None:
    if claimed is not None and claimed.lower() != digest.hex():
        raise StoreError(key, f"content hashes to SHA-256 {digest.hex()}, not the expected {claimed}")
