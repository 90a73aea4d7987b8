"""Reading the current view of the records against reading the documents dataset, at 100,000 records.

    .venv/bin/python bench/records_read.py                        # 100,000 records (about 2 minutes to build)
    .venv/bin/python bench/records_read.py --records 20000 --json-out records.json

It writes a store with the library (no ingest, no Prefect): --records documents with texts of 2-20 KB (mean about
11 KB) in ingest runs of --run-docs documents, each with version 1 of its record; then a correction run (a new
version of --corrected records, counted as updated) and a withdrawal of --withdrawn records. Then, in this process,
the median of --repeat timings of each read, every one from open_dataset (manifests listed, the current view's
filter worked out) to an Arrow table in memory:

  documents           open_dataset(DEST, "documents").to_table(): today's read of the documents
  documents, no text  the same without the text column (the metadata an analyst reads beside the records)
  records, current    open_dataset(DEST, "records").to_table(): one row per record, latest version, withdrawn out
  records, all rows   open_dataset(DEST, "records", runs=[...]).to_table(): every version, no filter
  duckdb              a group by over the current records and over the documents, through DuckDB

The target: records, current / documents <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = ("archive harbour council minutes letter january black press release city board river bridge winter "
         "committee document record version history report street people year town station").split()


def build(dest: Path, records: int, run_docs: int, corrected: int, withdrawn: int, seed: int) -> dict:
    from archive.catalogue.identity import as_json, describe, description_sha256, record_id
    from archive.catalogue.withdraw import withdraw
    from archive.provenance import RunContext, new_run_id
    from archive.publish import build_manifest, commit_manifest, new_attempt, part_key, write_part
    from archive.records import arrow_schema, utc_now
    from archive.storage import object_key, open_store

    store = open_store(str(dest))
    rng = random.Random(seed)
    latest: dict[str, dict] = {}
    started = time.monotonic()

    def commit(run, parts, counts, kind="ingest"):
        commit_manifest(store, build_manifest(
            run_id=run.run_id, kind=kind, collection="bench", source="bench", started_at=run.started_at,
            flow_run_id=None, started_by=run.started_by, parameters={}, counts=counts, parts=parts))

    for first in range(0, records, run_docs):
        run = RunContext(new_run_id(), "bench", "bench")
        documents, rows = [], []
        for number in range(first, min(records, first + run_docs)):
            text = " ".join(rng.choices(WORDS, k=rng.randint(300, 3000)))
            doc_id = f"{number:064x}"
            path = f"box-{number // 1000:03d}/page-{number:06d}.txt"
            derived = {"title": f"Page {number}", "language": "en", "date": f"19{number % 100:02d}-01-01"}
            values = describe(derived, None)
            documents.append({
                **dict.fromkeys(arrow_schema("documents").names),  # (columns the bench does not fill: null)
                "doc_id": doc_id, "text_sha256": doc_id, "run_id": run.run_id, "collection": "bench",
                "source_path": path, "object_key": object_key(doc_id), "media_type": "text/plain",
                "puid": "x-fmt/111", "encoding": "utf-8", "extractor": "charset-normalizer", "extractor_version": "3",
                **values, "char_count": len(text), "word_count": text.count(" ") + 1, "text": text,
                "ingested_at": utc_now()})
            row = {"record_id": record_id(path), "path": path, "version": 1, "run_id": run.run_id, "change": "new",
                   "changed_fields": [], "reason": None, "doc_id": doc_id, "collection": "bench", **values,
                   "sidecar": None, "stated": None, "derived": as_json(derived),
                   "description_sha256": description_sha256(values), "recorded_at": utc_now()}
            rows.append(row)
            latest[path] = row
        parts = [write_part(store, "documents", part_key("documents", run.run_id, 0, new_attempt()), documents),
                 write_part(store, "records", part_key("records", run.run_id, 0, new_attempt()), rows)]
        commit(run, parts, {"files": len(rows), "documents": len(rows), "duplicates": 0, "quarantined": 0,
                            "skipped": 0, "updated": 0})
    run = RunContext(new_run_id(), "bench", "bench")
    changed = []
    for path in rng.sample(sorted(latest), corrected):
        stated = {"title": f"{latest[path]['title']} (corrected)"}
        values = describe(json.loads(latest[path]["derived"]), stated)
        changed.append({**latest[path], **values, "version": 2, "run_id": run.run_id, "change": "metadata",
                        "changed_fields": ["title"], "stated": as_json(stated), "sidecar": "metadata.csv line 2",
                        "description_sha256": description_sha256(values), "recorded_at": utc_now()})
    commit(run, [write_part(store, "records", part_key("records", run.run_id, 0, new_attempt()), changed)],
           {"files": corrected, "documents": 0, "duplicates": corrected, "quarantined": 0, "skipped": 0,
            "updated": corrected})
    withdraw(store, rng.sample(sorted(latest), withdrawn), "bench withdrawal")
    return {"build_seconds": round(time.monotonic() - started, 1)}


def timed(work, repeat: int) -> dict:
    seconds, rows = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        rows = work()
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 4), "min_s": round(min(seconds), 4), "rows": rows}


def measure(dest: Path, repeat: int) -> dict:
    import duckdb

    from archive.publish import committed_manifests
    from archive.read import open_dataset
    from archive.records import arrow_schema
    from archive.storage import open_store

    runs = [m["run_id"] for m in committed_manifests(open_store(str(dest)))]
    no_text = [f.name for f in arrow_schema("documents") if f.name != "text"]

    def group_by(name):
        dataset = open_dataset(str(dest), name)  # noqa: F841 - read by DuckDB
        return len(duckdb.sql("select language, count(*) from dataset group by language").fetchall())

    results = {
        "documents": timed(lambda: open_dataset(str(dest), "documents").to_table().num_rows, repeat),
        "documents_no_text": timed(lambda: open_dataset(str(dest), "documents").to_table(columns=no_text).num_rows,
                                   repeat),
        "records_current": timed(lambda: open_dataset(str(dest), "records").to_table().num_rows, repeat),
        "records_all_rows": timed(lambda: open_dataset(str(dest), "records", runs=runs).to_table().num_rows, repeat),
        "duckdb_documents": timed(lambda: group_by("documents"), repeat),
        "duckdb_records_current": timed(lambda: group_by("records"), repeat),
    }
    docs = results["documents"]["median_s"]
    results["ratios"] = {
        "records_current / documents": round(results["records_current"]["median_s"] / docs, 3),
        "records_current / documents_no_text": round(results["records_current"]["median_s"]
                                                     / results["documents_no_text"]["median_s"], 3),
        "records_current / records_all_rows": round(results["records_current"]["median_s"]
                                                    / results["records_all_rows"]["median_s"], 3),
        "duckdb records_current / documents": round(results["duckdb_records_current"]["median_s"]
                                                    / results["duckdb_documents"]["median_s"], 3),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--run-docs", type=int, default=10_000, help="documents per ingest run (default 10,000)")
    parser.add_argument("--corrected", type=int, default=10_000, help="records given a version 2 (default 10,000)")
    parser.add_argument("--withdrawn", type=int, default=1_000, help="records withdrawn (default 1,000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", help="an existing store built by this script (skips the build)")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archive-records-bench-") as tmp:
        dest = Path(args.store) if args.store else Path(tmp) / "store"
        built = {} if args.store else build(dest, args.records, args.run_docs, args.corrected, args.withdrawn,
                                            args.seed)
        results = {"records": args.records, "corrected": args.corrected, "withdrawn": args.withdrawn, **built,
                   "reads": measure(dest, args.repeat)}
    for name, figures in results["reads"].items():
        print(f"{name:<28} {json.dumps(figures)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
