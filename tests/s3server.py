"""A real S3-compatible server (moto's, in a subprocess on 127.0.0.1) and the store fixtures built on it.

Tests talk HTTP to the server through the standard AWS chain: the session
fixture points AWS_ENDPOINT_URL and dummy credentials at it for the duration of
the session (undone afterwards), and `s3_server.env` gives the same variables
to subprocesses. Nothing mocks boto3 in-process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from archive.store import LocalStore, Store

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """moto_server in a subprocess. stop()/start() for outages (state is lost:
    moto keeps everything in memory); pause()/resume() to hang it with state kept;
    authenticating() to have every request's credentials rejected."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.workdir = workdir
        self.log_path = workdir / "moto-server.log"
        self.access_key = "AKIATESTARCHIVE00000"
        # Distinctive, so tests can assert it never shows up in any error text.
        self.secret_key = f"test-secret-{secrets.token_hex(12)}"
        self._process: subprocess.Popen | None = None
        self._client = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The AWS variables that point the standard chain at this server, and only at it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # Keep a developer's ~/.aws profiles and the instance metadata service out of it.
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        log = open(self.log_path, "ab")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto server not ready on {self.endpoint_url} after {timeout}s:\n{self._log_tail()}")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server: connections are accepted but never answered."""
        if self.running:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            os.kill(self._process.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def authenticating(self):
        """Make the server check signatures against its (empty) IAM: every key is unknown."""
        self._set_free_requests("0")
        try:
            yield self
        finally:
            self._set_free_requests("inf")

    def _set_free_requests(self, count: str) -> None:
        # moto authenticates every request after the first INITIAL_NO_AUTH_ACTION_COUNT.
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away by Flask
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def client(self):
        """A boto3 client for test set-up and inspection, independent of the code under test."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=REGION,
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The S3 server for the session, with the AWS environment pointed at it."""
    server = S3Server(tmp_path_factory.mktemp("s3server"))
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in list(os.environ):
                if name.startswith("AWS_"):
                    patch.delenv(name)
            for name, value in server.env.items():
                patch.setenv(name, value)
            yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket: yields s3://<bucket>/<prefix>."""
    return f"s3://{s3_server.create_bucket()}/archive"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    """A fresh, empty store: a LocalStore in tmp_path, or an S3Store on a fresh bucket."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    from archive.s3 import S3Store

    return S3Store.from_url(request.getfixturevalue("s3_bucket"))


@pytest.fixture(params=["local", "s3"])
def dest(request, tmp_path) -> str:
    """A fresh, empty DEST as a user gives it: a directory, or s3://bucket/prefix on the test server."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket")
