"""The `archive` command: thin shells over the library and the flows; prints, the library never does."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from contextlib import contextmanager

from . import __version__
from .errors import ArchiveError, ConfigurationError, SourceError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's own logging stays out of the CLI's output unless asked for.
    Must run before prefect is first imported."""
    if not verbose:
        # Failures are reported by the CLI itself, once, in one line.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _show(path: str) -> str:
    """A path as one printable line: control characters (newlines...) escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in path)


@contextmanager
def _flow_run(args):
    """Around a flow this command runs: progress on stderr when stderr is a terminal and
    not --json, and the Prefect settings of a command's flow run (flows.context)."""
    from flows import progress
    from flows.context import command_line_run

    bar = _Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    stop = progress.listen(bar) if bar else (lambda: None)
    try:
        with command_line_run():
            yield
    finally:
        stop()
        if bar:
            bar.close()


class _Progress:
    """files done / total and rate, on one line of a terminal's stderr."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = False

    def __call__(self, done: int, total: int | None, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        of = f"/{total:,}" if total else ""
        self.stream.write(f"\r  {done:,}{of} files  {rate:,.0f} files/s  ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def cmd_ingest(args) -> int:
    from .sources import open_source
    from .storage import open_store, resolve_dest

    dest = resolve_dest(args.dest)
    try:
        open_source(args.source)  # a wrong SOURCE is a usage error, found before Prefect starts
    except SourceError as exc:
        return _usage(str(exc))
    if args.metadata and not os.path.isfile(args.metadata):
        return _usage(f"--metadata {args.metadata}: no such file")
    if args.dask and args.workers not in (None, 1):
        return _usage("--workers: with --dask the batches run on the cluster's workers, not local processes")
    try:
        open_store(dest).check_writable()
    except ArchiveError as exc:
        return _fail(f"ingest failed before it started: {exc}", args)

    _quiet_prefect(args.verbose)
    source, workers = args.source, args.workers
    if args.dask:
        from flows.service import absolute_location, ingest_on

        # The cluster's workers may run in another directory: they get absolute paths.
        source, dest, workers = absolute_location(source), absolute_location(dest), 1
        ingest = ingest_on(args.dask)
    else:
        from flows.ingest import ingest
    try:
        with _flow_run(args):
            result = ingest(
                source=source, dest=dest, collection=args.collection,
                max_file_bytes=args.max_file_bytes, batch_files=args.batch_files,
                metadata=os.path.abspath(args.metadata) if args.metadata else None, workers=workers,
                reuse=not args.no_reuse,
            )
    except KeyboardInterrupt:
        return _fail("ingest interrupted; nothing was committed", args)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one clear line
        return _fail(f"ingest failed, nothing was committed: {_reason(exc)}", args)
    if args.json:
        print(json.dumps({k: result[k] for k in ("run_id", "status", "dest", "manifest", "counts", "problems", "seconds", "stage_seconds")},
                         ensure_ascii=False))
    else:
        _print_summary(result)
    return EXIT_OK


def _print_summary(result: dict) -> None:
    counts = result["counts"]
    print(f"Run {result['run_id']} committed to {result['dest']}")
    print(f"  manifest     {result['manifest']}")
    for name in ("files", "documents", "duplicates", "quarantined", "skipped"):
        print(f"  {name:<12} {counts[name]:>8,}")
    seconds = result["seconds"]
    rate = counts["files"] / seconds if seconds else 0
    print(f"  {result['bytes']:,} bytes in {seconds:.1f} s ({rate:,.0f} files/s)")
    if result["problems"]:
        shown = result["problems"]
        print(f"Set aside ({counts['quarantined']} quarantined, {counts['skipped']} skipped):")
        for p in shown:
            print(f"  {_show(p['path'])}: {p['outcome']} {p['reason']}: {_show(p['detail'])}")
        hidden = counts["quarantined"] + counts["skipped"] - len(shown)
        if hidden > 0:
            print(f"  ... and {hidden:,} more: see the quarantine and files datasets")
    reuse = result.get("reuse")
    if reuse:
        print(f"Text reuse: {reuse.get('pairs', 0):,} pair(s) of documents share {reuse.get('passages', 0):,} passage(s)"
              f" (new documents against {reuse.get('runs_compared', 0):,} committed run(s); see archive lineage DOC_ID)")
    for note in result.get("notes", []):
        print(f"Note: {note}")


def cmd_runs(args) -> int:
    from .publish import committed_manifests
    from .storage import open_store

    try:
        manifests = list(committed_manifests(open_store(args.dest)))
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps([{k: m[k] for k in ("run_id", "kind", "status", "collection", "source", "started_at", "committed_at",
                                             "counts", "started_by")} for m in manifests], ensure_ascii=False))
        return EXIT_OK
    if not manifests:
        print("No committed runs.")
        return EXIT_OK
    print(f"{'run':<24} {'kind':<7} {'committed':<20} {'files':>7} {'docs':>7} {'dups':>7} {'quar':>6} {'skip':>6}  collection")
    for m in manifests:
        c = m["counts"]
        if m["kind"] == "reuse":
            print(f"{m['run_id']:<24} {m['kind']:<7} {m['committed_at'][:19]:<20} {c['pairs']:,} document pairs share "
                  f"{c['passages']:,} passages")
            continue
        if m["kind"] == "audit":
            print(f"{m['run_id']:<24} {m['kind']:<7} {m['committed_at'][:19]:<20} checked {c['objects']:,} originals, "
                  f"{c['parts']:,} parts: {c['problems']:,} problem(s)")
            continue
        print(f"{m['run_id']:<24} {m['kind']:<7} {m['committed_at'][:19]:<20} {c['files']:>7,} {c['documents']:>7,} "
              f"{c['duplicates']:>7,} {c['quarantined']:>6,} {c['skipped']:>6,}  {m['collection'] or ''}")
    return EXIT_OK


def cmd_verify(args) -> int:
    from .storage import open_store, resolve_dest

    dest = resolve_dest(args.dest)
    open_store(dest)
    _quiet_prefect(args.verbose)
    from flows.audit import fixity_audit

    try:
        with _flow_run(args):
            report = fixity_audit(dest=dest, runs=args.run or None, workers=args.workers)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one clear line
        return _fail(f"verify could not run: {_reason(exc)}", args)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        checked = report["checked"]
        for problem in report["problems"]:
            print(problem["message"])
        verdict = "all hold" if not report["problems"] else f"{len(report['problems'])} problem(s)"
        print(f"Fixity of {report['dest']}: {verdict}. Checked {checked['parts']:,} part file(s) of {checked['runs']:,} run(s) "
              f"and {checked['objects']:,} original(s) in {report['seconds']:.1f} s; audit recorded as run {report['run_id']}.")
    return EXIT_OK if not report["problems"] else EXIT_FAILED


def cmd_lineage(args) -> int:
    from .lineage import lineage
    from .storage import open_store

    try:
        story = lineage(open_store(args.dest), args.id, run=args.run)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps(story, default=str, ensure_ascii=False))
        return EXIT_OK
    original = story["original"]
    print(f"sha256 {story['sha256']}")
    print(f"original  {original['key']} ({'stored, ' + format(original['bytes'], ',') + ' bytes' if original['stored'] else 'MISSING from the store'})")
    print("sources:")
    for src in story["sources"]:
        why = f" ({src['reason']})" if src["reason"] else ""
        print(f"  {_show(src['path'])}  run {src['run_id']}: {src['outcome']}{why}  {src['media_type'] or ''} {src['puid'] or ''}".rstrip())
    print("published:" if story["documents"] else "published: no document was made from these bytes")
    for d in story["documents"]:
        print(f"  document in run {d['run_id']}, part {d['part']}: {d['title'] or '(no title)'}; {d['char_count']:,} characters, "
              f"text sha256 {d['text_sha256']}, by {d['extractor']} {d['extractor_version']}")
    if story["shares_text_with"]:
        print("shares text with:")
        for other in story["shares_text_with"]:
            print(f"  {other['doc_id']}  similarity {other['similarity']:.3f}, {other['passages']} passage(s), {other['words']} words"
                  f"  (run {other['run_id']})")
    print("events:")
    for e in story["events"]:
        tool = f" [{e['tool']}]" if e["tool"] else ""
        print(f"  {e['event_time'].isoformat()}  {e['event_type']:<27} {e['outcome']:<8} {e['agent']} {e['agent_version']}{tool}  "
              f"run {e['run_id']}  flow run {e['flow_run_id'] or '-'}")
        print(f"      {_show(e['detail'])}")
    print("runs:")
    for r in story["runs"]:
        who = r["started_by"]
        by = who.get("deployment") or f"{who.get('user')}@{who.get('host')}"
        print(f"  {r['run_id']}  {r['kind']}  committed {r['committed_at']}  by {by}  with {r['software']}")
    return EXIT_OK


def cmd_prov(args) -> int:
    from .provenance import export_run_prov
    from .storage import open_store

    try:
        document = export_run_prov(open_store(args.dest), args.run_id)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    text = document.serialize(format=args.format, indent=2) if args.format != "provn" else document.get_provn()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_bag(args) -> int:
    from .bag import export_bag
    from .storage import open_store

    try:
        result = export_bag(open_store(args.dest), args.run_id, args.out_dir)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Bag of run {result['run_id']} written to {result['bag']}: {result['files']:,} original(s), "
              f"manifests {' and '.join(result['algorithms'])}.")
    return EXIT_OK


def cmd_reuse(args) -> int:
    from .provenance import RunContext, new_run_id
    from .reuse_run import publish_reuse
    from .storage import open_store

    try:
        store = open_store(args.dest)
        result = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps(result))
    else:
        c = result["counts"]
        print(f"Reuse run {result['run_id']} committed: {c['pairs']:,} pair(s) of documents share {c['passages']:,} passage(s) "
              f"among {c['documents']:,} documents ({c['candidate_pairs']:,} candidate pairs compared; band hashes computed "
              f"for {c['documents_sketched']:,} documents that had none).")
    return EXIT_OK


def cmd_gc(args) -> int:
    from .gc import delete_garbage, find_garbage
    from .storage import open_store

    removed = []
    try:
        store = open_store(args.dest)
        plan = find_garbage(store, args.older_than)
        result = delete_garbage(store, plan, on_removed=removed.append) if args.delete else None
    except ArchiveError as exc:
        done = f"{len(removed):,} unreferenced key(s) were removed before it stopped" if removed else "nothing was removed"
        return _fail(f"gc failed, {done}: {exc}", args)
    gone = list(result.removed) if result else list(plan.candidates)
    totals = {"parts": sum(c.kind == "part" for c in gone), "objects": sum(c.kind == "object" for c in gone),
              "other": sum(c.kind == "other" for c in gone), "bytes": sum(c.bytes for c in gone)}
    if args.json:
        print(json.dumps({
            "dest": plan.dest, "dry_run": not args.delete, "older_than_seconds": plan.older_than,
            "committed_runs": len(plan.runs),
            "candidates": [{"key": c.key, "kind": c.kind, "bytes": c.bytes, "age_seconds": round(c.age, 1)}
                           for c in plan.candidates],
            "removed": [c.key for c in result.removed] if result else [],
            "totals": totals,
            "kept": {"too_recent": len(plan.too_recent), "too_recent_bytes": sum(c.bytes for c in plan.too_recent),
                     "referenced": plan.referenced,
                     "referenced_meanwhile": [c.key for c in result.referenced_meanwhile] if result else [],
                     "foreign": list(plan.foreign)},
            "already_gone": [c.key for c in result.already_gone] if result else [],
        }, ensure_ascii=False))
        return EXIT_OK
    for c in gone:
        print(f"{'removed' if result else 'would remove'}  {c.kind:<6} {c.bytes:>13,} bytes  {_age(c.age):>6} old  {_show(c.key)}")
    kept = [f"{len(plan.too_recent):,} too recent (younger than {_age(plan.older_than)})",
            f"{plan.referenced:,} referenced by {len(plan.runs):,} committed run(s)"]
    if result and result.referenced_meanwhile:
        kept.append(f"{len(result.referenced_meanwhile):,} referenced by a run committed meanwhile")
    if plan.foreign:
        kept.append(f"{len(plan.foreign):,} not written by archive (left alone)")
    what = f"{totals['parts']:,} part(s), {totals['objects']:,} object(s), {totals['other']:,} other: {totals['bytes']:,} bytes"
    if result:
        print(f"Removed {what} from {plan.dest}. Kept: {', '.join(kept)}.")
        if result.already_gone:
            print(f"  {len(result.already_gone):,} were already gone (removed by someone else meanwhile).")
    else:
        print(f"Would remove {what} from {plan.dest}. Kept: {', '.join(kept)}.")
        print("Dry run: nothing was removed; --delete removes them.")
    return EXIT_OK


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h" + (f"{seconds % 3600 // 60:02d}m" if seconds % 3600 >= 60 else "")
    return f"{seconds // 86400}d" + (f"{seconds % 86400 // 3600:02d}h" if seconds % 86400 >= 3600 else "")


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str) -> float:
    """30m, 1h, 2d, 1h30m, 0s, or plain seconds."""
    spec = text.strip().lower()
    if not re.fullmatch(r"(\d+(\.\d+)?[smhdw])+|\d+(\.\d+)?", spec):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 1h, 2d, 0s)")
    return float(sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw]?)", spec)))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if not isinstance(exc, ArchiveError) else text


def _fail(message: str, args) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"archive: {message}", file=sys.stderr)
    return EXIT_FAILED


def _usage(message: str) -> int:
    print(f"archive: {message}", file=sys.stderr)
    return EXIT_USAGE


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M, 2G, 1000000)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archive", description="Archival ingest, provenance and fixity.")
    parser.add_argument("--version", action="version", version=f"archive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p, json_help="print one JSON object instead of text"):
        p.add_argument("--dest", help="store: a directory or s3://bucket/prefix (default: $ARCHIVE_DEST or ./archive-store)")
        p.add_argument("--json", action="store_true", help=json_help)
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("ingest", help="ingest a folder or S3 prefix into DEST as a committed run")
    p.add_argument("source", metavar="SOURCE", help="a folder, or s3://bucket/prefix")
    common(p)
    p.add_argument("--collection", help="collection name recorded on every document")
    p.add_argument("--metadata", metavar="FILE", help="a metadata.csv (Dublin Core) to use instead of SOURCE/metadata.csv")
    p.add_argument("--max-file-bytes", type=_size, default=256 << 20,
                   help="larger files are kept but quarantined as too-large (default 256M)")
    p.add_argument("--batch-files", type=int, default=1000, help="files per batch task (default 1000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes for the batches (default: one per core)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the batches on the Dask cluster at ADDRESS (tcp://HOST:8786); SOURCE and DEST must be "
                        "reachable from its workers (S3, or a shared file system)")
    p.add_argument("--no-reuse", action="store_true",
                   help="skip the text reuse step (no reuse rows or band hashes for this run; `archive reuse` catches up)")
    p.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("runs", help="list committed runs")
    common(p, "print a JSON array")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("verify", help="fixity audit: re-hash originals and part files against the manifests")
    common(p)
    p.add_argument("--run", action="append", metavar="RUN_ID", help="only this run (repeatable; default: every committed run)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes for re-hashing originals (default: one per core, from 20,000 originals on)")
    p.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("lineage", help="one record's story: source paths, original, events, publication")
    p.add_argument("id", metavar="DOC_ID_OR_PATH", help="a doc_id / sha256, or a source path as recorded in the files dataset")
    common(p)
    p.add_argument("--run", help="with a path: the run to look it up in (default: the latest that saw it)")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("prov", help="export a run as W3C PROV")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--dest", help="store (default: $ARCHIVE_DEST or ./archive-store)")
    p.add_argument("--format", choices=["json", "provn", "jsonld"], default="json", help="PROV-JSON (default), PROV-N or JSON-LD")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_prov)

    p = sub.add_parser("reuse", help="recompute the passages all committed documents share; commit them as a reuse run")
    common(p)
    p.set_defaults(func=cmd_reuse)

    p = sub.add_parser("gc", help="list (and with --delete remove) parts and originals no committed run references")
    common(p)
    p.add_argument("--older-than", type=_duration, default="1h", metavar="DURATION",
                   help="only keys written at least this long ago, e.g. 30m, 1h, 2d, 0s (default 1h); younger ones "
                        "may belong to a run still in progress and are kept")
    p.add_argument("--delete", action="store_true", help="remove them (default: a dry run that only lists them)")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("bag", help="export a run's originals as a BagIt bag (sha256 and sha512)")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("out_dir", metavar="OUT_DIR")
    common(p)
    p.set_defaults(func=cmd_bag)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        return _fail(str(exc), args)


if __name__ == "__main__":
    sys.exit(main())
