"""The connection to S3: s3:// URLs, botocore's session, client and retries, the CRT's PUT and pyarrow's filesystem."""

from __future__ import annotations

import re
import threading
from typing import Callable
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from botocore.utils import determine_content_length

from ..errors import ConfigurationError
from .base import MiB
from .crt import CrtPut

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# Total attempts, the first one included: botocore's Config spells that total_max_attempts
# (its max_attempts counts retries only), as AWS_MAX_ATTEMPTS and pyarrow's max_attempts do.
_RETRIES = {"mode": "standard", "total_max_attempts": 5}

# Below this size a PUT's body goes with its headers at once: botocore otherwise
# sends "Expect: 100-continue" with every body and waits a round trip for the
# server's go-ahead, which only pays for bodies worth not sending twice.
SMALL_BODY = 1 * MiB

# botocore's data loader only caches the service model files it reads from disk.
# Sharing it makes a new session's client much cheaper, which counts when every
# unpickled store on a worker makes its own session.
_loader_lock = threading.Lock()
_shared_loader = None


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


def _new_session() -> botocore.session.Session:
    global _shared_loader
    session = botocore.session.Session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
    return session


def _no_continue_for_small_bodies(request, **_) -> None:
    size = determine_content_length(request.body)
    if size is not None and size <= SMALL_BODY and "Expect" in request.headers:
        del request.headers["Expect"]  # not a signed header: the signature stands


class S3Connection:
    """A store's botocore session and client, and the CRT's PUT when there is one: made on first use.

    Never pickled (a store makes a new one when unpickled): sessions are not
    shareable between processes, clients are shareable between threads.
    Endpoint, region and credentials come from the standard AWS chain only;
    a plain botocore session resolves the same chain as boto3's.
    """

    def __init__(self, bucket: str, *, connect_timeout: float, read_timeout: float):
        self.bucket = bucket
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._lock = threading.Lock()
        self.session = None
        self._client = None
        self.crt_put: CrtPut | None = None  # set with the client

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self.session = _new_session()
                self._client = self.session.create_client(
                    "s3",
                    config=Config(
                        retries=self.retries(), connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
                    ),
                )
                self._client.meta.events.register_last("before-sign.s3.PutObject", _no_continue_for_small_bodies)
                self._client.meta.events.register_last("before-sign.s3.UploadPart", _no_continue_for_small_bodies)
                try:
                    self.crt_put = CrtPut.for_client(
                        self._client, self.session, self.bucket, connect_timeout=self.connect_timeout,
                        read_timeout=self.read_timeout, retries=self.retries())
                except BotoCoreError:
                    self.crt_put = None  # botocore's own call will say what is wrong
            return self._client

    def retries(self) -> dict:
        """Standard retries, 5 attempts, unless AWS_MAX_ATTEMPTS / AWS_RETRY_MODE (or a profile) say otherwise.

        Asks the session, so only once the client is made."""
        attempts = self.session.get_config_variable("max_attempts")
        mode = self.session.get_config_variable("retry_mode")
        return {
            "mode": mode if mode in ("standard", "adaptive") else _RETRIES["mode"],
            "total_max_attempts": int(attempts) if attempts else _RETRIES["total_max_attempts"],
        }

    def endpoint(self) -> str:
        """The endpoint as scheme://host[:port]: no user info, path or query."""
        parts = urlsplit(self.client.meta.endpoint_url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"

    def arrow_filesystem(self, credentials_error: Callable[[BotoCoreError], Exception]):
        """pyarrow's S3FileSystem on the endpoint, region and credentials the AWS chain resolved for boto.

        credentials_error(exc) is what to raise when the credentials cannot be resolved."""
        import pyarrow.fs

        client = self.client
        options: dict = {
            "region": client.meta.region_name or "us-east-1",
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.read_timeout,
            "retry_strategy": pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=self.retries()["total_max_attempts"]),
        }
        try:
            credentials = self.session.get_credentials()
        except BotoCoreError as exc:
            raise credentials_error(exc) from None
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(access_key=frozen.access_key, secret_key=frozen.secret_key)
            if frozen.token:
                options["session_token"] = frozen.token
        endpoint = urlsplit(client.meta.endpoint_url)
        if not (endpoint.hostname or "").endswith(".amazonaws.com"):
            # A custom endpoint (MinIO, moto, Ceph...): pyarrow then uses path-style addressing.
            options.update(endpoint_override=endpoint.netloc.rpartition("@")[2], scheme=endpoint.scheme)
        ca_bundle = self.session.get_config_variable("ca_bundle")
        if ca_bundle:
            options["tls_ca_file_path"] = ca_bundle
        return pyarrow.fs.S3FileSystem(**options)
