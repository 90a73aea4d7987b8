"""`archive withdraw` and `archive reprocess`: records withdrawn (a takedown, a privacy request) and texts re-derived
from the kept originals (archive.catalogue)."""

from __future__ import annotations

import json
import sys
import traceback

from archive.errors import ArchiveError

from .output import show

FORMATS = ("text", "html", "pdf", "image")


def add_parser(sub, common) -> None:
    p = sub.add_parser("withdraw", help="withdraw records: they leave the current views of documents, records and "
                                        "reuse; lineage, events and PROV keep them with the reason")
    p.add_argument("ids", nargs="+", metavar="PATH_OR_DOC_ID",
                   help="a record's path as recorded (or a path under a run's SOURCE), or a doc_id: every current "
                        "record of those bytes")
    p.add_argument("--reason", required=True, help="why (a rights holder's takedown, a privacy request...): kept "
                                                   "with each withdrawn version and its events")
    p.add_argument("--purge", action="store_true",
                   help="also delete the originals of the documents that leave (the only deletion of an original "
                        "the archive makes; archive verify reports them purged by this run)")
    common(p)
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser("reprocess", help="re-extract texts from the kept originals with the current extractors and "
                                         "settings (no SOURCE needed); a new text version only where the text changed")
    p.add_argument("--format", action="append", choices=FORMATS, metavar="FORMAT",
                   help=f"only documents of this format: {', '.join(FORMATS)} (repeatable; default: all)")
    p.add_argument("--run", action="append", metavar="RUN_ID", help="only documents this run published (repeatable)")
    p.add_argument("--doc", action="append", metavar="DOC_ID", help="only this document (repeatable)")
    p.add_argument("--batch-documents", type=int, default=200, help="documents per batch task (default 200)")
    p.add_argument("--no-reuse", action="store_true",
                   help="skip the text reuse step for the new text versions (`archive reuse` finds their passages "
                        "later)")
    p.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    common(p)
    p.set_defaults(func=cmd_reprocess)


def cmd_withdraw(args) -> int:
    from archive.catalogue.withdraw import withdraw
    from archive.storage import open_store

    try:
        result = withdraw(open_store(args.dest), args.ids, args.reason, purge=args.purge)
    except ArchiveError as exc:
        return _fail(f"withdraw failed: {exc}", args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    c = result["counts"]
    print(f"Withdrawal run {result['run_id']} committed: {c['records']:,} record(s) withdrawn, {c['documents']:,} "
          f"document(s) left the current views, {c['purged']:,} original(s) purged. Reason: {show(result['reason'])}")
    for record in result["records"]:
        print(f"  withdrawn {show(record['path'])}  (record {record['record_id']}, version {record['version']})")
    for key in result["purged"]:
        print(f"  purged {key}")
    for note in result["notes"]:
        print(f"Note: {show(note)}")
    return 0


def cmd_reprocess(args) -> int:
    from archive.storage import open_store, resolve_dest

    from .cli import _flow_run, _quiet_prefect, _reason

    dest = resolve_dest(args.dest)
    try:
        open_store(dest).check_writable()
    except ArchiveError as exc:
        return _fail(f"reprocess failed before it started: {exc}", args)
    _quiet_prefect(args.verbose)
    from .reprocess import reprocess

    try:
        with _flow_run(args):
            result = reprocess(dest=dest, formats=args.format, runs=args.run, doc_ids=args.doc,
                               batch_documents=args.batch_documents, reuse=not args.no_reuse)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn any failure into one clear line
        return _fail(f"reprocess failed, nothing was committed: {_reason(exc)}", args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    c = result["counts"]
    print(f"Reprocess run {result['run_id']} committed to {result['dest']}: {c['documents']:,} document(s) "
          f"re-derived, {c['changed']:,} with a new text version, {c['unchanged']:,} unchanged, {c['failed']:,} "
          f"not re-derived; {c['updated']:,} record(s) updated")
    if result.get("reuse"):
        r = result["reuse"]
        print(f"Text reuse of the new texts: {r['pairs']:,} pair(s) of documents, {r['passages']:,} passage(s)")
    for note in result["notes"]:
        print(f"Note: {show(note)}")
    return 0


def _fail(message: str, args) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"archive: {message}", file=sys.stderr)
    return 1
