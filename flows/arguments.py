"""The `archive` command's arguments: every command, option and argument, each described for --help."""

from __future__ import annotations

import argparse
import re
from typing import Callable

from archive import __version__
from archive.extract.budget import EXTRACT_SECONDS, MIN_TEXT_CHARS, OCR_PAGE_SECONDS, TEXT_PER_BYTE
from archive.ingest.unpack import DEPTH, EXPANDED_BYTES, MEMBERS, RATIO

from . import export_cmd, records_cmd, tables_cmd

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str) -> float:
    """30m, 1h, 2d, 1h30m, 0s, or plain seconds."""
    spec = text.strip().lower()
    if not re.fullmatch(r"(\d+(\.\d+)?[smhdw])+|\d+(\.\d+)?", spec):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 1h, 2d, 0s)")
    return float(sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw]?)", spec)))


def _seconds(text: str) -> float:
    """A duration above zero: 90, 1.5, 10m, 1h."""
    try:
        seconds = _duration(text)
    except argparse.ArgumentTypeError:
        seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"not a time above zero: {text!r} (e.g. 600, 90s, 10m)")
    return seconds


def _above_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number above zero: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a whole number above zero: {text!r}")
    return value


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError(f"not a sha256 (64 hexadecimal digits): {text!r}")
    return value


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M, 2G, 1000000)") from None


def build_parser(commands: dict[str, Callable]) -> argparse.ArgumentParser:
    """The parser of every command; commands: name -> the function that runs it (flows/cli.py)."""
    parser = argparse.ArgumentParser(prog="archive", description="Archival ingest, provenance and fixity.")
    parser.add_argument("--version", action="version", version=f"archive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p, json_help="print one JSON object instead of text"):
        p.add_argument("--dest",
                       help="store: a directory or s3://bucket/prefix (default: $ARCHIVE_DEST or ./archive-store)")
        p.add_argument("--json", action="store_true", help=json_help)
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("ingest", help="ingest a folder or S3 prefix into DEST as a committed run")
    p.add_argument("source", metavar="SOURCE", help="a folder, or s3://bucket/prefix")
    common(p)
    p.add_argument("--collection", help="collection name recorded on every document")
    p.add_argument("--metadata", metavar="FILE",
                   help="a metadata.csv (Dublin Core) to use instead of SOURCE/metadata.csv")
    p.add_argument("--max-file-bytes", type=_size, default=256 << 20,
                   help="larger files are kept but quarantined as too-large (default 256M)")
    p.add_argument("--extract-seconds", type=_seconds, default=EXTRACT_SECONDS, metavar="SECONDS",
                   help=f"time extracting one file's text may take, OCR included, e.g. 600 or 10m; over it the file "
                        f"is quarantined as too-costly (default {EXTRACT_SECONDS:g})")
    p.add_argument("--ocr-page-seconds", type=_seconds, default=OCR_PAGE_SECONDS, metavar="SECONDS",
                   help=f"time OCR, or rendering a PDF page for it, may take a page; over it, too-costly "
                        f"(default {OCR_PAGE_SECONDS:g})")
    p.add_argument("--text-per-byte", type=_above_zero, default=TEXT_PER_BYTE, metavar="N",
                   help=f"characters of text a file may give for each byte of its size, and {MIN_TEXT_CHARS:,} "
                        f"whatever its size; over it, too-costly (default {TEXT_PER_BYTE:g})")
    p.add_argument("--container-members", type=_count, default=MEMBERS, metavar="N",
                   help="members a ZIP, TAR, mbox or message of the source may unpack to, the containers within it "
                        f"included; over it, the container is quarantined container-too-large (default {MEMBERS:,})")
    p.add_argument("--container-depth", type=_count, default=DEPTH, metavar="N",
                   help=f"containers within containers (a ZIP in a ZIP is 2); deeper, container-too-deep "
                        f"(default {DEPTH})")
    p.add_argument("--container-bytes", type=_size, default=EXPANDED_BYTES, metavar="SIZE",
                   help="bytes the members of a file of the source may expand to in all; over it, "
                        "container-too-large (default 4G)")
    p.add_argument("--container-ratio", type=_above_zero, default=RATIO, metavar="N",
                   help="how many times a ZIP member of 1M or more may expand its compressed size; over it, "
                        f"container-too-large (default {RATIO:g})")
    p.add_argument("--batch-files", type=int, default=1000, help="files per batch task (default 1000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes for the batches (default: one per core)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the batches on the Dask cluster at ADDRESS (tcp://HOST:8786); SOURCE and DEST must be "
                        "reachable from its workers (S3, or a shared file system)")
    p.add_argument("--no-reuse", action="store_true",
                   help="skip the text reuse step (no reuse rows or band hashes for this run; `archive reuse` "
                        "catches up)")
    p.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    p.set_defaults(func=commands["ingest"])

    p = sub.add_parser("runs", help="list committed runs, and the head of the run log's hash chain")
    common(p, "print a JSON array")
    p.add_argument("--head", action="store_true",
                   help="print only the sha256 of the hash chain's head (with --json: its run, key and sequence)")
    p.set_defaults(func=commands["runs"])

    p = sub.add_parser("verify", help="fixity audit: re-hash originals and part files against the manifests")
    common(p)
    p.add_argument("--run", action="append", metavar="RUN_ID",
                   help="only this run (repeatable; default: every committed run)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes for re-hashing originals (default: one per core, from 20,000 originals on)")
    p.add_argument("--head", metavar="SHA256", type=_sha256,
                   help="a sha256 of the run log's head kept elsewhere (archive runs prints it): the chain must still "
                        "hold that manifest, unchanged")
    p.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")
    p.set_defaults(func=commands["verify"])

    p = sub.add_parser("lineage", help="one record's story: source paths, original, events, publication")
    p.add_argument("id", metavar="DOC_ID_OR_PATH",
                   help="a doc_id / sha256, or a source path as recorded in the files dataset")
    common(p)
    p.add_argument("--run", help="with a path: the run to look it up in (default: the latest that saw it)")
    p.set_defaults(func=commands["lineage"])

    p = sub.add_parser("prov", help="export a run as W3C PROV")
    p.add_argument("run_id", metavar="RUN_ID", help="a committed run (see archive runs)")
    p.add_argument("--dest", help="store (default: $ARCHIVE_DEST or ./archive-store)")
    p.add_argument("--format", choices=["json", "provn", "jsonld"], default="json",
                   help="PROV-JSON (default), PROV-N or JSON-LD (context embedded: PROV-O for any RDF tool)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=commands["prov"])

    p = sub.add_parser("reuse", help="recompute the passages all committed documents share; commit them as a reuse run")
    common(p)
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes aligning the candidate pairs (default: one per core)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="align the candidate pairs on the Dask cluster at ADDRESS (tcp://HOST:8786); the pairs go "
                        "with their texts: the workers need not reach DEST")
    p.set_defaults(func=commands["reuse"])

    p = sub.add_parser("gc", help="list (and with --delete remove) parts and originals no committed run references")
    common(p)
    p.add_argument("--older-than", type=_duration, default="1h", metavar="DURATION",
                   help="only keys written at least this long ago, e.g. 30m, 1h, 2d, 0s (default 1h); younger ones "
                        "may belong to a run still in progress and are kept")
    p.add_argument("--delete", action="store_true", help="remove them (default: a dry run that only lists them)")
    p.set_defaults(func=commands["gc"])

    p = sub.add_parser("service", help="the local Prefect server, deployments and worker: start, stop or status")
    p.add_argument("action", choices=["start", "stop", "status"],
                   help="start: server, work pool, deployments of prefect.yaml and a worker, in that order; stop: "
                        "all of it; status: what runs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=commands["service"])

    p = sub.add_parser("bag", help="export a run's originals as a BagIt bag (sha256 and sha512)")
    p.add_argument("run_id", metavar="RUN_ID", help="a committed run (see archive runs)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="a new or empty directory to write the bag into")
    common(p)
    p.set_defaults(func=commands["bag"])
    export_cmd.add_parser(sub, common)
    records_cmd.add_parser(sub, common)
    tables_cmd.add_parser(sub, common)
    return parser
