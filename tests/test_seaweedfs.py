"""The archive on SeaweedFS, a production S3 server on 127.0.0.1 (objects on its disk, signatures and the SHA-256
a PUT claims checked, as AWS checks them): bytes damaged on the way are refused by the server and sent again; a
whole ingest, its re-run, a fixity audit and pyarrow's reads work against it. (The store's contract runs on it
too: tests/test_store.py.)"""

from __future__ import annotations

import hashlib
import os

import pytest

from archive.errors import StoreError
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import SEND_ATTEMPTS, MiB, S3Store, object_key, open_store
from tests.faultproxy import FaultProxy

ORIGINALS = r"/objects/sha256/"


@pytest.fixture
def proxy(seaweedfs_env, monkeypatch):
    """The fault proxy in front of SeaweedFS, with this process's AWS chain pointed at it."""
    with FaultProxy(seaweedfs_env.host, seaweedfs_env.port, seed=3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
        yield proxy


def _puts(proxy: FaultProxy, key: str) -> list[str]:
    """The actions taken on each PUT of key (upload parts included), in order."""
    return [action for method, target, action in proxy.log if method == "PUT" and f"/{key}" in target]


def test_a_body_damaged_on_the_way_is_refused_by_the_server_and_sent_again(proxy, seaweedfs):
    store = S3Store.from_url(f"s3://{seaweedfs.create_bucket()}/archive")
    data = os.urandom(20_000)
    key = object_key(hashlib.sha256(data).hexdigest())

    proxy.inject("corrupt", count=1, methods=("PUT",), path=ORIGINALS)
    result = store.put_bytes(key, data)

    assert _puts(proxy, key) == ["corrupt", "pass"]
    assert result.stored_sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(key) == data


def test_a_body_damaged_on_every_attempt_fails_naming_the_key_and_nothing_is_stored(proxy, seaweedfs):
    store = S3Store.from_url(f"s3://{seaweedfs.create_bucket()}/archive")
    data = os.urandom(20_000)
    key = object_key(hashlib.sha256(data).hexdigest())

    proxy.inject("corrupt", methods=("PUT",), path=ORIGINALS)
    with pytest.raises(StoreError, match="damaged between here and the server") as raised:
        store.put_bytes(key, data)

    assert raised.value.key == key
    assert _puts(proxy, key) == ["corrupt"] * SEND_ATTEMPTS
    proxy.pass_through()
    assert not store.exists(key)
    store.put_bytes(key, data)  # the key is still free: the refused writes left nothing behind
    assert store.get_bytes(key) == data


def test_a_damaged_part_of_a_multipart_upload_is_sent_again(proxy, seaweedfs, tmp_path):
    store = S3Store.from_url(f"s3://{seaweedfs.create_bucket()}/archive", multipart_threshold=6 * MiB,
                             part_size=5 * MiB)
    data = os.urandom(7 * MiB)
    source = tmp_path / "scan.tiff"
    source.write_bytes(data)
    key = object_key(hashlib.sha256(data).hexdigest())

    proxy.inject("corrupt", count=1, methods=("PUT",), path=r"partNumber=2")
    result = store.put_file(key, source)

    assert [action for method, target, action in proxy.log if "partNumber=" in target] == ["pass", "corrupt", "pass"]
    assert result.stored_sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(key) == data


@pytest.mark.flow
def test_ingest_rerun_audit_and_reads_on_seaweedfs_even_with_originals_damaged_on_the_way(
        prefect_harness, proxy, seaweedfs, seeds_dir):
    from archive_flows.audit import fixity_audit
    from archive_flows.ingest import ingest

    dest = f"s3://{seaweedfs.create_bucket()}/archive"
    # Two originals reach the server damaged on their first attempt: refused there, sent again by the store.
    proxy.inject("corrupt", count=2, methods=("PUT",), path=ORIGINALS)
    first = ingest(str(seeds_dir), dest=dest, collection="black-january", workers=1)
    assert proxy.injected == {"corrupt": 2}
    assert first["counts"]["documents"] == 5 and first["counts"]["quarantined"] == 0

    again = ingest(str(seeds_dir), dest=dest, collection="black-january", workers=1)
    assert again["counts"]["duplicates"] == 5 and again["counts"]["documents"] == 0

    # What an analyst reads through pyarrow's S3 filesystem, and an auditor's check of every byte.
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in seeds_dir.iterdir()}
    documents = open_dataset(dest, "documents").to_table().to_pylist()
    assert {d["source_path"]: d["doc_id"] for d in documents} == expected
    store = open_store(dest)
    for doc_id in expected.values():
        assert hashlib.sha256(store.get_bytes(object_key(doc_id))).hexdigest() == doc_id
    audit = fixity_audit(dest=dest)
    assert audit["status"] == "ok" and audit["problems"] == []
    assert audit["checked"]["objects"] == 5
    assert [m["kind"] for m in committed_manifests(store)].count("ingest") == 2

    # Bit rot behind the archive's back (the server lets its own client overwrite): the audit names it.
    changed = object_key(expected[sorted(expected)[0]])
    seaweedfs.client().put_object(Bucket=store.bucket, Key=f"{store.prefix}/{changed}", Body=b"rotten")
    audit = fixity_audit(dest=dest)
    assert audit["status"] != "ok"
    assert [(p["kind"], p["key"]) for p in audit["problems"]] == [("changed", changed)]
