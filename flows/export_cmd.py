"""`archive export`: a run as PREMIS 3.0 XML or METS, or originals as an OCFL 1.1 storage root (archive.export)."""

from __future__ import annotations

import json
import sys
import traceback

from archive.errors import ArchiveError

from . import output

FORMATS = ("premis", "mets", "ocfl")


def add_parser(sub, common) -> None:
    p = sub.add_parser("export", help="export a run as PREMIS 3.0 XML or METS, or originals as an OCFL 1.1 storage "
                                      "root (one object per original, one version per run)")
    p.add_argument("run_id", metavar="RUN_ID", nargs="?", help="a committed run (see archive runs)")
    p.add_argument("out", metavar="OUT", help="premis, mets: the file to write; ocfl: the storage root (a new or "
                                              "empty directory, or a root an earlier export wrote: versions are added)")
    p.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    p.add_argument("--collection", help="ocfl: every committed run of this collection instead of RUN_ID")
    p.add_argument("--organisation", help="the organisation named as the archive's keeper in PREMIS (default: "
                                          "$ARCHIVE_ORGANISATION)")
    common(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from archive.storage import open_store

    if (args.run_id is None) == (args.collection is None):
        return _say("give RUN_ID or --collection NAME (one of them)", 2)
    if args.collection is not None and args.format != "ocfl":
        return _say("--collection: only --format ocfl exports a collection; premis and mets describe one run", 2)
    try:
        store = open_store(args.dest)
        if args.format == "ocfl":
            from archive.export.ocfl import export_ocfl

            result = export_ocfl(store, args.out, run_id=args.run_id, collection=args.collection,
                                 organisation=args.organisation)
        elif args.format == "mets":
            from archive.export.mets import export_mets

            result = export_mets(store, args.run_id, args.out, organisation=args.organisation)
        else:
            from archive.export.premis import export_premis

            result = export_premis(store, args.run_id, args.out, organisation=args.organisation)
    except (ArchiveError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        return _say(f"export failed: {exc}", 1)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        output.export_written(result)
    return 0


def _say(message: str, code: int) -> int:
    print(f"archive: {message}", file=sys.stderr)
    return code
