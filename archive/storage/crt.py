"""Small conditional PUTs through the AWS Common Runtime's S3 client (awscrt, boto3's `crt` extra)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import threading
import time
from urllib.parse import quote, urlsplit

from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

try:
    from awscrt.auth import AwsCredentials, AwsCredentialsProvider
    from awscrt.http import HttpHeaders, HttpRequest
    from awscrt.io import ClientBootstrap, ClientTlsContext, DefaultHostResolver, EventLoopGroup, TlsContextOptions
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

# S3 answers the CRT turns into errors of its own, without their status or body.
_ANSWERS = {
    "AWS_ERROR_S3_SLOW_DOWN": (503, "SlowDown"),
    "AWS_ERROR_S3_INTERNAL_ERROR": (500, "InternalError"),
    "AWS_ERROR_S3_REQUEST_TIME_TOO_SKEWED": (403, "RequestTimeTooSkewed"),
}

_XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{0,1000})</Message>")


def available() -> bool:
    return S3Client is not None and os.environ.get("BOTO_DISABLE_CRT", "false").lower() != "true"


_TIMED_OUT = TimeoutError("no answer within the connect and read timeouts")


# One CRT client per process, endpoint and identity, on one event-loop thread: every store a worker
# unpickles (one a batch) would otherwise start a client of its own, with its own event-loop threads
# and new connections for each batch.
_shared_lock = threading.Lock()
_shared: dict = {"pid": None, "bootstrap": None, "clients": {}}
_MAX_CLIENTS = 4  # endpoints and identities (rotated credentials) kept at once; the oldest goes first


def _shared_client(scheme: str, netloc: str, region: str, credentials, ca_bundle: str | None, connect_timeout: float):
    current = credentials.get_frozen_credentials()
    tls = scheme == "https"
    # The endpoint too: the CRT's client keeps its connections by host name, whatever the port.
    key = (tls, netloc, region, ca_bundle if tls else None, connect_timeout, current.access_key,
           hashlib.sha256((current.secret_key or "").encode()).hexdigest(), current.token)
    with _shared_lock:
        if _shared["pid"] != os.getpid():  # not inherited across a fork: its threads are not
            _shared.update(pid=os.getpid(), bootstrap=None, clients={})
        client = _shared["clients"].get(key)
        if client is None:
            if _shared["bootstrap"] is None:
                loops = EventLoopGroup(1)
                _shared["bootstrap"] = ClientBootstrap(loops, DefaultHostResolver(loops))
            client = _new_client(_shared["bootstrap"], tls, region, credentials, ca_bundle, connect_timeout)
            clients = _shared["clients"]
            while len(clients) >= _MAX_CLIENTS:
                clients.pop(next(iter(clients)))
            clients[key] = client
        return client


def _new_client(bootstrap, tls: bool, region: str, credentials, ca_bundle: str | None, connect_timeout: float):
    def frozen():
        # Asked at each signature: refreshable credentials (a role, SSO) are refreshed by botocore.
        now = credentials.get_frozen_credentials()
        return AwsCredentials(now.access_key, now.secret_key, now.token or None)

    provider = AwsCredentialsProvider.new_delegate(frozen)
    options = None
    if tls and ca_bundle:
        context = TlsContextOptions()
        context.override_default_trust_store_from_path(ca_filepath=ca_bundle)
        options = ClientTlsContext(context).new_connection_options()
    return S3Client(
        bootstrap=bootstrap,
        region=region,
        tls_mode=S3RequestTlsMode.ENABLED if tls else S3RequestTlsMode.DISABLED,
        tls_connection_options=options,
        signing_config=create_default_s3_signing_config(region=region, credential_provider=provider),
        retry_config=S3RetryConfig(retry_mode=S3RetryMode.NONE),  # attempts are counted by CrtPut, as botocore does
        connect_timeout_ms=max(1, int(connect_timeout * 1000)),
    )


class CrtPut:
    """PutObject through the CRT S3 client of this process (shared by its threads and stores).

    botocore spends a lot of CPU on every request (its event hooks, request and
    response objects, http.client): for an archive of many small originals, more
    than the rest of the ingest's work on them. The CRT's S3 client signs and
    sends a request in C, on one event-loop thread a process, for a fraction of
    that CPU. The server's share is smaller too: the body goes with an unsigned
    payload hash, its SHA-256 in the signed x-amz-checksum-sha256 header
    instead, which the server checks against the bytes (a damaged body is
    refused as BadDigest all the same).

    Only PutObject of bodies up to SMALL_BODY goes this way; botocore sends the
    rest, and answers what this class does not decide: the endpoint (botocore's
    endpoint rules), the credentials (botocore's chain, asked at every signature,
    so refreshed credentials are used) and the CA bundle. Where the two would
    behave differently (a proxy in the environment, adaptive retries) or with
    BOTO_DISABLE_CRT=true, `for_client` returns None and the caller uses
    botocore for everything. Errors come back as the botocore exceptions the
    caller already handles (ClientError with the S3 error code,
    EndpointConnectionError, ConnectionClosedError, ReadTimeoutError), after as
    many attempts as botocore's standard retry mode makes, with its backoff.
    """

    def __init__(self, endpoint: str, base_path: str, region: str, credentials, *, connect_timeout: float,
                 read_timeout: float, max_attempts: int, ca_bundle: str | None = None):
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.host = parts.netloc
        self.base_path = base_path
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.max_attempts = max(1, max_attempts)

        self._client = _shared_client(parts.scheme, parts.netloc, region, credentials, ca_bundle, connect_timeout)

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
            status, headers, failure = self._send(path, body, checksum_sha256)
            if failure is None:
                return {
                    "ChecksumSHA256": headers.get("x-amz-checksum-sha256"),
                    "ETag": headers.get("etag"),
                    "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers, "RetryAttempts": attempt},
                }
            error = _client_error(failure, attempt)
            if error is None:  # no answer: no connection, a lost one, or none in time
                if last:
                    raise self._no_answer(failure)
                throttled = False
            else:
                code, status = error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]
                throttled = code in _THROTTLING_CODES or status == 429
                if last or not (throttled or code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS):
                    raise error
            _backoff(attempt, throttled)
        raise AssertionError("unreachable")

    def _no_answer(self, failure) -> Exception:
        """The botocore exception for a request that got no answer."""
        if failure is _TIMED_OUT:
            return ReadTimeoutError(endpoint_url=self.endpoint)
        if _NO_CONNECTION.search(getattr(failure, "name", "") or ""):
            return EndpointConnectionError(endpoint_url=self.endpoint, error=failure.name)
        return ConnectionClosedError(endpoint_url=self.endpoint)

    def _send(self, path: str, body: bytes, checksum_sha256: str) -> tuple[int, dict, Exception | None]:
        """One attempt: (status, headers, None), or (0, {}, what failed): an S3ResponseError for an error
        answer, another AwsCrtError for none, _TIMED_OUT.

        The CRT's exception is returned, never raised: raised, it would take a traceback through the
        caller's frames, kept by the request's future, which the frames keep in turn; a cycle through
        a native object that the garbage collector cannot see, which kept every batch that met one
        (a 412 for a duplicate is enough) in memory."""
        request = HttpRequest("PUT", path, HttpHeaders([
            ("Host", self.host),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/octet-stream"),
            ("If-None-Match", "*"),
            # As botocore sends it: moto answers with the checksum only then.
            ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ("x-amz-checksum-sha256", checksum_sha256),
        ]), io.BytesIO(body))
        answer: dict = {}

        def on_headers(status_code, headers, **_):
            answer["status"] = status_code
            answer["headers"] = {name.lower(): value for name, value in headers}

        pending = self._client.make_request(type=S3RequestType.DEFAULT, operation_name="PutObject",
                                            request=request, on_headers=on_headers)
        done = pending.finished_future
        # botocore's read timeout bounds each wait for the server; here the whole small request.
        wait = self.connect_timeout + self.read_timeout
        try:
            failure = done.exception(timeout=wait)
        except TimeoutError:
            pending.cancel()
            try:
                done.exception(timeout=wait)  # the cancellation's end
            except TimeoutError:
                pass
            return 0, {}, _TIMED_OUT
        if failure is not None:
            return 0, {}, failure
        return answer.get("status", 200), answer.get("headers", {}), None


def _backoff(attempt: int, throttled: bool) -> None:
    """botocore's standard backoff: rand(0, 1) * min(base * 2 ** attempt, 20 s); base 1 s when throttled, else 50 ms."""
    time.sleep(random.random() * min((1.0 if throttled else 0.05) * 2 ** attempt, _MAX_BACKOFF))


def _client_error(failure, attempt: int) -> ClientError | None:
    """The S3 error answer behind failure as botocore's ClientError, or None when there was no answer."""
    if failure is _TIMED_OUT:
        return None
    answered = _ANSWERS.get(getattr(failure, "name", None))
    if answered is not None:  # errors the CRT names itself, with no body handed on
        status, code = answered
        return ClientError({"Error": {"Code": code, "Message": failure.name},
                            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {},
                                                 "RetryAttempts": attempt}},
                           "PutObject")
    if not isinstance(failure, S3ResponseError):
        return None
    body = failure.body or b""
    code = _XML_CODE.search(body)
    message = _XML_MESSAGE.search(body)
    headers = {name.lower(): value for name, value in (failure.headers or [])}
    return ClientError(
        {
            "Error": {
                "Code": code.group(1).decode("utf-8", "replace") if code else str(failure.status_code),
                "Message": message.group(1).decode("utf-8", "replace") if message else "",
            },
            "ResponseMetadata": {"HTTPStatusCode": failure.status_code, "HTTPHeaders": headers,
                                 "RetryAttempts": attempt},
        },
        "PutObject",
    )
