"""Text reuse at scale: peak memory and time of `archive reuse` and of an ingest run's reuse step as the archive grows.

    .venv/bin/python bench/reuse_scale.py                       # 2,000 and 20,000 documents
    .venv/bin/python bench/reuse_scale.py --sizes 2000 20000 100000 --words 300 --json-out reuse.json
    .venv/bin/python bench/reuse_scale.py --before 4d392c7      # also the in-memory MinHashLSH of that commit

For each size N it writes a store of N synthetic documents (Zipf-distributed
words, with passages of 50-100 words planted in 2-4 documents each) as ingest
runs of --run-docs documents without band hashes, as runs from before the
reuse step were, then measures, each in a fresh process:

  recompute       `archive reuse` (publish_reuse): sketches every document, publishes the band hashes, groups, aligns
  recompute-again the same with every band hash already in the store: no sketching
  step            the reuse step of one new ingest run of --run-docs documents against the N-document archive
                  (find_run_reuse, then settle_run_reuse under the commit lock; no Prefect, no manifest)
  before          (with --before REV) find_reuse of that commit's archive/reuse.py: datasketch's in-memory MinHashLSH

Memory is what the work adds above the process's size once its imports are done
(Linux: /proc/self/status VmHWM after resetting it through /proc/self/clear_refs),
and getrusage's ru_maxrss for the whole process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MEASURE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from archive.timing import measure_memory

    def measure(work):
        r = measure_memory(work)
        return {{**r, "start_mb": round(r["start_kb"] / 1024, 1), "added_mb": round(r["added_kb"] / 1024, 1),
                 "ru_maxrss_mb": round(r["ru_maxrss_kb"] / 1024, 1)}}
""")

RECOMPUTE = """
from archive.provenance import RunContext, new_run_id
from archive.reuse import band_scheme, publish_reuse
from archive.storage import open_store
store = open_store(sys.argv[1])
band_scheme()  # datasketch and scipy imported before measuring

def work():
    result = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    return {"counts": result["counts"], "stage_seconds": result["seconds"]}

print(json.dumps(measure(work)))
"""

STEP = """
from archive.commitlock import commit_lock
from archive.provenance import RunContext
from archive.reuse import band_scheme, find_run_reuse, settle_run_reuse
from archive.storage import open_store
import pyarrow.parquet as pq
store = open_store(sys.argv[1])
run = RunContext(sys.argv[2], None, "bench")
key = sys.argv[3]
band_scheme()

def work():
    doc_ids = pq.read_table(store.arrow_path(key), columns=["doc_id"]).column("doc_id").to_pylist()
    step = find_run_reuse(store, run, [key])
    with commit_lock(store, run.run_id):
        settled = settle_run_reuse(store, run, step, set(doc_ids))
    return {"figures": settled.figures, "stage_seconds": step.stats["seconds"]}

print(json.dumps(measure(work)))
"""

BEFORE = """
import subprocess, types
import pyarrow.compute as pc
from archive.read import open_dataset
from archive.storage import open_store
source = subprocess.run(["git", "-C", {repo!r}, "show", sys.argv[2] + ":archive/reuse.py"], capture_output=True,
                        text=True, check=True).stdout
before = types.ModuleType("archive._reuse_before")
before.__package__ = "archive"
sys.modules[before.__name__] = before  # dataclasses look their module up
exec(compile(source, "archive/reuse.py@" + sys.argv[2], "exec"), before.__dict__)
import datasketch  # imported before measuring, as the others do
documents = open_dataset(sys.argv[1], "documents")

def work():
    def stream():
        for batch in documents.to_batches(columns=["doc_id", "text"]):
            yield from zip(batch.column("doc_id").to_pylist(), batch.column("text").to_pylist())

    def get_texts(doc_ids):
        table = documents.to_table(columns=["doc_id", "text"], filter=pc.field("doc_id").isin(doc_ids))
        return zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist())

    stats = before.ReuseStats()
    rows = sum(1 for _ in before.find_reuse(stream(), run_id="20261122T153000Z-3f9a", get_texts=get_texts, stats=stats))
    return {"counts": {"passages": rows, "pairs": stats.pairs_with_reuse, "candidate_pairs": stats.candidate_pairs}}

print(json.dumps(measure(work)))
"""


def synthetic_texts(n: int, words: int, seed: int) -> list[str]:
    """n texts of about `words` words (Zipf over 8,000 words), with passages of 50-100 words planted in
    2-4 texts each."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(8000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    texts = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(words // 2, words * 3 // 2))) for _ in range(n)]
    for _ in range(max(1, n // 80)):
        passage = " ".join(rng.choices(vocabulary[500:], k=rng.randint(50, 100)))
        for host in rng.sample(range(n), rng.randint(2, 4)):
            cut = rng.randint(0, len(texts[host]))
            cut = texts[host].rfind(" ", 0, cut) + 1
            texts[host] = f"{texts[host][:cut]}{passage} {texts[host][cut:]}"
    return texts


def document_rows(run_id: str, texts: list[str], start: int) -> list[dict]:
    from archive.records import utc_now
    from archive.storage import object_key

    now = utc_now()
    rows = []
    for number, text in enumerate(texts, start):
        doc_id = hashlib.sha256(f"bench document {number}".encode()).hexdigest()
        rows.append({
            "doc_id": doc_id, "text_sha256": hashlib.sha256(text.encode()).hexdigest(), "run_id": run_id,
            "collection": "bench", "source_path": f"bench/{number:07d}.txt", "object_key": object_key(doc_id),
            "media_type": "text/plain", "puid": "x-fmt/111", "encoding": "utf-8", "extractor": "bench",
            "extractor_version": "1", "title": None, "date": None, "date_text": None, "creator": None, "language": "en",
            "publisher": None, "source": None, "rights": None, "description": None, "subject": None, "identifier": None,
            "type": None, "char_count": len(text), "word_count": len(text.split()), "text": text, "ingested_at": now,
        })
    return rows


def build_store(path: Path, n: int, words: int, run_docs: int, seed: int) -> list[str]:
    """N documents as committed ingest runs without band hashes; returns the run ids."""
    from archive.provenance import RunContext, new_run_id
    from archive.publish import build_manifest, commit_manifest, part_key, write_part
    from archive.storage import open_store

    store = open_store(str(path))
    texts = synthetic_texts(n, words, seed)
    runs = []
    for start in range(0, n, run_docs):
        run = RunContext(new_run_id(), "bench", "bench")
        rows = document_rows(run.run_id, texts[start:start + run_docs], start)
        part = write_part(store, "documents", part_key("documents", run.run_id, 0, "bench"), rows)
        counts = {"files": len(rows), "documents": len(rows), "duplicates": 0, "quarantined": 0, "skipped": 0}
        commit_manifest(store, build_manifest(run_id=run.run_id, kind="ingest", collection="bench", source="bench",
                                              started_at=run.started_at, flow_run_id=None, started_by=run.started_by,
                                              parameters={}, counts=counts, parts=[part]))
        runs.append(run.run_id)
    return runs


def new_run_part(path: Path, n: int, run_docs: int, words: int, seed: int) -> tuple[str, str]:
    """An uncommitted documents part of a new run: run_docs documents, some sharing passages with the archive."""
    from archive.provenance import new_run_id
    from archive.publish import part_key, write_part
    from archive.storage import open_store

    store = open_store(str(path))
    archive_texts = synthetic_texts(n, words, seed)
    rng = random.Random(seed + 1)
    texts = synthetic_texts(run_docs, words, seed + 2)
    for i in range(0, run_docs, 20):  # one in twenty quotes an archived document
        quoted = archive_texts[rng.randrange(n)].split()
        start = rng.randrange(max(1, len(quoted) - 80))
        texts[i] = texts[i] + " " + " ".join(quoted[start:start + 80])
    run_id = new_run_id()
    rows = document_rows(run_id, texts, 10 ** 6)
    return run_id, write_part(store, "documents", part_key("documents", run_id, 0, "bench"), rows).key


def measure(script: str, *args: str) -> dict:
    code = MEASURE.format(repo=str(REPO)) + script.replace("{repo!r}", repr(str(REPO)))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="archive sizes in documents")
    parser.add_argument("--words", type=int, default=300, help="mean words per document (default 300)")
    parser.add_argument("--run-docs", type=int, default=1000, help="documents per ingest run (default 1000)")
    parser.add_argument("--before", metavar="REV",
                        help="also measure archive/reuse.py of this git revision (in memory)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--dir", help="where the stores go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--json-out", metavar="FILE")
    args = parser.parse_args(argv)

    root = Path(args.dir or tempfile.mkdtemp(prefix="archive-reuse-bench-"))
    results = []
    try:
        for n in args.sizes:
            path = root / f"store-{n}"
            shutil.rmtree(path, ignore_errors=True)
            build_store(path, n, args.words, args.run_docs, args.seed)
            result = {"documents": n, "words": args.words}
            if args.before:
                result["before"] = measure(BEFORE, str(path), args.before)
            result["recompute"] = measure(RECOMPUTE, str(path))
            result["recompute-again"] = measure(RECOMPUTE, str(path))
            run_id, key = new_run_part(path, n, args.run_docs, args.words, args.seed)
            result["step"] = measure(STEP, str(path), run_id, key)
            results.append(result)
            print(_line(result), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _line(result: dict) -> str:
    parts = [f"{result['documents']:>7,} documents of ~{result['words']} words:"]
    for name in ("before", "recompute", "recompute-again", "step"):
        if name in result:
            r = result[name]
            found = r.get("counts") or r.get("figures") or {}
            parts.append(f"\n  {name:<16} {r['seconds']:>7.1f} s   +{r['added_mb']:>6.1f} MB "
                         f"above {r['start_mb']:.0f} MB "
                         f"(ru_maxrss {r['ru_maxrss_mb']:.0f} MB)   {found.get('pairs', 0):,} pairs, "
                         f"{found.get('passages', 0):,} passages, {found.get('candidate_pairs', 0):,} candidates")
    return "".join(parts)


if __name__ == "__main__":
    sys.exit(main())
