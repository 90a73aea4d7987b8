"""botocore's failures as the archive's errors: one line that names bucket and key, never credentials."""

from __future__ import annotations

from typing import Callable

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import ArchiveError, ConfigurationError, ObjectNotFoundError, StoreError

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


def error_code(exc: ClientError) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a ClientError; the status stands in for a missing code."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(error.get("Code") or status), int(status)


def archive_error(exc: Exception, key: str | None, action: str, *, where: str, bucket: str, url: str,
                  endpoint: Callable[[], str]) -> ArchiveError:
    """One-line ArchiveError for a botocore failure of action on key (where: its s3:// location).

    The server's own message is left out: it is not ours to vet (AWS puts
    principal ARNs in AccessDenied messages). The error code says enough.
    endpoint() is asked only when the endpoint could not be reached.
    """
    if isinstance(exc, ClientError):
        code, status = error_code(exc)
        if code in ("NoSuchKey", "404"):
            return ObjectNotFoundError(key or "")
        reason = _CONFIGURATION_CODES.get(code)
        if reason is None and status in (401, 403):
            reason = "access denied (check the credentials and their permissions)"
        if reason is not None:
            return ConfigurationError(f"{where}: {action} failed: {reason} ({code}, bucket {bucket!r})")
        return StoreError(key or url, f"{action} failed on {where}: S3 error {code} (HTTP {status})")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ConfigurationError(
            f"{where}: no usable AWS credentials: set them through the standard AWS chain "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...)"
        )
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        what = "cannot reach" if isinstance(exc, BotoConnectionError) else "no answer from"
        return StoreError(
            key or url,
            f"{action} failed: {what} the S3 endpoint {endpoint()} ({type(exc).__name__}, after retries)",
        )
    if isinstance(exc, FlexibleChecksumError):
        return StoreError(key or url, f"{action}: the bytes read do not match the stored SHA-256 checksum")
    return StoreError(key or url, f"{action} failed on {where}: {type(exc).__name__}")


def unusable_bucket(exc: ClientError | BotoCoreError, *, url: str, bucket: str,
                    endpoint: Callable[[], str]) -> ConfigurationError:
    """Why HeadBucket found the bucket of DEST url unusable (missing credentials aside: archive_error says those)."""
    if isinstance(exc, ClientError):
        code, status = error_code(exc)
        if status == 404 or code == "NoSuchBucket":
            return ConfigurationError(f"DEST {url}: bucket {bucket!r} does not exist")
        if status in (401, 403):
            return ConfigurationError(
                f"DEST {url}: access to bucket {bucket!r} denied (check the credentials and their permissions)"
            )
        return ConfigurationError(f"DEST {url}: bucket {bucket!r} unusable: S3 error {code}")
    return ConfigurationError(f"DEST {url}: cannot reach the S3 endpoint {endpoint()} ({type(exc).__name__})")
