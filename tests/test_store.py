"""The store contract, on a local directory and on a real S3 server over HTTP."""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import os
import pickle
import shutil
import stat
import time
import traceback
import tracemalloc
import weakref

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from archive.errors import ConfigurationError, ObjectExistsError, ObjectNotFoundError, SourceError, StoreError
from archive.sources import iter_s3_source
from archive.storage import LocalStore, MiB, S3Store, object_key, unnamed_files_possible, validate_key
from tests.s3server import server_of

DATA = b"The original bitstream, byte for byte.\r\n\x00\xff"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_s3(store) -> bool:
    return isinstance(store, S3Store)


def require_stored_sha256(store, result, expected: str) -> None:
    """Both stores report the checksum of what they hold."""
    assert result.stored_sha256 == expected


def s3_raw(s3_server, store: S3Store):
    """The test's own S3 client, and key -> full S3 key: for looking behind the store's back."""
    return s3_server.client(), (lambda key: f"{store.prefix}/{key}" if store.prefix else key)


def exception_texts(exc: BaseException) -> str:
    """Everything a log would show of exc: its chain, reprs and formatted traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(getattr(exc, "args", ()))]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


@pytest.fixture
def s3_server_if_s3(request):
    """The S3 server holding the test's store when it is an S3Store, else None (and no server started)."""
    store = request.getfixturevalue("store") if "store" in request.fixturenames else None
    return server_of(request) if is_s3(store) else None


# -- the contract, on both stores ---------------------------------------------


def test_put_then_get_round_trips(store):
    key = object_key(sha256(DATA))
    result = store.put_bytes(key, DATA, sha256=sha256(DATA))

    assert (result.key, result.size) == (key, len(DATA))
    assert store.get_bytes(key) == DATA
    with store.open_read(key) as stream:
        assert stream.read(5) + stream.read() == DATA
    assert store.size(key) == len(DATA)


def test_second_put_of_a_key_is_refused_and_the_first_bytes_stay(store, tmp_path):
    key = "runs/20261122T153000Z-3f9a.json"
    store.put_bytes(key, b"first")

    with pytest.raises(ObjectExistsError) as raised:
        store.put_bytes(key, b"second")
    assert raised.value.key == key
    other = tmp_path / "other"
    other.write_bytes(b"third")
    with pytest.raises(ObjectExistsError):
        store.put_file(key, other)

    assert store.get_bytes(key) == b"first"


def test_put_file_streams_a_file_above_the_multipart_threshold(store, tmp_path, s3_server_if_s3):
    if is_s3(store):
        store.multipart_threshold = 6 * MiB
        store.part_size = 5 * MiB
    source = tmp_path / "big.bin"
    data = os.urandom(12 * MiB + 12345)
    source.write_bytes(data)
    expected = sha256(data)
    del data
    key = object_key(expected)
    assert not store.exists(key)  # also loads botocore's service model outside the measurement

    tracemalloc.start()
    try:
        result = store.put_file(key, source, sha256=expected)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # One part (5 MiB) in memory at a time, never the whole 12 MiB file.
    assert peak < 8 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    assert result.size == source.stat().st_size == store.size(key)
    with store.open_read(key) as stream:
        assert hashlib.file_digest(stream, "sha256").hexdigest() == expected
    require_stored_sha256(store, result, expected)
    if is_s3(store):
        client, full = s3_raw(s3_server_if_s3, store)
        etag = client.head_object(Bucket=store.bucket, Key=full(key))["ETag"]
        assert etag.strip('"').endswith("-3"), f"expected 3 parts (5+5+2 MiB), ETag {etag}"


def test_stored_sha256_is_the_sha256_of_the_bytes(store, tmp_path):
    given = store.put_bytes("datasets/events/run=r1/part-00000.parquet", DATA, sha256=sha256(DATA))
    require_stored_sha256(store, given, sha256(DATA))

    computed = store.put_bytes("datasets/events/run=r1/part-00001.parquet", b"no digest given")
    require_stored_sha256(store, computed, sha256(b"no digest given"))

    small = tmp_path / "small.txt"
    small.write_bytes(b"a small file")
    from_file = store.put_file("datasets/events/run=r1/part-00002.parquet", small)
    require_stored_sha256(store, from_file, sha256(b"a small file"))


def test_content_that_does_not_match_its_sha256_is_refused_before_anything_is_written(store):
    key = object_key(sha256(b"what the caller hashed"))

    with pytest.raises(StoreError) as caught:
        store.put_bytes(key, b"what arrived instead", sha256=sha256(b"what the caller hashed"))
    assert caught.value.key == key
    assert sha256(b"what the caller hashed") in str(caught.value)
    assert not store.exists(key)


def test_list_yields_keys_under_a_prefix_in_key_order(store):
    keys = [
        "datasets/documents/run=b/part-00000.parquet",
        "datasets/documents/run=a/part-00001.parquet",
        "datasets/documents/run=a/part-00000.parquet",
        "datasets/files/run=a/part-00000.parquet",
        "runs/a.json",
    ]
    for i, key in enumerate(keys):
        store.put_bytes(key, b"x" * i)
    store.check_writable()  # its probe must not show up in listings

    assert [(o.key, o.size) for o in store.list("datasets/documents/")] == [
        ("datasets/documents/run=a/part-00000.parquet", 2),
        ("datasets/documents/run=a/part-00001.parquet", 1),
        ("datasets/documents/run=b/part-00000.parquet", 0),
    ]
    assert [o.key for o in store.list("datasets/documents/run=a")] == sorted(keys)[:2]
    assert [o.key for o in store.list("")] == sorted(keys)
    assert list(store.list("nothing/here/")) == []


def test_list_hides_a_probe_left_behind_by_a_crash(store, s3_server_if_s3):
    store.put_bytes("runs/a.json", b"{}")
    if is_s3(store):
        client, full = s3_raw(s3_server_if_s3, store)
        client.put_object(Bucket=store.bucket, Key=full(".tmp/probe-crashed"), Body=b"")
    else:
        (store.root / ".tmp").mkdir(exist_ok=True)  # put_bytes made it already
        (store.root / ".tmp" / "probe-crashed").write_bytes(b"")

    assert [o.key for o in store.list("")] == ["runs/a.json"]


def test_list_pages_through_many_keys(store):
    if is_s3(store):
        store.list_page_size = 7  # 25 keys take 4 pages
    keys = [f"objects/sha256/aa/bb/{i:064x}" for i in range(25)]
    for key in reversed(keys):
        store.put_bytes(key, key.encode())

    listed = list(store.list("objects/"))

    assert [o.key for o in listed] == keys
    assert all(o.size == 85 for o in listed)


def test_sizes_answers_for_every_key_in_the_order_asked(store):
    held = {f"datasets/files/run=r/part-{i:05d}.parquet": b"x" * (i * 100 + 1) for i in range(12)}
    for key, data in held.items():
        store.put_bytes(key, data)
    asked = [*reversed(held), "datasets/files/run=r/missing.parquet", *list(held)[:3]]

    sizes = store.sizes(asked)

    assert list(sizes) == list(dict.fromkeys(asked))
    assert sizes == {**{key: len(data) for key, data in held.items()}, "datasets/files/run=r/missing.parquet": None}
    assert store.sizes([]) == {}


def test_size_exists_and_delete(store):
    key = "datasets/quarantine/run=r/part-00000.parquet"
    assert store.size(key) is None
    assert not store.exists(key)
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes(key)
    with pytest.raises(ObjectNotFoundError):
        store.open_read(key)
    with pytest.raises(ObjectNotFoundError):
        store.delete(key)

    store.put_bytes(key, b"12345")
    assert store.size(key) == 5
    assert store.exists(key)

    store.delete(key)
    assert not store.exists(key)
    assert list(store.list("datasets/")) == []


@pytest.mark.parametrize(
    "bad", ["a/../b", "../b", "..", "a/./b", "/abs/key", "a//b", "", "a/b/", "spaces are/not keys"]
)
def test_put_refuses_keys_that_are_not_store_keys(store, bad):
    with pytest.raises(StoreError):
        validate_key(bad)
    with pytest.raises(StoreError) as raised:
        store.put_bytes(bad, b"x")
    assert "not a valid store key" in str(raised.value)
    assert list(store.list("")) == []


def test_pyarrow_reads_a_parquet_file_written_through_the_store(store):
    table = pa.table({"doc_id": ["a" * 64, "b" * 64], "title": ["Minutes, 1921", "Letter"], "pages": [3, 1]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    key = "datasets/documents/run=20261122T153000Z-3f9a/part-00000.parquet"
    store.put_bytes(key, sink.getvalue().to_pybytes())
    filesystem = store.arrow_filesystem()

    assert pq.read_table(store.arrow_path(key), filesystem=filesystem).equals(table)
    directory = store.arrow_path(key).rpartition("/")[0]
    dataset = ds.dataset(directory, filesystem=filesystem, format="parquet")
    assert dataset.to_table().column("title").to_pylist() == ["Minutes, 1921", "Letter"]


def test_check_writable_passes_on_a_fresh_store_and_leaves_nothing_behind(store, s3_server_if_s3):
    store.check_writable()

    assert list(store.list("")) == []
    if is_s3(store):
        client, _ = s3_raw(s3_server_if_s3, store)
        assert client.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0


def test_check_writable_on_an_unusable_directory_is_a_configuration_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")

    with pytest.raises(ConfigurationError, match="is not writable"):
        LocalStore(blocker / "store").check_writable()


# -- S3 only ---------------------------------------------------------------------


def test_moto_enforces_if_none_match_on_put_and_on_multipart_complete(s3_server, s3_bucket):
    """The server, not the client, makes write-once hold: check the server at the wire."""
    client = s3_server.client()
    bucket = S3Store.from_url(s3_bucket).bucket
    client.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(client.exceptions.ClientError) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412

    upload = client.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"third")["ETag"]
    with pytest.raises(client.exceptions.ClientError) as raised:
        client.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            IfNoneMatch="*",
        )
    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_multipart_write_once_is_enforced_by_the_conditional_complete(s3_server, s3_bucket, tmp_path, monkeypatch):
    store = S3Store.from_url(s3_bucket, multipart_threshold=6 * MiB, part_size=5 * MiB)
    key = "datasets/files/run=r/part-00000.parquet"
    store.put_bytes(key, b"first")
    source = tmp_path / "big.bin"
    source.write_bytes(b"\x01" * (6 * MiB))
    parts_sent = []
    store._client.meta.events.register("before-call.s3.UploadPart", lambda **_: parts_sent.append(1))

    with pytest.raises(ObjectExistsError):
        store.put_file(key, source)
    assert parts_sent == [], "a taken key is refused before any part is sent"

    # Another writer lands between the early existence check and the complete.
    monkeypatch.setattr(store, "exists", lambda key: False)
    with pytest.raises(ObjectExistsError):
        store.put_file(key, source)
    assert len(parts_sent) == 2

    assert store.get_bytes(key) == b"first"
    assert s3_server.client().list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_a_write_whose_answer_was_lost_is_not_taken_for_someone_elses(s3_server, s3_bucket, monkeypatch):
    # botocore's PutObject, whose retries this test steers through its events (the CRT's small PUTs
    # meet lost answers in tests/test_faults.py).
    monkeypatch.setenv("BOTO_DISABLE_CRT", "true")
    store = S3Store.from_url(s3_bucket)
    assert not store.exists("runs/r.json")
    retried = []

    def retry_every_first_attempt(attempts, response, **_):
        # As if the answer to the first attempt never arrived: botocore sends it again.
        if attempts == 1:
            retried.append(response[0].status_code)
            return 0
        return None

    store._client.meta.events.register("needs-retry.s3.PutObject", retry_every_first_attempt)

    result = store.put_bytes("runs/r.json", b'{"run": 1}')
    assert retried == [200]  # the first attempt had written the object
    assert result.stored_sha256 == sha256(b'{"run": 1}')

    with pytest.raises(ObjectExistsError):
        store.put_bytes("runs/r.json", b'{"run": 2}')
    assert retried == [200, 412]
    assert store.get_bytes("runs/r.json") == b'{"run": 1}'


def test_a_refused_put_keeps_nothing_of_its_caller_in_memory(store):
    """A refusal (here the 412 of a taken key) must not keep the caller's frames, and what they hold, alive:
    the CRT's client once kept every ingest batch that met one (+45 MiB a batch of 1,000 files)."""
    store.put_bytes("objects/sha256/00/00/taken", b"first")

    class Batch:
        pass

    def a_batch_meeting_a_taken_key() -> weakref.ref:
        batch = Batch()
        with pytest.raises(ObjectExistsError):
            store.put_bytes("objects/sha256/00/00/taken", b"second")
        return weakref.ref(batch)

    gone = a_batch_meeting_a_taken_key()
    gc.collect()
    assert gone() is None


def test_a_large_file_that_does_not_match_its_sha256_leaves_nothing(s3_server, s3_bucket, tmp_path):
    store = S3Store.from_url(s3_bucket, multipart_threshold=6 * MiB, part_size=5 * MiB)
    source = tmp_path / "big.bin"
    source.write_bytes(b"\x02" * (6 * MiB))
    key = object_key("0" * 64)

    with pytest.raises(StoreError, match="not the expected 0000"):
        store.put_file(key, source, sha256="0" * 64)

    assert not store.exists(key)
    assert s3_server.client().list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_stored_bytes_that_fail_their_checksum_are_refused_on_read(s3_server, s3_bucket, monkeypatch):
    # moto stores whatever checksum the client claims (AWS would reject the
    # upload), which lets this test plant an object whose bytes do not match.
    # Even when the AWS chain asks botocore to validate only where required.
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    store = S3Store.from_url(s3_bucket)
    wrong = base64.b64encode(hashlib.sha256(b"original").digest()).decode()
    s3_server.client().put_object(
        Bucket=store.bucket,
        Key=f"{store.prefix}/objects/x",
        Body=b"bit rot",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=wrong,
    )

    with pytest.raises(StoreError, match="do not match the stored SHA-256") as raised:
        store.get_bytes("objects/x")
    assert raised.value.key == "objects/x"


def test_check_writable_refuses_a_server_that_ignores_if_none_match(s3_bucket, monkeypatch):
    monkeypatch.setenv("BOTO_DISABLE_CRT", "true")  # botocore's PutObject (the CRT's: tests/test_faults.py)
    store = S3Store.from_url(s3_bucket)

    def drop_condition(request, **_):
        # What a server without conditional writes would see.
        del request.headers["If-None-Match"]

    store._client.meta.events.register("before-send.s3.PutObject", drop_condition)

    with pytest.raises(ConfigurationError, match="ignores If-None-Match"):
        store.check_writable()
    assert list(store.list("")) == [] and list(store._iter_objects(".tmp/")) == []


def test_a_missing_bucket_is_a_configuration_error_naming_it(s3_server):
    store = S3Store.from_url("s3://no-such-bucket-here/archive")

    started = time.monotonic()
    with pytest.raises(ConfigurationError) as checked:
        store.check_writable()
    with pytest.raises(ConfigurationError) as written:
        store.put_bytes("runs/r.json", b"{}")
    assert time.monotonic() - started < 2, "a permanent error must not be retried"

    assert "bucket 'no-such-bucket-here' does not exist" in str(checked.value)
    assert "s3://no-such-bucket-here/archive/runs/r.json" in str(written.value)
    assert "NoSuchBucket" in str(written.value)
    for exc in (checked.value, written.value):
        assert s3_server.secret_key not in exception_texts(exc)
        assert "\n" not in str(exc)


def test_rejected_credentials_are_a_configuration_error_at_once(s3_server, s3_bucket):
    store = S3Store.from_url(s3_bucket)

    started = time.monotonic()
    with s3_server.authenticating():
        with pytest.raises(ConfigurationError, match="access to bucket .* denied") as checked:
            store.check_writable()
        with pytest.raises(ConfigurationError) as written:
            store.put_bytes("runs/r.json", b"{}")
    assert time.monotonic() - started < 2, "a permanent error must not be retried"

    assert str(written.value).startswith(f"{s3_bucket}/runs/r.json: PutObject failed")
    assert "InvalidAccessKeyId" in str(written.value)
    for exc in (checked.value, written.value):
        assert s3_server.secret_key not in exception_texts(exc)
    store.put_bytes("runs/r.json", b"{}")  # and the server is open again


def test_the_secret_key_never_appears_in_errors_or_in_a_pickled_store(s3_server, s3_bucket):
    store = S3Store.from_url(s3_bucket)
    store.put_bytes("runs/r.json", b"{}")
    errors = []
    for action in (
        lambda: store.put_bytes("runs/r.json", b"{}"),
        lambda: store.get_bytes("runs/missing.json"),
        lambda: store.delete("runs/missing.json"),
        lambda: store.put_bytes("../escape", b""),
        lambda: S3Store.from_url("s3://no-such-bucket-here/x").check_writable(),
        lambda: S3Store.from_url("s3://no-such-bucket-here/x").get_bytes("k"),
        lambda: list(iter_s3_source("s3://no-such-bucket-here/x")),
        lambda: S3Store.from_url(f"s3://{s3_server.access_key}:{s3_server.secret_key}@bucket/x"),
    ):
        with pytest.raises(Exception) as raised:
            action()
        errors.append(raised.value)

    assert len(errors) == 8
    for exc in errors:
        text = exception_texts(exc)
        assert s3_server.secret_key not in text, text
    assert s3_server.access_key not in str(errors[-1])
    assert isinstance(errors[-1], ConfigurationError)

    # A store travels to Dask workers by pickle: it must carry no credentials,
    # and must work again on the other side.
    store.arrow_filesystem()  # resolve everything the store might cache
    pickled = pickle.dumps(store)
    assert s3_server.secret_key.encode() not in pickled
    assert s3_server.access_key.encode() not in pickled
    assert pickle.loads(pickled).get_bytes("runs/r.json") == b"{}"
    assert s3_server.secret_key not in store.url + repr(store)


def test_an_unreachable_endpoint_is_a_configuration_error(s3_server, s3_bucket, monkeypatch):
    store = S3Store.from_url(s3_bucket)
    closed_port = s3_server.port
    from tests.s3server import _free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # retries back off; the message is what is tested

    with pytest.raises(ConfigurationError, match=r"cannot reach the S3 endpoint http://127\.0\.0\.1:\d+") as raised:
        store.check_writable()
    assert f":{closed_port}" not in str(raised.value)
    assert s3_server.secret_key not in exception_texts(raised.value)


def test_urls_name_bucket_and_prefix():
    assert S3Store.from_url("s3://bucket-a/some/prefix/").url == "s3://bucket-a/some/prefix"
    assert S3Store.from_url("s3://bucket-a").url == "s3://bucket-a"
    assert S3Store.from_url("s3://bucket-a/p").arrow_path("runs/r.json") == "bucket-a/p/runs/r.json"
    assert S3Store.from_url("s3://bucket-a").arrow_path("runs/r.json") == "bucket-a/runs/r.json"
    for bad in (
        "s3://",
        "s3://Bad_Bucket/x",
        "s3://bucket-a/a//b",
        "s3://bucket-a/../b",
        "http://bucket-a/x",
        "s3://bucket-a/x?versionId=1",
    ):
        with pytest.raises(ConfigurationError):
            S3Store.from_url(bad)


def test_an_s3_prefix_is_an_ingest_source(s3_server):
    bucket = s3_server.create_bucket()
    client = s3_server.client()
    for key, body in [
        ("batch-7/letters/1921 minutes.txt", b"minutes"),
        ("batch-7/letters/", b""),  # a console "folder"
        ("batch-7/scan.tiff", b"II*\x00"),
        ("batch-7/Ünïcode ñame.pdf", b"%PDF-1.7"),
        ("batch-70/not-this-batch.txt", b"no"),
        ("batch-6.txt", b"no"),
    ]:
        client.put_object(Bucket=bucket, Key=key, Body=body)
    url = f"s3://{bucket}/batch-7/"

    assert list(iter_s3_source(url)) == [
        ("letters/1921 minutes.txt", 7),
        ("scan.tiff", 4),
        ("Ünïcode ñame.pdf", 8),
    ]
    source = S3Store.from_url(url)
    assert source.get_bytes("letters/1921 minutes.txt") == b"minutes"
    assert source.size("Ünïcode ñame.pdf") == 8
    with source.open_read("scan.tiff") as stream:
        assert io.BufferedReader(stream).read() == b"II*\x00"
    with pytest.raises(SourceError, match="no-such-bucket-here"):
        list(iter_s3_source("s3://no-such-bucket-here/batch-7/"))


def _local_store(path, unnamed: bool) -> LocalStore:
    """A LocalStore that makes its new files without a name (O_TMPFILE) or, as where there is none, in .tmp."""
    store = LocalStore(path)
    if unnamed and not unnamed_files_possible():
        pytest.skip("no O_TMPFILE or /proc here")
    store._unnamed = unnamed
    return store


def _files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_a_directory_removed_behind_the_store_s_back_is_made_again(tmp_path, unnamed):
    store = _local_store(tmp_path / "store", unnamed)
    store.put_bytes("objects/sha256/ab/cd/abcd" + "0" * 60, b"first")
    shutil.rmtree(tmp_path / "store" / "objects" / "sha256" / "ab")  # by hand, while the store object lives
    store.put_bytes("objects/sha256/ab/cd/abcd" + "1" * 60, b"second")
    assert store.get_bytes("objects/sha256/ab/cd/abcd" + "1" * 60) == b"second"


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_local_objects_are_read_only_write_once_and_their_temporary_files_gone(tmp_path, unnamed):
    store = _local_store(tmp_path / "store", unnamed)
    for n in range(3):
        store.put_bytes(f"objects/sha256/ab/cd/abcd{n:060d}", b"bytes %d" % n)
    with pytest.raises(ObjectExistsError):
        store.put_bytes(f"objects/sha256/ab/cd/abcd{0:060d}", b"other bytes")
    mode = (tmp_path / "store" / "objects/sha256/ab/cd" / f"abcd{0:060d}").stat().st_mode
    assert stat.S_IMODE(mode) == 0o444
    assert store.get_bytes(f"objects/sha256/ab/cd/abcd{0:060d}") == b"bytes 0"
    assert _files_under(tmp_path / "store") == [f"objects/sha256/ab/cd/abcd{n:060d}" for n in range(3)]
    assert store._unnamed is unnamed  # the path asked for is the one taken


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_a_local_write_that_fails_halfway_leaves_no_file_behind(tmp_path, unnamed, monkeypatch):
    store = _local_store(tmp_path / "store", unnamed)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 << 20))  # put_file copies 1 MiB at a time
    from archive.storage import local as store_module

    calls = []
    real = store_module._write_all

    def fail_on_the_second_chunk(fd, data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(store_module, "_write_all", fail_on_the_second_chunk)
    with pytest.raises(StoreError, match="No space left on device"):
        store.put_file("objects/sha256/ab/cd/abcd" + "0" * 60, source)
    assert len(calls) == 2
    assert _files_under(tmp_path / "store") == []  # neither the object nor a temporary file


def test_without_o_tmpfile_a_local_store_writes_through_named_temporary_files(tmp_path, monkeypatch):
    """A file system or kernel without O_TMPFILE refuses it (EOPNOTSUPP; EISDIR on kernels before 3.11):
    the store then goes on, and stays, with named temporary files in .tmp, which it removes."""
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE here")
    import errno

    real_open, refused = os.open, []

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(path)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    store = LocalStore(tmp_path / "store")
    for n in range(2):
        store.put_bytes(f"objects/sha256/ab/cd/abcd{n:060d}", b"bytes %d" % n)
    assert len(refused) == 1 and store._unnamed is False
    assert store.get_bytes(f"objects/sha256/ab/cd/abcd{1:060d}") == b"bytes 1"
    assert _files_under(tmp_path / "store") == [f"objects/sha256/ab/cd/abcd{n:060d}" for n in range(2)]
    assert (tmp_path / "store" / ".tmp").is_dir()  # it was used
    assert pickle.loads(pickle.dumps(store))._unnamed is None  # a copy finds out for itself


def test_copies_of_a_local_store_in_one_process_never_share_a_temporary_file(tmp_path):
    """A store's temporary names come from a counter; each unpickled copy draws its own token, and a name
    taken anyway (a copy that drew the same token) is not written over: another token is drawn."""
    store = _local_store(tmp_path / "store", unnamed=False)
    store.check_writable()
    copy = pickle.loads(pickle.dumps(store))
    copy._unnamed = False
    assert copy._token != store._token
    taken = tmp_path / "store" / ".tmp" / f"put-{os.getpid()}-{store._token}-0"
    taken.write_bytes(b"someone else's half-written file")
    store.put_bytes("objects/sha256/ab/cd/abcd" + "0" * 60, b"mine")
    copy.put_bytes("objects/sha256/ab/cd/abcd" + "1" * 60, b"the copy's")
    assert taken.read_bytes() == b"someone else's half-written file"
    assert store.get_bytes("objects/sha256/ab/cd/abcd" + "0" * 60) == b"mine"
    assert copy.get_bytes("objects/sha256/ab/cd/abcd" + "1" * 60) == b"the copy's"


def test_small_puts_send_their_body_at_once_large_parts_wait_for_100_continue(s3_bucket, tmp_path, monkeypatch):
    """botocore sends "Expect: 100-continue" with every body and waits a round trip for it; worth it only for
    bodies not cheap to send twice. Originals of a few KB go with their headers; 5 MiB parts still ask first.
    (With botocore sending the small PUT too, as where the CRT's client is not used; the CRT sends no Expect.)"""
    monkeypatch.setenv("BOTO_DISABLE_CRT", "true")
    store = S3Store.from_url(s3_bucket, multipart_threshold=6 * MiB, part_size=5 * MiB)
    sent: list[tuple[str, int, bytes | None]] = []

    def capture(request, event_name, **_):
        sent.append((event_name.rsplit(".", 1)[1], int(request.headers["Content-Length"]),
                     request.headers.get("Expect")))

    for operation in ("PutObject", "UploadPart"):
        store._client.meta.events.register_last(f"before-send.s3.{operation}", capture)
    small = b"a small original"
    store.put_bytes("objects/sha256/00/00/small", small)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(7 * MiB))
    store.put_file("objects/sha256/00/00/big", big)

    assert sent == [("PutObject", len(small), None), ("UploadPart", 5 * MiB, b"100-continue"),
                    ("UploadPart", 2 * MiB, b"100-continue")]
    assert store.get_bytes("objects/sha256/00/00/small") == small
    assert store.get_bytes("objects/sha256/00/00/big") == big.read_bytes()


def _atime_an_hour_before_mtime(path) -> int:
    """Set path's access time an hour before its modification time (a read would then update it, on a
    relatime mount too) and return it."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_mtime_ns - 3600 * 10**9, st.st_mtime_ns))
    return os.stat(path).st_atime_ns


def test_reading_originals_and_source_files_leaves_their_access_time(tmp_path):
    from archive.sources import open_source

    control = tmp_path / "control.txt"
    control.write_bytes(b"read me")
    before = _atime_an_hour_before_mtime(control)
    control.read_bytes()
    if os.stat(control).st_atime_ns == before:
        pytest.skip("this file system does not update access times on read (noatime)")

    store = LocalStore(tmp_path / "store")
    data = b"an original, read back by a fixity check"
    key = object_key(hashlib.sha256(data).hexdigest())
    store.put_bytes(key, data)
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    (source_dir / "page.txt").write_bytes(b"a page of a source")
    stored, source_file = tmp_path / "store" / key, source_dir / "page.txt"
    atimes = {path: _atime_an_hour_before_mtime(path) for path in (stored, source_file)}

    assert store.sha256(key) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.get_bytes(key) == data
    source = open_source(str(source_dir))
    (ref,) = list(source.iter_files())
    assert source.read(ref) == b"a page of a source"
    streamed = object_key(hashlib.sha256(b"a page of a source").hexdigest())
    store.put_file(streamed, source_file)  # (a file above the size limit is streamed in from its path)
    assert store.get_bytes(streamed) == b"a page of a source"
    assert {path: os.stat(path).st_atime_ns for path in atimes} == atimes
