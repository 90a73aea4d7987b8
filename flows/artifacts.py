"""Prefect artifacts of a run, so an archivist sees the result in the UI without reading logs."""

from __future__ import annotations

import re

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

MAX_QUARANTINE_ROWS = 200


def _key(text: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


class ProgressArtifact:
    """A progress bar in the UI, updated as batches finish (at most once a percent)."""

    def __init__(self, run_id: str):
        self.id = create_progress_artifact(0.0, key=_key(f"ingest-progress-{run_id}"),
                                           description=f"Run {run_id}: files done")
        self.shown = 0

    def update(self, done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 100
        if percent > self.shown:
            update_progress_artifact(self.id, float(percent))
            self.shown = percent


def publish_ingest_artifacts(result: dict) -> None:
    run_id = result["run_id"]
    counts = result["counts"]
    create_table_artifact(
        [{"outcome": name, "files": counts[name]}
         for name in ("files", "documents", "duplicates", "quarantined", "skipped")],
        key=_key(f"ingest-counts-{run_id}"), description=f"Run {run_id}: files per outcome")
    problems = [p for p in result["problems"]][:MAX_QUARANTINE_ROWS]
    create_table_artifact(
        [{"path": p["path"], "outcome": p["outcome"], "reason": p["reason"], "detail": p["detail"]} for p in problems]
        or [{"path": "", "outcome": "", "reason": "", "detail": "nothing was quarantined or skipped"}],
        key=_key(f"ingest-quarantine-{run_id}"),
        description=f"Run {run_id}: quarantined and skipped files with reasons (first {MAX_QUARANTINE_ROWS})")
    notes = "\n".join(f"- {note}" for note in result.get("notes", [])) or "- none"
    create_markdown_artifact(
        f"""# Ingest run `{run_id}`: committed

| | |
|---|---|
| DEST | `{result['dest']}` |
| manifest | `{result['manifest']}` |
| files | {counts['files']:,} |
| documents | {counts['documents']:,} |
| duplicates | {counts['duplicates']:,} |
| quarantined | {counts['quarantined']:,} |
| skipped | {counts['skipped']:,} |
| seconds | {result['seconds']:,} |

Notes:
{notes}
""", key=_key(f"ingest-summary-{run_id}"), description=f"Run {run_id}: summary")


def publish_audit_artifacts(report: dict) -> None:
    problems = report["problems"]
    create_markdown_artifact(
        f"""# Fixity audit `{report['run_id']}`: {'all hold' if not problems else f'{len(problems)} problem(s)'}

DEST `{report['dest']}`, manifest `{report['manifest']}`: checked {report['checked']['parts']:,} part files of
{report['checked']['runs']:,} runs and {report['checked']['objects']:,} originals.

""" + "\n".join(f"- {p['message']}" for p in problems[:MAX_QUARANTINE_ROWS]),
        key=_key(f"audit-summary-{report['run_id']}"), description="Fixity audit summary")
