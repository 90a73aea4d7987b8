"""Every digitised format through the ingest flow, with a sidecar metadata.csv, built from the seeds."""

from __future__ import annotations

import shutil

import pytest

from archive.read import open_dataset
from tests import formats_util as fu

pytestmark = pytest.mark.flow


@pytest.fixture
def mixed_batch(tmp_path, seeds_dir):
    seeds = sorted(seeds_dir.iterdir())
    texts = [p.read_text(encoding="utf-8") for p in seeds]
    src = tmp_path / "batch"
    src.mkdir()
    shutil.copy(seeds[0], src / "agency.txt")
    paragraphs = fu.paragraphs(texts[1])
    (src / "page.html").write_bytes(fu.render_html("Azerbaijan commemorates victims", paragraphs[1:4],
                                                   date="2022-01-20", author="Daily Sabah"))
    pdf = fu.render_pdf([fu.excerpt(texts[2], 1200)], title="Day of Nationwide Sorrow", author="Embassy",
                        creation_date="D:20210121090000Z")
    (src / "release.pdf").write_bytes(pdf)
    (src / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    (src / "scan.png").write_bytes(fu.png_bytes(fu.render_page_image(fu.excerpt(texts[3], 500))))
    (src / "metadata.csv").write_text(
        "filename,dc.title,dc.date,dc.creator,dc.rights\n"
        "agency.txt,Envoy on Black January,2021-01-20,Anadolu Agency,CC BY 4.0\n"
        "scan.png,Black January (scan),2022,,\n"
        "release.pdf,Press release,2021-13-45,,\n"
        "missing.txt,A file that is not there,2020-01-01,,\n",
        encoding="utf-8")
    return src


def test_formats_and_sidecar_metadata(prefect_harness, mixed_batch, tmp_path):
    from archive_flows.ingest import ingest

    dest = str(tmp_path / "store")
    result = ingest(str(mixed_batch), dest=dest, collection="formats")
    files = {f["path"]: f for f in open_dataset(dest, "files").to_table().to_pylist()}
    assert {p: (f["outcome"], f["reason"]) for p, f in files.items()} == {
        "agency.txt": ("document", None),
        "page.html": ("document", None),
        "release.pdf": ("quarantine", "invalid-metadata"),
        "truncated.pdf": ("quarantine", "corrupt"),
        "scan.png": ("document", None),
        "metadata.csv": ("skipped", "sidecar-metadata"),
    }
    assert files["page.html"]["puid"] == "fmt/471" and files["scan.png"]["puid"] == "fmt/11"
    assert files["release.pdf"]["media_type"] == "application/pdf" and files["release.pdf"]["puid"].startswith("fmt/")
    assert "dc.date" in files["release.pdf"]["detail"] and "2021-13-45" in files["release.pdf"]["detail"]
    assert files["metadata.csv"]["sha256"], "the sidecar's own bytes are kept"

    docs = {d["source_path"]: d for d in open_dataset(dest, "documents").to_table().to_pylist()}
    agency = docs["agency.txt"]
    assert (agency["title"], agency["date"].isoformat(), agency["creator"], agency["rights"]) == (
        "Envoy on Black January", "2021-01-20", "Anadolu Agency", "CC BY 4.0")
    html = docs["page.html"]
    assert html["extractor"] == "trafilatura" and html["title"].startswith("Azerbaijan commemorates victims")
    assert html["date"].isoformat() == "2022-01-20"
    for junk in fu.BOILERPLATE.values():
        assert junk not in html["text"]
    scan = docs["scan.png"]
    assert scan["extractor"] == "tesseract" and scan["extractor_version"].startswith("5.")
    assert (scan["title"], scan["date"], scan["date_text"]) == ("Black January (scan)", None, "2022")
    ocr_event = [e for e in open_dataset(dest, "events").to_table().to_pylist()
                 if e["object_sha256"] == scan["doc_id"] and e["event_type"] == "normalization"]
    assert ocr_event and ocr_event[0]["tool"].startswith("tesseract 5.")

    # The row naming a missing file is reported in the run summary and as an event.
    assert any("missing.txt" in note for note in result["notes"])
    run_events = [e for e in open_dataset(dest, "events").to_table().to_pylist() if e["object_sha256"] is None]
    assert any("missing.txt" in e["detail"] and e["outcome"] == "warning" for e in run_events)


def test_metadata_file_given_outside_the_source(prefect_harness, seeds_dir, tmp_path):
    from archive_flows.ingest import ingest

    sidecar = tmp_path / "described-elsewhere.csv"
    sidecar.write_text("filename,dc.title,dc.language\n001_291c46b230e7e5bc.txt,Commemoration in Baku,en-GB\n",
                       encoding="utf-8")
    dest = str(tmp_path / "store")
    result = ingest(str(seeds_dir), dest=dest, metadata=str(sidecar))
    docs = {d["source_path"]: d for d in open_dataset(dest, "documents").to_table().to_pylist()}
    assert docs["001_291c46b230e7e5bc.txt"]["title"] == "Commemoration in Baku"
    assert docs["001_291c46b230e7e5bc.txt"]["language"] == "en-GB"
    assert docs["004_fe37357cb45043f5.txt"]["title"] == "Black January"  # undescribed files keep derived values
    assert any(str(sidecar) in note for note in result["notes"])  # the sidecar's own bytes were kept
    import hashlib

    from archive.storage import object_key, open_store

    assert (open_store(dest).get_bytes(object_key(hashlib.sha256(sidecar.read_bytes()).hexdigest()))
            == sidecar.read_bytes())


def test_a_costly_file_is_quarantined_naming_its_budget_and_the_batch_goes_on(prefect_harness, seeds_dir, tmp_path):
    from archive.publish import load_manifest
    from archive.storage import open_store
    from archive_flows.ingest import ingest

    src = tmp_path / "batch"
    src.mkdir()
    seeds = sorted(seeds_dir.iterdir())
    shutil.copy(seeds[0], src / "agency.txt")
    (src / "release.pdf").write_bytes(fu.render_pdf([fu.excerpt(seeds[2].read_text(encoding="utf-8"), 600)]))
    (src / "form-200-times.pdf").write_bytes(fu.form_bomb_pdf())  # 1.6 KB that would give 20 million characters
    (src / "unclosed-fonts.html").write_bytes(fu.unclosed_font_page(400))
    dest = str(tmp_path / "store")
    result = ingest(str(src), dest=dest, extract_seconds=30, reuse=False)

    files = {f["path"]: f for f in open_dataset(dest, "files").to_table().to_pylist()}
    assert {p: (f["outcome"], f["reason"]) for p, f in files.items()} == {
        "agency.txt": ("document", None),
        "release.pdf": ("document", None),
        "form-200-times.pdf": ("quarantine", "too-costly"),
        "unclosed-fonts.html": ("document", None),
    }
    (problem,) = result["problems"]
    assert problem["path"] == "form-200-times.pdf" and problem["detail"] == files["form-200-times.pdf"]["detail"]
    assert problem["detail"].startswith("text extraction stopped at ")
    assert problem["detail"].endswith("(100 a byte, at least 100,000; --text-per-byte 100)")
    assert result["stage_seconds"]["extract"] < 30  # stopped by its text budget, long before its time budget

    docs = {d["source_path"]: d for d in open_dataset(dest, "documents").to_table().to_pylist()}
    fonts = docs["unclosed-fonts.html"]["text"]
    assert all(f"Paragraph {n} of the story" in fonts for n in range(1, 401))
    manifest = load_manifest(open_store(dest), f"runs/{result['run_id']}.json")
    assert {k: manifest["parameters"][k] for k in ("extract_seconds", "ocr_page_seconds", "text_per_byte")} == {
        "extract_seconds": 30, "ocr_page_seconds": 60, "text_per_byte": 100}
