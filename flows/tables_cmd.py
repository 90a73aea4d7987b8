"""`archive tables`: the datasets' Apache Iceberg tables, where they are and whether they follow the manifests;
--sync brings them up to date (archive.tables)."""

from __future__ import annotations

import json
import sys
import traceback

from archive.errors import ArchiveError


def add_parser(sub, common) -> None:
    p = sub.add_parser("tables", help="the datasets' Apache Iceberg tables: snapshots, rows, latest run, and what "
                                      "disagrees with the manifests; --sync brings them up to date")
    common(p)
    p.add_argument("--sync", action="store_true",
                   help="first append to each table the committed runs it lacks (idempotent)")
    p.set_defaults(func=cmd_tables)


def cmd_tables(args) -> int:
    from archive.publish import committed_manifests
    from archive.storage import open_store
    from archive.tables.sync import follow, status

    try:
        store = open_store(args.dest)
        manifests = list(committed_manifests(store))
        appended = follow(store, manifests).appended if args.sync else {}
        tables = status(store, manifests)
    except (ArchiveError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"archive: tables failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"appended": appended, "tables": tables}, ensure_ascii=False))
    else:
        for dataset, runs in appended.items():
            print(f"{dataset}: appended {len(runs)} run(s)")
        for table in tables:
            print(f"{table['table']:<22} {table['snapshots']:>5} snapshot(s) {table['rows']:>10,} rows  latest run "
                  f"{table['latest_run'] or '-'}")
            for problem in table["problems"]:
                print(f"  ! {problem}")
    return 1 if any(t["problems"] for t in tables) else 0
