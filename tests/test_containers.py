"""Containers unpacked: ZIP, TAR and mbox members, and e-mail attachments, each a file of its own whose files row and
events name the container; bounded against bombs. Built from the real files of tests/corpus/formats."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive.ingest import commit_run, process_batch
from archive.ingest.summary import IngestOptions
from archive.ingest.unpack import ContainerLimits
from archive.lineage import lineage
from archive.provenance import RunContext, new_run_id
from archive.read import open_dataset
from archive.sources import LocalSource
from archive.storage import LocalStore, object_key

FORMATS = Path(__file__).resolve().parent / "corpus" / "formats"


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _ingest(src: Path, dest: Path, **limits):
    source, store = LocalSource(str(src)), LocalStore(str(dest))
    run = RunContext(new_run_id(), "containers", source.url)
    options = IngestOptions(containers=ContainerLimits(**limits))
    summary = process_batch(store, source, run, 0, sorted(source.iter_files(), key=lambda r: r.path), options=options)
    committed = commit_run(store, run, [summary], parameters={}, warnings=[])
    files = {f["path"]: f for f in open_dataset(str(dest), "files").to_table().to_pylist()}
    return committed, files, store


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_zip_tar_mbox_and_attachments_become_files_of_their_own_naming_their_container(tmp_path):
    src = tmp_path / "accession"
    src.mkdir()
    rtf, docx = (FORMATS / "striprtf-french.rtf").read_bytes(), (FORMATS / "python-docx-test.docx").read_bytes()
    inner = _zip({"inner/test.docx": docx})
    zipped = _zip({"letters/french.rtf": rtf, "../../escape.txt": b"A name that climbs out.", "nested.zip": inner,
                   "letters/": b""})
    (src / "accession.zip").write_bytes(zipped)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        archive.add(FORMATS / "segmodeimg.odt", "scans/seg.odt")
        link = tarfile.TarInfo("scans/link-out")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    (src / "box.tar").write_bytes(tar.getvalue())
    mbox = (FORMATS / "mboxparser-testbox.mbox").read_bytes()
    (src / "mail.mbox").write_bytes(mbox)
    tei = (FORMATS / "tei-test8.xml").read_bytes()
    tei_gz, tar_gz = gzip.compress(tei, mtime=0), gzip.compress(tar.getvalue(), mtime=0)
    (src / "tei.xml.gz").write_bytes(tei_gz)
    (src / "box.tar.gz").write_bytes(tar_gz)

    committed, files, store = _ingest(src, tmp_path / "store")

    assert {p: (f["outcome"], f["reason"]) for p, f in files.items() if f["container_sha256"] is None} == {
        "accession.zip": ("skipped", "unpacked"), "box.tar": ("skipped", "unpacked"),
        "mail.mbox": ("skipped", "unpacked"), "tei.xml.gz": ("skipped", "unpacked"),
        "box.tar.gz": ("skipped", "unpacked")}
    assert files["accession.zip"]["detail"].startswith("3 members unpacked")
    members = {p: f for p, f in files.items() if f["container_sha256"] is not None}
    assert {p: f["container_sha256"] for p, f in members.items() if not p.startswith("mail.mbox!/")} == {
        "accession.zip!/letters/french.rtf": _sha(zipped), "accession.zip!/escape.txt": _sha(zipped),
        "accession.zip!/nested.zip": _sha(zipped), "accession.zip!/nested.zip!/inner/test.docx": _sha(inner),
        "box.tar!/scans/seg.odt": _sha(tar.getvalue()), "box.tar!/scans/link-out": _sha(tar.getvalue()),
        "tei.xml.gz!/tei.xml": _sha(tei_gz), "box.tar.gz!/scans/seg.odt": _sha(tar_gz),
        "box.tar.gz!/scans/link-out": _sha(tar_gz)}
    assert (files["box.tar!/scans/link-out"]["outcome"], files["box.tar!/scans/link-out"]["reason"]) == (
        "skipped", "not-a-regular-file")
    assert files["accession.zip!/nested.zip"]["reason"] == "unpacked"
    # Each member's own bytes are kept under their own sha256, and the containers' too.
    for path, data in (("accession.zip!/letters/french.rtf", rtf), ("accession.zip!/nested.zip!/inner/test.docx", docx),
                       ("accession.zip", zipped), ("mail.mbox", mbox)):
        assert files[path]["sha256"] == _sha(data) and store.get_bytes(object_key(_sha(data))) == data

    # The mbox: nine messages, each a document; the attachment of the ninth its child.
    messages = sorted(p for p in members if p.startswith("mail.mbox!/") and p.count("!/") == 1)
    assert messages == [f"mail.mbox!/message-{n:05d}.eml" for n in range(1, 10)]
    assert {members[p]["media_type"] for p in messages} == {"message/rfc822"}
    assert files["mail.mbox!/message-00009.eml!/Plans"]["container_sha256"] == \
        files["mail.mbox!/message-00009.eml"]["sha256"]
    docs = {d["source_path"]: d for d in open_dataset(str(tmp_path / "store"), "documents").to_table().to_pylist()}
    assert docs["mail.mbox!/message-00004.eml"]["title"] == "Password Update"
    assert docs["mail.mbox!/message-00009.eml!/Plans"]["text"].startswith("All items with #) are implemented")
    assert docs["accession.zip!/nested.zip!/inner/test.docx"]["text"] == \
        "python-docx was here!\n\npython-docx was here too!"
    assert (files["tei.xml.gz!/tei.xml"]["sha256"], files["tei.xml.gz!/tei.xml"]["outcome"]) == (_sha(tei), "document")
    assert files["box.tar.gz!/scans/seg.odt"]["outcome"] == "duplicate"  # (the same bytes as box.tar's member)
    assert committed.counts["members"] == len(members) == 19
    assert committed.counts["files"] == 5 + 19

    events = open_dataset(str(tmp_path / "store"), "events").to_table().to_pylist()
    unpacking = {e["source_path"]: e for e in events if e["event_type"] == "unpacking"}
    assert unpacking["accession.zip!/escape.txt"]["outcome"] == "warning"
    assert "'../../escape.txt' recorded as 'escape.txt'" in unpacking["accession.zip!/escape.txt"]["detail"]
    assert unpacking["mail.mbox"]["tool"].startswith("python mailbox ")
    story = lineage(store, "accession.zip!/nested.zip!/inner/test.docx")
    assert any(e["event_type"] == "unpacking" and f"sha256 {_sha(inner)}" in e["detail"] for e in story["events"])


def test_a_zip_bomb_is_quarantined_whole_quickly_in_little_memory(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:  # 256 MiB of zeros in some 250 KB
            for _ in range(256):
                member.write(bytes(1 << 20))
        archive.writestr("note.txt", "A real note beside the bomb.")
    bomb = buffer.getvalue()
    assert len(bomb) < 1 << 20
    (src / "bomb.zip").write_bytes(bomb)
    overlapping = _zip({f"copy-{n}.txt": b"x" * 4096 for n in range(6)})
    (src / "many.zip").write_bytes(overlapping)
    zeros = gzip.GzipFile(fileobj=(gzipped := io.BytesIO()), mode="wb", compresslevel=9)
    for _ in range(256):
        zeros.write(bytes(1 << 20))
    zeros.close()
    (src / "zeros.gz").write_bytes(gzipped.getvalue())
    (src / "lying.gz").write_bytes(gzipped.getvalue()[:-4] + (1000).to_bytes(4, "little"))  # states 1,000 bytes

    tracemalloc.start()
    started = time.monotonic()
    _, files, store = _ingest(src, tmp_path / "store", members=5)
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert set(files) == {"bomb.zip", "many.zip", "zeros.gz", "lying.gz"}  # nothing of any was unpacked
    assert files["bomb.zip"]["reason"] == "container-too-large"
    assert "expands 1,0" in files["bomb.zip"]["detail"] and "(--container-ratio)" in files["bomb.zip"]["detail"]
    assert files["many.zip"]["reason"] == "container-too-large"
    assert "over the limit of 5 (--container-members)" in files["many.zip"]["detail"]
    assert files["zeros.gz"]["reason"] == "container-too-large" and "(--container-ratio)" in files["zeros.gz"]["detail"]
    assert files["lying.gz"]["reason"] == "container-too-large"
    assert "expands over 1000 times" in files["lying.gz"]["detail"]  # (found as it expands, its statement a lie)
    assert store.get_bytes(object_key(_sha(bomb))) == bomb  # the container itself is kept
    assert seconds < 20 and peak < 16 << 20, (seconds, peak)

    # Over the bytes: the same bomb with a ratio that lets it through, against a bound on what it expands to.
    _, files, _ = _ingest(src, tmp_path / "store2", ratio=10_000, expanded_bytes=64 << 20)
    assert files["bomb.zip"]["reason"] == "container-too-large"
    assert "over the limit of 67,108,864 (--container-bytes)" in files["bomb.zip"]["detail"]
    assert "over the limit of 67,108,864 (--container-bytes)" in files["zeros.gz"]["detail"]


def test_nesting_past_the_depth_a_damaged_and_an_encrypted_zip_are_quarantined_naming_why(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    innermost = _zip({"deep.txt": b"Three containers down."})
    (src / "outer.zip").write_bytes(_zip({"middle.zip": _zip({"inner.zip": innermost}), "top.txt": b"At the top."}))
    whole = _zip({"a.txt": b"Some text " * 100})
    (src / "damaged.zip").write_bytes(whole[:len(whole) // 2])
    locked = bytearray(_zip({"secret.txt": b"Under lock."}))
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the encrypted flag, local and central
        locked[locked.index(signature) + at] |= 1
    (src / "locked.zip").write_bytes(bytes(locked))

    _, files, _ = _ingest(src, tmp_path / "store", depth=2)
    assert {p: (f["outcome"], f["reason"]) for p, f in files.items()} == {
        "outer.zip": ("skipped", "unpacked"),
        "outer.zip!/top.txt": ("document", None),
        "outer.zip!/middle.zip": ("skipped", "unpacked"),
        "outer.zip!/middle.zip!/inner.zip": ("quarantine", "container-too-deep"),
        "damaged.zip": ("quarantine", "corrupt"),
        "locked.zip": ("quarantine", "encrypted"),
    }
    assert "(--container-depth)" in files["outer.zip!/middle.zip!/inner.zip"]["detail"]
    assert files["outer.zip!/middle.zip!/inner.zip"]["sha256"] == _sha(innermost)


@pytest.mark.parametrize("limit", [0, -1, True])
def test_container_limits_must_be_above_zero(limit):
    from archive.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="members"):
        ContainerLimits(members=limit)


@pytest.mark.flow
def test_an_ingest_counts_members_and_a_withdrawn_member_is_not_unpacked_again(prefect_harness, tmp_path):
    from archive.catalogue.withdraw import withdraw
    from archive.publish import load_manifest
    from archive.storage import open_store
    from archive_flows.ingest import ingest

    src = tmp_path / "src"
    src.mkdir()
    (src / "letters.zip").write_bytes(_zip({"a.rtf": (FORMATS / "striprtf-french.rtf").read_bytes(),
                                            "b.rtf": (FORMATS / "striprtf-example.rtf").read_bytes()}))
    (src / "metadata.csv").write_text("filename,dc.title\nletters.zip!/b.rtf,An example letter\n", encoding="utf-8")
    dest = str(tmp_path / "store")
    first = ingest(str(src), dest=dest, reuse=False, container_members=50)
    assert first["counts"] == {"files": 4, "documents": 2, "duplicates": 0, "quarantined": 0, "skipped": 2,
                               "updated": 0, "members": 2}
    assert not first["notes"], "a row naming a member is no missing file"
    manifest = load_manifest(open_store(dest), f"runs/{first['run_id']}.json")
    assert manifest["parameters"]["container_members"] == 50 and manifest["parameters"]["container_depth"] == 4
    records = {r["path"]: r for r in open_dataset(dest, "records").to_table().to_pylist()}
    assert records["letters.zip!/b.rtf"]["title"] == "An example letter"

    withdraw(open_store(dest), ["letters.zip!/a.rtf"], "privacy request")
    second = ingest(str(src), dest=dest, reuse=False)
    files = {f["path"]: f for f in open_dataset(dest, "files", runs=[second["run_id"]]).to_table().to_pylist()}
    assert (files["letters.zip!/a.rtf"]["outcome"], files["letters.zip!/a.rtf"]["reason"]) == ("skipped", "withdrawn")
    assert files["letters.zip!/a.rtf"]["sha256"] is None
    assert files["letters.zip!/b.rtf"]["outcome"] == "duplicate"


@given(st.lists(st.text(alphabet=st.sampled_from("ab./\\\x00é"), max_size=12), min_size=1, max_size=6))
def test_member_paths_never_leave_their_container_and_never_collide(names):
    from archive.ingest.unpack import SEPARATOR, _Names

    made = _Names("box.zip")
    paths = [made.path(name, number)[0] for number, name in enumerate(names, start=1)]
    assert len(set(paths)) == len(paths)
    for path in paths:
        assert path.startswith("box.zip" + SEPARATOR)
        inside = path[len("box.zip" + SEPARATOR):].replace("\\\\", "/").split("/")
        assert inside and all(part not in ("", ".", "..") for part in inside), path
