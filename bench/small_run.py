"""A small run into archives of growing size: what the archive's size adds to one ingest.

    .venv/bin/python bench/small_run.py [--files 1000] [--sizes 0 100000 1000000] [--repeat 3] [--code DIR]
        [--json-out FILE]

For each size it makes a local store holding that many committed documents, then times the whole command
`archive ingest CORPUS --dest STORE --json` (the default: text reuse on) on a corpus of --files newspaper-like
files (bench/reprints.py's generator: wire-story reprints with OCR noise), each run into a fresh copy of the store
(hard links: the same bytes), --repeat times, sizes interleaved. Reported: median wall and CPU seconds (the
command's processes, user and system: less moved by other work on the machine than wall time), the peak RSS of
the command's largest process (ru_maxrss) and the flow process's sampled peak (it looks committed documents up
and commits), each as a ratio to the empty store's.

The stores are simulated: runs of at most 100,000 documents each, whose documents, files and records parts are
the rows of a real ingest of 100 of the corpus generator's files repeated with new ids (doc_ids, paths, record ids;
texts cut to their first 200 characters), each committed with a manifest, its Iceberg tables followed and its
doc-id index written, as an ingest's commit does. They hold no band hashes (reuse_bands), as if ingested with
--no-reuse: an ingest's reuse step reads every committed band-hash part, so a store with band hashes costs a run
more in proportion to them (BENCHMARKS.md, "Text reuse at scale").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gitrev import code_version  # noqa: E402
from reprints import ProcessPeaks, make_corpus  # noqa: E402
from run import _archive_cmd, _last_json, run_child  # noqa: E402

RUN_DOCUMENTS = 100_000  # documents a simulated run commits


def _template(root: Path):
    """The documents, files and records rows of a real ingest of 100 generated files (library, one batch)."""
    from archive.catalogue.keyindex import CommittedDocuments
    from archive.ingest import commit_run, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.read import open_dataset
    from archive.sources import open_source
    from archive.storage import open_store

    make_corpus(root / "template", 100, seed=7)
    store = open_store(str(root / "template-store"))
    source = open_source(str(root / "template" / "corpus"))
    run = RunContext(new_run_id(), "bench", source.url)
    refs = sorted(source.iter_files(), key=lambda r: r.path)
    commit_run(store, run, [process_batch(store, source, run, 0, refs, known=CommittedDocuments(store, []))],
               parameters={}, warnings=[])
    return {name: open_dataset(store, name).to_table() for name in ("documents", "files", "records")}


def _simulate(store_dir: Path, documents: int, template: dict) -> None:
    """Commit runs of RUN_DOCUMENTS documents (at most) made from the template's rows with new ids."""
    import hashlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from archive.catalogue.keyindex import write_indexes
    from archive.provenance import new_run_id, who_started
    from archive.publish import build_manifest, commit_manifest, part_key, write_table_part
    from archive.records import utc_now
    from archive.storage import open_store

    store = open_store(str(store_dir))
    docs = template["documents"]
    docs = docs.set_column(docs.schema.get_field_index("text"), "text", pc.utf8_slice_codeunits(docs["text"], 0, 200))
    made = 0
    while made < documents:
        count = min(RUN_DOCUMENTS, documents - made)
        run_id = new_run_id()
        ids = [hashlib.sha256(f"{store_dir}:{made + i}".encode()).hexdigest() for i in range(count)]
        paths = [f"sim/{(made + i) // 1000:04d}/{made + i:07d}.txt" for i in range(count)]
        record_ids = [hashlib.sha256(f"record:{p}".encode()).hexdigest()[:32] for p in paths]
        keys = [f"objects/sha256/{d[:2]}/{d[2:4]}/{d}" for d in ids]
        columns = {
            "documents": {"doc_id": ids, "text_sha256": ids, "source_path": paths, "object_key": keys},
            "files": {"sha256": ids, "doc_id": ids, "path": paths, "object_key": keys},
            "records": {"record_id": record_ids, "doc_id": ids, "path": paths},
        }
        parts = []
        for name, values in columns.items():
            table = template[name].filter(pc.equal(template[name]["outcome"], "document")) if name == "files" \
                else template[name]
            table = table.take(pa.array(np.arange(count) % table.num_rows))
            for column, value in {**values, "run_id": [run_id] * count}.items():
                table = table.set_column(table.schema.get_field_index(column), column, pa.array(value, pa.string()))
            parts.append(write_table_part(store, name, part_key(name, run_id, 0), table))
        manifest = build_manifest(run_id=run_id, kind="ingest", collection="bench", source="simulated",
                                  started_at=utc_now(), flow_run_id=None, started_by=who_started(),
                                  parameters={"simulated": True},
                                  counts={"files": count, "documents": count, "duplicates": 0, "quarantined": 0,
                                          "skipped": 0, "records": count, "updated": 0}, parts=parts)
        commit_manifest(store, manifest)
        write_indexes(store, manifest)
        made += count
        time.sleep(1.1)  # (run ids are made by the second)


def _flow_peak(processes: list[dict]) -> int:
    return max((p["peak_rss_mib"] for p in processes if p["process"] == "archive ingest (flow)"), default=0)


def _make_stores(root: Path, sizes: list[int]) -> None:
    """The stores of these sizes under root, each made once (kept in --dir for the next command)."""
    template = None
    for size in sizes:
        store, made = root / f"store-{size}", root / f"store-{size}.made"
        if made.exists():
            continue
        shutil.rmtree(store, ignore_errors=True)
        started = time.monotonic()
        template = template or _template(root)
        store.mkdir()
        _simulate(store, size, template)
        made.touch()
        print(f"store of {size:,} documents made in {time.monotonic() - started:.1f} s", flush=True)


def _copy(store: Path, to: Path) -> None:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(store, to, copy_function=os.link)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="working directory, kept, its stores used again by the next command "
                                      "(default: a temporary one, removed afterwards)")
    parser.add_argument("--code", help="run the ingests with the archive and flows packages of this checkout "
                                       "(another commit's), the stores still made with this one's")
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="archive-small-run-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        make_corpus(root, args.files, seed=31)  # (root/corpus)
        # (in a process of its own: a child's ru_maxrss counts the memory of the process it was forked from)
        maker = multiprocessing.get_context("spawn").Process(target=_make_stores, args=(root, args.sizes))
        maker.start()
        maker.join()
        if maker.exitcode:
            raise SystemExit(f"making the stores failed ({maker.exitcode})")
        results: dict[int, list[dict]] = {size: [] for size in args.sizes}
        for attempt in range(args.repeat):
            for size in args.sizes:  # (interleaved: a change in the machine's load touches every size alike)
                dest = root / "dest"
                _copy(root / f"store-{size}", dest)
                cmd = _archive_cmd() + ["ingest", str(root / "corpus"), "--dest", str(dest), "--json"]
                env = {**os.environ, "PYTHONPATH": args.code} if args.code else None
                peaks = ProcessPeaks()
                peaks.start()
                try:
                    r = run_child(f"{size}-{attempt}", cmd, root, env=env)
                finally:
                    processes = peaks.stop()
                if r["rc"] != 0:
                    raise SystemExit(f"ingest into {size} failed ({r['rc']}):\n{r['stderr'][-3000:]}")
                out = _last_json(r["stdout"]) or {}
                results[size].append({"wall_s": round(r["wall"], 2), "cpu_s": round(r["cpu_s"], 2),
                                      "peak_rss_mib": round(r["peak_rss_mib"]),
                                      "processes": processes, "documents": out.get("counts", {}).get("documents")})
                flow = _flow_peak(processes)
                print(f"  {size:>9,} documents: {r['wall']:.2f} s, CPU {r['cpu_s']:.1f} s, "
                      f"largest process {r['peak_rss_mib']:.0f} MiB, "
                      f"the flow's {flow} MiB", flush=True)
        base = args.sizes[0]
        summary = {}
        for size in args.sizes:
            wall = statistics.median(r["wall_s"] for r in results[size])
            cpu = statistics.median(r["cpu_s"] for r in results[size])
            rss = statistics.median(r["peak_rss_mib"] for r in results[size])
            flow = statistics.median(_flow_peak(r["processes"]) for r in results[size])
            summary[size] = {"median_wall_s": wall, "median_cpu_s": cpu, "median_peak_rss_mib": rss,
                             "median_flow_rss_mib": flow}
        for size in args.sizes:
            now, empty = summary[size], summary[base]
            now["wall_ratio"] = round(now["median_wall_s"] / empty["median_wall_s"], 3)
            now["cpu_ratio"] = round(now["median_cpu_s"] / empty["median_cpu_s"], 3)
            now["rss_ratio"] = round(now["median_peak_rss_mib"] / empty["median_peak_rss_mib"], 3)
            now["flow_rss_ratio"] = round(now["median_flow_rss_mib"] / empty["median_flow_rss_mib"], 3)
            print(f"{size:>9,} documents: median {summary[size]['median_wall_s']:.2f} s "
                  f"({summary[size]['wall_ratio']:.3f}x), CPU {summary[size]['median_cpu_s']:.1f} s "
                  f"({summary[size]['cpu_ratio']:.3f}x), {summary[size]['median_peak_rss_mib']:.0f} MiB "
                  f"({summary[size]['rss_ratio']:.3f}x), the flow's {summary[size]['median_flow_rss_mib']:.0f} MiB "
                  f"({summary[size]['flow_rss_ratio']:.3f}x)")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({
                "code": code_version(Path(args.code) if args.code else REPO),
                "files": args.files, "repeat": args.repeat, "load": os.getloadavg(),
                "summary": summary, "runs": results}, indent=2) + "\n")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
