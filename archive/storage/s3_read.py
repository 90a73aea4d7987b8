"""Reading an S3 object: a stream that turns botocore's failures into StoreError and resumes a broken body."""

from __future__ import annotations

import hashlib
import io
from typing import Callable

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from ..errors import ArchiveError, StoreError
from .base import MiB
from .s3_client import S3Connection


class ObjectStream(io.RawIOBase):
    """An object's body: reads turn botocore failures (checksum, connection) into StoreError.

    botocore retries a request until its response head arrives, not the body
    after it: a connection dropped mid-body is this class's to retry. It asks
    for the object again (the stored checksum verified again, over all of it),
    checks that the bytes already handed out are the ones it gets back, and
    goes on from there; as many attempts as botocore makes for a request.
    """

    _BROKEN = (ResponseStreamingError, ReadTimeoutError, IncompleteReadError)

    def __init__(self, body, connection: S3Connection, key: str, full: str,
                 error: Callable[[Exception, str, str], ArchiveError]):
        super().__init__()
        self._body = body
        self._connection = connection
        self._error = error  # (exception, key, action) -> the ArchiveError to raise, as the store says it
        self._key = key
        self._full = full
        self._position = 0
        self._handed_out = hashlib.sha256()
        self._attempt = 1
        self._attempts = connection.retries()["total_max_attempts"]

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
                    raise self._error(exc, self._key, "GetObject") from exc
                self._attempt += 1
                continue
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, self._key, "GetObject") from exc
            self._position += len(data)
            self._handed_out.update(data)
            return data

    def _reopen(self) -> None:
        """The object again, read up to where the broken body stopped."""
        try:
            response = self._connection.client.get_object(
                Bucket=self._connection.bucket, Key=self._full, ChecksumMode="ENABLED"
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, self._key, "GetObject") from exc
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
