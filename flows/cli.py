"""The `archive` command: parses arguments, calls a flow or a library function, prints (output.py) or --json."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
import threading
import traceback
from contextlib import contextmanager

from archive.errors import ArchiveError, ConfigurationError, SourceError

from . import arguments, output, server
from .damage import damage

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_RUNNING = 3  # archive service status: nothing runs
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command its pipe's reader stopped


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's own logging stays out of the CLI's output unless asked for.
    Must run before prefect is first imported."""
    if not verbose:
        # Failures are reported by the CLI itself, once, in one line.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@contextmanager
def _flow_run(args):
    """Around a flow this command runs: progress on stderr when stderr is a terminal and
    not --json, and the Prefect settings of a command's flow run (archive_flows.context)."""
    from . import progress
    from .context import command_line_run

    if not getattr(args, "verbose", False):
        # Prefect's event sender says at exit how many events it still has to send, under a logger of its own
        # name, outside Prefect's logging settings: not this command's news.
        logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    bar = output.Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    stop = progress.listen(bar) if bar else (lambda: None)
    try:
        with command_line_run(), server.for_this_command():
            yield
    finally:
        stop()
        if bar:
            bar.close()


def cmd_ingest(args) -> int:
    from archive.sources import open_source, overlap
    from archive.storage import open_store, resolve_dest

    dest = resolve_dest(args.dest)
    try:
        open_source(args.source)  # a wrong SOURCE is a usage error, found before Prefect starts
    except SourceError as exc:
        return _usage(str(exc))
    apart = overlap(args.source, dest)
    if apart:
        return _usage(apart)
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
        from .service import absolute_location, ingest_on

        # The cluster's workers may run in another directory: they get absolute paths.
        source, dest, workers = absolute_location(source), absolute_location(dest), 1
        ingest = ingest_on(args.dask)
    else:
        from .ingest import ingest
    try:
        with _flow_run(args):
            result = ingest(
                source=source, dest=dest, collection=args.collection,
                max_file_bytes=args.max_file_bytes, batch_files=args.batch_files,
                metadata=os.path.abspath(args.metadata) if args.metadata else None, workers=workers,
                reuse=not args.no_reuse, extract_seconds=args.extract_seconds,
                ocr_page_seconds=args.ocr_page_seconds, text_per_byte=args.text_per_byte,
                container_members=args.container_members, container_depth=args.container_depth,
                container_bytes=args.container_bytes, container_ratio=args.container_ratio,
            )
    except KeyboardInterrupt:
        return _fail("ingest interrupted; nothing was committed", args)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one clear line
        return _fail(f"ingest failed, nothing was committed: {_reason(exc)}", args)
    damage.add(result["damaged_runs"])
    if args.json:
        keys = ("run_id", "status", "dest", "manifest", "counts", "problems", "seconds", "stage_seconds")
        print(json.dumps({**{k: result[k] for k in keys}, "damaged_runs": damage.json()}, ensure_ascii=False))
    else:
        output.ingest_summary(result, _set_aside_before(dest, result))
    return EXIT_OK


def _set_aside_before(dest: str, result: dict) -> set[tuple[str, str, str]]:
    """What earlier runs set aside the same way, among this run's problems (nothing if it cannot be read)."""
    from archive.read import set_aside_before
    from archive.storage import open_store

    try:
        return set_aside_before(open_store(dest), result["run_id"], (p["path"] for p in result["problems"]))
    except ArchiveError:
        return set()


def cmd_runs(args) -> int:
    from archive.publish import committed_manifests
    from archive.storage import open_store

    damaged = []
    try:
        store = open_store(args.dest)
        manifests = list(committed_manifests(store, damaged=damaged))
        head = chain_head(store)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.head:
        if head is None:
            return _fail("no manifest of this store is in a hash chain yet", args)
        print(json.dumps(head) if args.json else head["sha256"])
        return EXIT_OK
    damage.said(damaged)  # listed among the runs, as damaged
    if args.json:
        keys = ("run_id", "kind", "status", "collection", "source", "started_at", "committed_at", "counts",
                "started_by", "chain")
        rows = [{k: m.get(k) for k in keys} for m in manifests]
        rows += [{**dict.fromkeys(keys), "run_id": d.run_id, "status": "damaged", "key": d.key, "damage": d.damage}
                 for d in damaged]
        print(json.dumps(sorted(rows, key=lambda r: r["run_id"]), ensure_ascii=False))
        return EXIT_OK
    output.runs_table(manifests, damaged, head)
    return EXIT_OK


def chain_head(store) -> dict | None:
    """The head of the run log's hash chain (archive/chain.py): its run, key, sequence and sha256."""
    from archive import chain

    last = chain.head(chain.entries(store))  # (the manifests committed_manifests just read, not read again)
    if last is None:
        return None
    return {"run_id": last.run_id, "key": last.key, "sequence": last.link["sequence"], "sha256": last.sha256}


def cmd_verify(args) -> int:
    from archive.storage import open_store, resolve_dest

    dest = resolve_dest(args.dest)
    open_store(dest)
    _quiet_prefect(args.verbose)
    from .audit import fixity_audit

    try:
        with _flow_run(args):
            report = fixity_audit(dest=dest, runs=args.run or None, workers=args.workers, head=args.head)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one clear line
        return _fail(f"verify could not run: {_reason(exc)}", args)
    damage.said(report["damaged_runs"])  # among the problems
    if args.json:
        print(json.dumps({**report, "damaged_runs": damage.json()}, ensure_ascii=False))
    else:
        output.verify_report(report)
    return EXIT_OK if not report["problems"] else EXIT_FAILED


def cmd_lineage(args) -> int:
    from archive.lineage import lineage
    from archive.storage import open_store

    try:
        story = lineage(open_store(args.dest), args.id, run=args.run)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    damage.add(story["damaged_runs"])
    if args.json:
        print(json.dumps({**story, "damaged_runs": damage.json()}, default=str, ensure_ascii=False))
        return EXIT_OK
    output.lineage_story(story)
    return EXIT_OK


def cmd_prov(args) -> int:
    from archive.provenance import export_run_prov, prov_text
    from archive.storage import open_store

    try:
        document = export_run_prov(open_store(args.dest), args.run_id)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    sys.stdout.write(prov_text(document, args.format))
    return EXIT_OK


def cmd_bag(args) -> int:
    from archive.bag import export_bag
    from archive.storage import open_store

    try:
        result = export_bag(open_store(args.dest), args.run_id, args.out_dir)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps(result))
    else:
        output.bag_written(result)
    return EXIT_OK


def cmd_reuse(args) -> int:
    from archive.provenance import RunContext, new_run_id
    from archive.reuse import publish_reuse
    from archive.storage import open_store

    from .workers import reuse_executor

    if args.dask and args.workers:
        return _usage("--workers: with --dask the pairs are aligned on the cluster's workers, not local processes")

    try:
        store = open_store(args.dest)
        with reuse_executor(args.dask, args.workers) as (executor, workers):
            result = publish_reuse(store, RunContext(new_run_id(), None, store.url), executor=executor,
                                   workers=workers)
    except ArchiveError as exc:
        return _fail(str(exc), args)
    if args.json:
        print(json.dumps(result))
    else:
        output.reuse_committed(result)
    return EXIT_OK


def cmd_gc(args) -> int:
    from archive.gc import delete_garbage, find_garbage
    from archive.storage import open_store

    removed = []
    try:
        store = open_store(args.dest)
        plan = find_garbage(store, args.older_than)
        damage.add(plan.damaged)
        if args.delete and plan.damaged:
            damage.said(plan.damaged)  # the refusal names them
        result = delete_garbage(store, plan, on_removed=removed.append) if args.delete else None
    except ArchiveError as exc:
        done = (f"{len(removed):,} unreferenced key(s) were removed before it stopped" if removed
                else "nothing was removed")
        return _fail(f"gc failed, {done}: {exc}", args)
    if args.json:
        print(json.dumps({**output.gc_json(plan, result, args.delete), "damaged_runs": damage.json()},
                         ensure_ascii=False))
    else:
        output.gc_report(plan, result)
    return EXIT_OK


def cmd_service(args) -> int:
    try:
        if args.action == "start":
            server.start_service()
        elif args.action == "stop":
            stopped = server.stop()
            if not args.json:
                print("Stopped the local Prefect server and worker." if stopped else "Nothing was running.")
            return EXIT_OK
    except RuntimeError as exc:
        return _fail(str(exc), args)
    state = server.status()
    if args.json:
        print(json.dumps(state))
    else:
        output.service_status(state)
    return EXIT_OK if state["server"]["up"] else EXIT_NOT_RUNNING


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if not isinstance(exc, ArchiveError) else text


def _fail(message: str, args) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    damage.in_json = False  # no JSON is printed
    damage.tell()
    print(f"archive: {message}", file=sys.stderr)
    return EXIT_FAILED


def _usage(message: str) -> int:
    print(f"archive: {message}", file=sys.stderr)
    return EXIT_USAGE


COMMANDS = {"ingest": cmd_ingest, "runs": cmd_runs, "verify": cmd_verify, "lineage": cmd_lineage, "prov": cmd_prov,
            "reuse": cmd_reuse, "gc": cmd_gc, "service": cmd_service, "bag": cmd_bag}


def build_parser() -> argparse.ArgumentParser:
    return arguments.build_parser(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "service":
        damage.watch()
    try:
        code = args.func(args)
        damage.tell()  # what the command met and did not say in its output
        sys.stdout.flush()  # (a closed pipe is found here, not at the interpreter's exit)
        return code
    except ConfigurationError as exc:
        return _fail(str(exc), args)
    except BrokenPipeError:
        # The reader stopped reading (`archive lineage ID | head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def run() -> None:
    """The console script: main(), then an exit that skips tearing the interpreter down (an exception main()
    does not handle, Ctrl-C included, ends the interpreter as usual).

    Once the exit handlers have run (Prefect's log and event workers drain in them, logging flushes), finalising
    the interpreter frees Prefect's module graph object by object: about 0.5 s per command that nothing needs.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    if code is None:
        code = EXIT_OK
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = EXIT_FAILED
    for thread in threading.enumerate():  # what the interpreter waits for before its exit handlers
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
