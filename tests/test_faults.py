"""Storage faults through a real proxy in front of the S3 server: throttling and resets are retried and the run
commits the same datasets as a clean run; a permanent fault fails it in bounded time, in one line, with nothing
committed."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time

import pytest

from archive.errors import ConfigurationError, StoreError
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import MiB, S3Store, object_key, open_store
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.flow

# Attempts per request (AWS_MAX_ATTEMPTS) in these tests: botocore's backoff stays
# short, and a burst of 8 faults outlasts one request's attempts, so the Prefect
# task retries (3 runs of a batch: 9 attempts in all) are exercised too.
ATTEMPTS = 3
BURST = 8
# The faults start once the run is under way: its first original is stored.
FIRST_ORIGINAL = r"^PUT .*/objects/sha256/"


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """The fault proxy, with the AWS chain of this process pointed at it."""
    with FaultProxy(s3_server.host, s3_server.port, seed=6) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(ATTEMPTS))
        yield proxy


@pytest.fixture(scope="module")
def s3_source(s3_server, seeds_dir) -> str:
    bucket = s3_server.create_bucket()
    for path in sorted(seeds_dir.iterdir()):
        s3_server.client().put_object(Bucket=bucket, Key=f"incoming/{path.name}", Body=path.read_bytes())
    return f"s3://{bucket}/incoming"


@pytest.fixture(scope="module")
def clean_run(prefect_harness, s3_server, s3_source) -> dict:
    """The datasets of a fault-free run of the S3 source, straight to the server."""
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"
    result = ingest(s3_source, dest=dest, workers=1)
    return {"counts": result["counts"], **_datasets(dest)}


def _datasets(dest: str) -> dict:
    """What a run published, without what differs between any two runs (run id, times)."""
    docs = open_dataset(dest, "documents").to_table().drop_columns(["run_id", "ingested_at"]).to_pylist()
    files = open_dataset(dest, "files").to_table().drop_columns(["run_id", "seen_at"]).to_pylist()
    return {"documents": sorted(docs, key=lambda d: d["doc_id"]), "files": sorted(files, key=lambda f: f["path"])}


def _direct(monkeypatch, s3_server) -> None:
    """Point this process at the server itself again, bypassing the proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)


def _committed_run(dest: str, clean_run: dict, result: dict) -> None:
    """One manifest, the datasets a clean run publishes, and a fixity audit that finds every object intact."""
    from archive_flows.audit import fixity_audit

    (manifest,) = committed_manifests(open_store(dest))
    assert manifest["run_id"] == result["run_id"]
    assert result["counts"] == clean_run["counts"] == {"files": 5, "documents": 5, "duplicates": 0, "quarantined": 0,
                                                       "skipped": 0, "updated": 0}
    assert _datasets(dest) == {"documents": clean_run["documents"], "files": clean_run["files"]}
    report = fixity_audit(dest=dest)
    assert report["problems"] == []
    assert report["checked"]["objects"] == 5 and report["checked"]["parts"] == len(manifest["parts"])


def test_a_burst_of_503_slowdown_on_puts_and_gets_is_retried_and_the_run_equals_a_clean_one(
        proxy, clean_run, s3_source, s3_server, monkeypatch):
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"
    # (the faults take turns, GET and PUT: the source's reads and the store's writes run in different
    # threads, and a share drawn at random could fall on one method only in some runs)
    proxy.inject("slowdown", count=BURST, alternate=True, methods=("PUT", "GET"), after=FIRST_ORIGINAL)
    result = ingest(s3_source, dest=dest, workers=1)

    assert proxy.injected == {"slowdown": BURST} and proxy.remaining == 0
    faulted = [method for method, _, action in proxy.log if action == "slowdown"]
    assert set(faulted) == {"PUT", "GET"}  # the source's objects and the store's writes both
    assert all(a != b for a, b in zip(faulted, faulted[1:]))
    _direct(monkeypatch, s3_server)
    _committed_run(dest, clean_run, result)


def test_new_originals_cost_one_put_each_and_known_ones_one_head_each(proxy, clean_run, s3_source, s3_server):
    """No HEAD before the write of an original that is new (the conditional PUT tells if it exists);
    on a re-run, one HEAD per committed original and no upload."""
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"

    def originals(method: str) -> int:
        return sum(1 for m, target, _ in proxy.log if m == method and "/archive/objects/sha256/" in target)

    ingest(s3_source, dest=dest, workers=1, reuse=False)
    assert (originals("PUT"), originals("HEAD")) == (5, 0)
    proxy.log.clear()
    again = ingest(s3_source, dest=dest, workers=1, reuse=False)
    assert again["counts"]["duplicates"] == 5
    assert (originals("PUT"), originals("HEAD")) == (0, 5)


def test_a_batch_sends_originals_to_s3_several_at_a_time_and_records_each(proxy, clean_run, s3_source, s3_server,
                                                                        monkeypatch):
    """The PUTs of a batch's originals overlap: the proxy holds each until a second one arrives."""
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"
    proxy.gate(r"^PUT .*/archive/objects/sha256/", want=2, timeout=2)
    result = ingest(s3_source, dest=dest, workers=1, reuse=False)

    assert proxy.gate_opened >= 2 and proxy.gate_timed_out <= 1  # (an odd last one waits alone)
    _direct(monkeypatch, s3_server)
    _committed_run(dest, clean_run, result)
    events = [e for e in open_dataset(dest, "events").to_table().to_pylist()
              if e["event_type"] == "ingestion" and e["object_sha256"]]
    assert sorted(e["object_sha256"] for e in events) == sorted(d["doc_id"] for d in clean_run["documents"])
    assert all(e["detail"].startswith(f"original stored at objects/sha256/{e['object_sha256'][:2]}/") for e in events)


def test_an_s3_source_is_read_several_objects_at_a_time_and_every_object_becomes_what_a_clean_run_made(
        proxy, clean_run, s3_source, s3_server, monkeypatch):
    """Each GET of a source object waits a round trip: a batch asks for the next ones ahead of their turn.
    The proxy holds each GET of a source object until a second one arrives."""
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"
    reads = r"^GET .*/incoming/[^?]+$"
    proxy.gate(reads, want=2, timeout=2)
    result = ingest(s3_source, dest=dest, workers=1, reuse=False)

    held = [target for method, target, _ in proxy.log if re.search(reads, f"{method} {target}")]
    assert len(held) == 5
    assert proxy.gate_opened == 2 and proxy.gate_timed_out == 1  # (the odd one out waits alone)
    _direct(monkeypatch, s3_server)
    _committed_run(dest, clean_run, result)


def test_an_audit_reads_several_originals_at_a_time_and_names_the_one_that_changed(proxy, s3_source, s3_server):
    """Each GET of an original waits a round trip: an audit on S3 reads and hashes a few at once, in key
    order all the same. The proxy holds each GET of an original until a second one arrives."""
    from archive_flows.audit import fixity_audit
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"
    ingest(s3_source, dest=dest, workers=1, reuse=False)
    bucket = dest[5:].split("/", 1)[0]
    changed = sorted(o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=bucket, Prefix="archive/objects/")["Contents"])[2]
    s3_server.client().put_object(Bucket=bucket, Key=changed, Body=b"bit rot")  # (straight to the server)
    proxy.gate(r"^GET .*/archive/objects/sha256/", want=2, timeout=2)
    report = fixity_audit(dest=dest, workers=1)

    assert report["checked"]["objects"] == 5
    assert [(p["kind"], p["key"]) for p in report["problems"]] == [("changed", changed.removeprefix("archive/"))]
    assert proxy.gate_opened == 2 and proxy.gate_timed_out == 1  # (the odd one out waits alone)


def test_a_rerun_looks_for_known_originals_and_its_commit_checks_its_parts_several_at_a_time(proxy, s3_source,
                                                                                             s3_server, monkeypatch):
    """On S3 each look is a round trip: a re-run's HEADs of the originals it expects, and the commit's HEADs
    of its parts (under the commit lock), overlap. The proxy holds each such HEAD until a second one arrives.
    (The Iceberg tables follow the commit, reading each new part's footer through pyiceberg: other looks, left out
    here.)"""
    from archive_flows.ingest import ingest

    monkeypatch.setenv("ARCHIVE_TABLES", "off")

    dest = f"s3://{s3_server.create_bucket()}/archive"
    ingest(s3_source, dest=dest, workers=1, reuse=False)
    proxy.log.clear()
    looks = r"^HEAD .*/archive/(objects/sha256|datasets/(events|files))/"  # (a re-run publishes no documents)
    proxy.gate(looks, want=2, timeout=2)
    again = ingest(s3_source, dest=dest, workers=1, reuse=False)

    assert again["counts"]["duplicates"] == 5
    held = [target for method, target, _ in proxy.log if re.search(looks, f"{method} {target}")]
    originals = sum(1 for target in held if "/objects/sha256/" in target)
    parts = len(held) - originals
    assert originals == 5 and parts >= 2
    # One at a time, every one would wait out the gate alone; the odd one out of each phase does.
    assert proxy.gate_opened == originals // 2 + parts // 2
    assert proxy.gate_timed_out == originals % 2 + parts % 2


# The faults of the next tests start once the batch has read its first source object (the next reads
# are already on their way: S3Source.prefetch), or once it has stored its first original.
FIRST_READ = r"^GET .*/incoming/"
RESETS = {
    # The requests never reach the server: botocore retries, then the Prefect task reruns the batch. The
    # burst meets the source's reads (the ones read ahead) and the store's writes that follow them.
    "requests-reset": (dict(action="reset", after=FIRST_READ), {"GET", "PUT", "HEAD"}),
    # The server sends the source's objects, cut half-way: botocore retries no body, the store reads it again.
    "downloads-cut-mid-body": (dict(action="reset-response", methods=("GET",), path="/incoming/", after=FIRST_READ),
                               {"GET"}),
    # The writes land, their answers are lost; every retry meets the object as taken (412), answer lost too.
    "write-answers-lost": (dict(action="reset-response", methods=("PUT",), after=FIRST_ORIGINAL), {"PUT"}),
}


@pytest.mark.parametrize("fault", list(RESETS))
def test_connections_reset_for_a_while_are_retried_and_the_run_equals_a_clean_one(
        proxy, clean_run, s3_source, s3_server, monkeypatch, fault):
    from archive_flows.ingest import ingest

    rule, methods = RESETS[fault]
    dest = f"s3://{s3_server.create_bucket()}/archive"
    proxy.inject(**rule, count=BURST)
    result = ingest(s3_source, dest=dest, workers=1)

    assert proxy.injected == {rule["action"]: BURST} and proxy.remaining == 0
    met = {method for method, _, action in proxy.log if action != "pass"}
    assert met <= methods and ("GET" in met if "GET" in methods else met == methods)
    _direct(monkeypatch, s3_server)
    _committed_run(dest, clean_run, result)


def test_the_commit_stands_when_every_answer_to_the_lock_and_manifest_writes_is_lost(
        proxy, clean_run, s3_source, s3_server, monkeypatch):
    """Each write lands at its first attempt, and every retry meets it as taken, answer lost
    too: the store must find its own write rather than fail the commit (or wait for its own lock)."""
    from archive_flows.ingest import ingest

    dest = f"s3://{s3_server.create_bucket()}/archive"
    proxy.inject("reset-response", count=2 * ATTEMPTS, methods=("PUT",), path=r"/archive/(locks|runs)/")
    result = ingest(s3_source, dest=dest, workers=1)

    assert proxy.injected == {"reset-response": 2 * ATTEMPTS}
    cut = [target.rsplit("/", 2)[-2] for method, target, action in proxy.log if action == "reset-response"]
    assert cut == ["locks"] * ATTEMPTS + ["runs"] * ATTEMPTS
    _direct(monkeypatch, s3_server)
    assert s3_server.client().list_objects_v2(Bucket=dest.split("/")[2], Prefix="archive/locks/")["KeyCount"] == 0
    _committed_run(dest, clean_run, result)


def test_a_get_cut_mid_body_is_read_again_and_checked_against_what_was_handed_out(proxy, s3_bucket, s3_server):
    data = os.urandom(300_000)
    store = S3Store.from_url(s3_bucket)
    key = object_key(hashlib.sha256(data).hexdigest())
    store.put_bytes(key, data)

    proxy.inject("reset-response", count=ATTEMPTS - 1, methods=("GET",))
    with store.open_read(key) as stream:
        chunks = iter(lambda: stream.read(16_384), b"")
        assert b"".join(chunks) == data
    assert proxy.injected == {"reset-response": ATTEMPTS - 1}

    # An object that changes under a read (only possible behind the store's back) is not stitched together.
    proxy.inject("reset-response", count=1, methods=("GET",))
    bucket, prefix = s3_bucket[5:].split("/", 1)
    with store.open_read(key) as stream:
        assert stream.read(16_384) == data[:16_384]
        s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data[::-1])
        with pytest.raises(StoreError, match="changed while it was being read"):
            while stream.read(16_384):
                pass


def test_each_request_makes_as_many_attempts_as_aws_max_attempts_says(proxy, s3_bucket):
    store = S3Store.from_url(s3_bucket)
    proxy.inject("reset")
    with pytest.raises(StoreError, match=r"after retries"):
        store.size("objects/sha256/no/such")
    assert proxy.injected == {"reset": ATTEMPTS}


def test_small_puts_go_through_the_crt_client_and_everything_else_through_botocore(proxy, s3_bucket, tmp_path,
                                                                                    monkeypatch):
    store = S3Store.from_url(s3_bucket, multipart_threshold=6 * MiB, part_size=5 * MiB)
    small = b"a small original"
    store.put_bytes("objects/sha256/00/00/small", small)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(7 * MiB))
    store.put_file("objects/sha256/00/00/big", big)
    assert store.get_bytes("objects/sha256/00/00/small") == small and store.size("objects/sha256/00/00/big") == 7 * MiB
    # The small PutObject went through the CRT's client; the multipart upload (its two parts), the GET and
    # the HEADs through botocore.
    assert {key: n for key, n in proxy.agents.items() if key[1] != "Botocore"} == {("PUT", "CRTS3NativeClient"): 1}
    assert proxy.agents[("PUT", "Botocore")] == 2 and proxy.agents[("POST", "Botocore")] == 2
    assert proxy.agents[("GET", "Botocore")] == 1 and proxy.agents[("HEAD", "Botocore")] >= 1

    # Where the CRT's client is not to be used, botocore sends everything.
    monkeypatch.setenv("BOTO_DISABLE_CRT", "true")
    proxy.agents.clear()
    S3Store.from_url(s3_bucket).put_bytes("objects/sha256/00/00/other", small)
    assert proxy.agents == {("PUT", "Botocore"): 1}


def test_each_small_put_makes_as_many_attempts_as_aws_max_attempts_says_then_one_line(proxy, s3_bucket):
    store = S3Store.from_url(s3_bucket)
    proxy.inject("reset", methods=("PUT",))
    with pytest.raises(StoreError, match=r"objects/sha256/00/00/x: .*no answer from the S3 endpoint .*after retries"):
        store.put_bytes("objects/sha256/00/00/x", b"bytes")
    # Then one HEAD (not faulted): had an attempt landed, the key would hold these bytes.
    assert proxy.injected == {"reset": ATTEMPTS}
    assert [method for method, _, _ in proxy.log] == ["PUT"] * ATTEMPTS + ["HEAD"]


def test_a_burst_of_503_slowdown_on_a_small_put_is_retried_with_backoff(proxy, s3_bucket):
    store = S3Store.from_url(s3_bucket)
    proxy.inject("slowdown", count=ATTEMPTS - 1, methods=("PUT",))
    result = store.put_bytes("objects/sha256/00/00/y", b"bytes")
    assert result.stored_sha256 == hashlib.sha256(b"bytes").hexdigest()
    assert proxy.injected == {"slowdown": ATTEMPTS - 1}
    assert store.get_bytes("objects/sha256/00/00/y") == b"bytes"

    # Throttled on every attempt: the server's answer is named, and taken as an answer (no HEAD after it).
    proxy.inject("slowdown", methods=("PUT",))
    del proxy.log[:]
    with pytest.raises(StoreError, match=r"objects/sha256/00/00/z: .*S3 error SlowDown \(HTTP 503\)"):
        store.put_bytes("objects/sha256/00/00/z", b"more bytes")
    assert [method for method, _, _ in proxy.log] == ["PUT"] * ATTEMPTS


def test_check_writable_refuses_a_server_that_ignores_if_none_match_through_the_crt_client(proxy, s3_bucket):
    # moto checks no signature, so it carries out the PUTs stripped of their condition.
    store = S3Store.from_url(s3_bucket)
    proxy.inject("unconditional", methods=("PUT",))
    with pytest.raises(ConfigurationError, match="ignores If-None-Match"):
        store.check_writable()
    assert proxy.injected == {"unconditional": 2}
    assert proxy.agents[("PUT", "CRTS3NativeClient")] == 2


def test_a_lost_answer_to_the_write_once_probe_is_not_taken_for_a_server_ignoring_if_none_match(proxy, s3_bucket):
    # The first probe write passes; the second must meet 412, and its answer is cut once.
    proxy.inject("reset-response", count=1, methods=("PUT",), path=r"/\.tmp/probe-", after=r"^PUT .*/\.tmp/probe-")
    S3Store.from_url(s3_bucket).check_writable()
    assert proxy.injected == {"reset-response": 1}


@pytest.fixture
def cli_env(prefect_harness, proxy):
    """The environment of `archive` subprocesses: the harness's Prefect server, S3 through the proxy."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env.pop("ARCHIVE_DEST", None)
    return env


def _ingest_cli(source, dest, env) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", str(source), "--dest", dest],
                          env=env, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def _nothing_committed(s3_server, bucket: str) -> None:
    """Read from the server itself, not through the proxy: no manifest, no lock left behind."""
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=bucket, Prefix="archive/runs/")["KeyCount"] == 0
    assert client.list_objects_v2(Bucket=bucket, Prefix="archive/locks/")["KeyCount"] == 0


def test_access_denied_on_every_write_fails_at_once_in_one_line_with_nothing_committed(cli_env, proxy, seeds_dir,
                                                                                       s3_server):
    bucket = s3_server.create_bucket()
    # Every write of the run (not the start's write probe) is refused.
    proxy.inject("deny", methods=("PUT",), path=r"/archive/(objects|datasets|runs|locks)/")
    done, seconds = _ingest_cli(seeds_dir, f"s3://{bucket}/archive", cli_env)

    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("archive: ingest failed, nothing was committed: ")
    assert f"s3://{bucket}/archive/objects/sha256/" in line and "access denied" in line and "AccessDenied" in line
    assert "Traceback" not in done.stderr and s3_server.secret_key not in done.stderr + done.stdout
    # Not retried, no retry can fix it: each original the batch had sent off before the first refusal
    # came back is refused once (they go up several at a time).
    denied = [target for method, target, action in proxy.log if action == "deny"]
    assert 1 <= len(denied) <= 5 and len(set(denied)) == len(denied)
    assert all(method == "PUT" and "/objects/sha256/" in target
               for method, target, action in proxy.log if action == "deny")
    _nothing_committed(s3_server, bucket)
    assert seconds < 60


def test_a_server_gone_for_good_mid_run_fails_in_bounded_time_in_one_line_with_nothing_committed(
        cli_env, proxy, seeds_dir, s3_server):
    bucket = s3_server.create_bucket()
    env = {**cli_env, "AWS_MAX_ATTEMPTS": "2", "ARCHIVE_S3_CONNECT_TIMEOUT": "5", "ARCHIVE_S3_READ_TIMEOUT": "10"}
    # From the first original on, every connection is torn down: refused when new, reset when reused.
    proxy.inject("refuse", after=FIRST_ORIGINAL)
    done, seconds = _ingest_cli(seeds_dir, f"s3://{bucket}/archive", env)

    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("archive: ingest failed, nothing was committed: objects/sha256/")
    assert f"the S3 endpoint {proxy.endpoint_url}" in line and "after retries" in line
    assert "Traceback" not in done.stderr and s3_server.secret_key not in done.stderr + done.stdout
    # The batch ran 3 times (Prefect task retries), each time 2 attempts of the PUT of each original it
    # had sent off (one to five: they go up several at a time) then, since a lost answer may hide a
    # write that landed, 2 attempts of the HEAD that would tell. The proxy counts refused connections
    # and requests, not attempts: with the CRT's client sending the PUTs, one full-suite run counted 57
    # (56 in 8 runs alone), so the exact attempts of one request are asserted where one request runs
    # (test_each_small_put_makes..., test_each_request_makes...) and only their bounds here.
    refused = proxy.injected["refuse"]
    assert 3 * (2 + 2) <= refused <= 3 * 5 * (2 + 2), refused
    _nothing_committed(s3_server, bucket)
    assert seconds < 60
