"""Small conditional PUTs through the AWS Common Runtime (awscrt, boto3's `crt` extra).

botocore spends 1.2-1.5 ms of CPU on every request (its event hooks, request
and response objects, signing in Python, http.client): for an archive of
100,000 originals of ~13 KB that is more than the rest of the ingest's work on
them. The CRT's S3 client signs and sends a request in C on its own threads:
0.3-0.4 ms of CPU a PUT, and the server's share is smaller too, since the body
goes with an unsigned payload hash (its SHA-256 goes in the signed
x-amz-checksum-sha256 header instead, which the server checks against the
bytes: a damaged body is refused as BadDigest all the same).

Only PutObject of bodies up to SMALL_BODY goes this way; everything else stays
with botocore, which also answers everything this module cannot: the endpoint
(botocore resolves it), the credentials (botocore's chain, asked on every
signature so refreshed credentials are used; its CA bundle), and the cases where the two
would behave differently (a proxy, adaptive retries,
BOTO_DISABLE_CRT=true): then `CrtPut.for_client` returns None and the caller
uses botocore. Errors come back as the botocore exceptions the caller already
handles (ClientError with the S3 error code, EndpointConnectionError,
ConnectionClosedError, ReadTimeoutError), after as many attempts as botocore's
standard retry mode would make, with its backoff.
"""

from __future__ import annotations

import io
import os
import random
import re
import time
from urllib.parse import quote, urlsplit

from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

try:
    from awscrt.auth import AwsCredentials, AwsCredentialsProvider
    from awscrt.exceptions import AwsCrtError
    from awscrt.http import HttpHeaders, HttpRequest
    from awscrt.io import ClientTlsContext, TlsContextOptions
    from awscrt.s3 import (
        S3Client,
        S3RequestTlsMode,
        S3RequestType,
        S3ResponseError,
        S3RetryConfig,
        S3RetryMode,
        create_default_s3_signing_config,
    )
except ImportError:  # pragma: no cover - awscrt is a dependency; without it botocore does everything
    S3Client = None

# botocore's standard retry mode (botocore/retries/standard.py): what is retried, and how long it waits.
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
_THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException",
})
_MAX_BACKOFF = 20.0
# CRT errors meaning no connection was made (botocore: EndpointConnectionError); any other
# failure without an HTTP answer means the answer was lost (ConnectionClosedError).
_NO_CONNECTION = re.compile(r"CONNECTION_REFUSED|NO_ROUTE|NETWORK_DOWN|DNS|SOCKET_TIMEOUT|CONNECT_TIMEOUT|HOST")
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

_XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{0,1000})</Message>")


def available() -> bool:
    return S3Client is not None and os.environ.get("BOTO_DISABLE_CRT", "false").lower() != "true"


class _Timeout(Exception):
    pass


class CrtPut:
    """PutObject through one CRT S3 client, shared by the threads of one process."""

    def __init__(self, endpoint: str, base_path: str, region: str, credentials, *, connect_timeout: float,
                 read_timeout: float, max_attempts: int, ca_bundle: str | None = None):
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.host = parts.netloc
        self.base_path = base_path
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.max_attempts = max(1, max_attempts)

        def frozen():
            current = credentials.get_frozen_credentials()
            return AwsCredentials(current.access_key, current.secret_key, current.token or None)

        provider = AwsCredentialsProvider.new_delegate(frozen)
        tls = None
        if parts.scheme == "https" and ca_bundle:
            options = TlsContextOptions()
            options.override_default_trust_store_from_path(ca_filepath=ca_bundle)
            tls = ClientTlsContext(options).new_connection_options()
        self._client = S3Client(
            region=region,
            tls_mode=S3RequestTlsMode.ENABLED if parts.scheme == "https" else S3RequestTlsMode.DISABLED,
            tls_connection_options=tls,
            signing_config=create_default_s3_signing_config(region=region, credential_provider=provider),
            retry_config=S3RetryConfig(retry_mode=S3RetryMode.NONE),  # attempts are counted here, as botocore does
            connect_timeout_ms=max(1, int(connect_timeout * 1000)),
        )

    @classmethod
    def for_client(cls, client, session, bucket: str, *, connect_timeout: float, read_timeout: float,
                   retries: dict) -> "CrtPut | None":
        """A CrtPut to the endpoint botocore's client would send PutObject to, or None where botocore must send it."""
        if not available() or retries.get("mode") != "standard":
            return None
        if any(os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES):
            return None  # botocore honours proxies from the environment; the CRT client here would not
        credentials = session.get_credentials()
        if credentials is None:
            return None  # botocore raises NoCredentialsError, with its message
        # The URL botocore resolves for a PutObject (endpoint rules: path or virtual-host style, region, FIPS...).
        url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.path.endswith("/k"):
            return None
        return cls(f"{parts.scheme}://{parts.netloc}", parts.path[:-1], client.meta.region_name or "us-east-1",
                   credentials, connect_timeout=connect_timeout, read_timeout=read_timeout,
                   max_attempts=retries["total_max_attempts"], ca_bundle=session.get_config_variable("ca_bundle"))

    def put_object(self, key: str, body: bytes, checksum_sha256: str) -> dict:
        """PUT body at key if the key is free (If-None-Match: *); the response as botocore's put_object returns it."""
        path = self.base_path + quote(key, safe="/~")
        for attempt in range(self.max_attempts):
            last = attempt == self.max_attempts - 1
            try:
                status, headers = self._send(path, body, checksum_sha256)
            except S3ResponseError as exc:
                error = _client_error(exc, attempt)
                code = error.response["Error"]["Code"]
                throttled = code in _THROTTLING_CODES or exc.status_code == 429
                if last or not (throttled or code in _TRANSIENT_CODES or exc.status_code in _TRANSIENT_STATUS):
                    raise error from None
                _backoff(attempt, throttled)
                continue
            except _Timeout:
                if last:
                    raise ReadTimeoutError(endpoint_url=self.endpoint) from None
                _backoff(attempt, False)
                continue
            except AwsCrtError as exc:
                if last:
                    if _NO_CONNECTION.search(exc.name or ""):
                        raise EndpointConnectionError(endpoint_url=self.endpoint, error=exc.name) from None
                    raise ConnectionClosedError(endpoint_url=self.endpoint) from None
                _backoff(attempt, False)
                continue
            return {
                "ChecksumSHA256": headers.get("x-amz-checksum-sha256"),
                "ETag": headers.get("etag"),
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers, "RetryAttempts": attempt},
            }
        raise AssertionError("unreachable")

    def _send(self, path: str, body: bytes, checksum_sha256: str) -> tuple[int, dict]:
        """One attempt; raises S3ResponseError for an error answer, AwsCrtError for none, _Timeout."""
        request = HttpRequest("PUT", path, HttpHeaders([
            ("Host", self.host),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/octet-stream"),
            ("If-None-Match", "*"),
            ("x-amz-sdk-checksum-algorithm", "SHA256"),  # as botocore sends it (moto answers with the checksum only then)
            ("x-amz-checksum-sha256", checksum_sha256),
        ]), io.BytesIO(body))
        answer: dict = {}

        def on_headers(status_code, headers, **_):
            answer["status"] = status_code
            answer["headers"] = {name.lower(): value for name, value in headers}

        pending = self._client.make_request(type=S3RequestType.DEFAULT, operation_name="PutObject",
                                            request=request, on_headers=on_headers)
        try:
            # botocore's read timeout bounds each wait for the server; here the whole small request.
            pending.finished_future.result(timeout=self.connect_timeout + self.read_timeout)
        except TimeoutError:
            pending.cancel()
            try:
                pending.finished_future.result(timeout=self.connect_timeout + self.read_timeout)
            except Exception:
                pass
            raise _Timeout() from None
        return answer.get("status", 200), answer.get("headers", {})


def _backoff(attempt: int, throttled: bool) -> None:
    """botocore's standard backoff: rand(0, 1) * min(base * 2 ** attempt, 20 s); base 1 s when throttled, else 50 ms."""
    time.sleep(random.random() * min((1.0 if throttled else 0.05) * 2 ** attempt, _MAX_BACKOFF))


def _client_error(exc: "S3ResponseError", attempt: int) -> ClientError:
    body = exc.body or b""
    code = _XML_CODE.search(body)
    message = _XML_MESSAGE.search(body)
    headers = {name.lower(): value for name, value in (exc.headers or [])}
    return ClientError(
        {
            "Error": {
                "Code": code.group(1).decode("utf-8", "replace") if code else str(exc.status_code),
                "Message": message.group(1).decode("utf-8", "replace") if message else "",
            },
            "ResponseMetadata": {"HTTPStatusCode": exc.status_code, "HTTPHeaders": headers, "RetryAttempts": attempt},
        },
        "PutObject",
    )
