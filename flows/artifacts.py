"""Prefect artifacts of a run, so an archivist sees the result in the UI without reading logs.

They go on the page of the flow run the person started: the `ingest` deployment's run, whose ingest flow is a
subflow, shows the counts, the set-aside files, the summary and the progress itself, not one level down.
"""

from __future__ import annotations

import re
from functools import lru_cache
from uuid import UUID

from prefect.artifacts import MarkdownArtifact, ProgressArtifact, TableArtifact, update_progress_artifact

MAX_QUARANTINE_ROWS = 200
_MARKUP = re.compile(r"[\\`*_\[\]<>|~#&]")  # what Markdown or HTML could take for markup here


def started_run_id() -> UUID | None:
    """The flow run a person or a schedule started: this run, or the top of the subflows it is in."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return None if run is None else _top_of(run.id, run.parent_task_run_id)


@lru_cache(maxsize=64)
def _top_of(run_id: UUID, parent_task_run_id: UUID | None) -> UUID:
    if parent_task_run_id is None:
        return run_id
    from prefect import get_client

    with get_client(sync_client=True) as client:
        parent = client.read_flow_run(client.read_task_run(parent_task_run_id).flow_run_id)
    return _top_of(parent.id, parent.parent_task_run_id)


def _create(artifact) -> UUID:
    artifact.flow_run_id = started_run_id()
    return artifact.create().id


def _key(text: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


class ProgressBar:
    """A progress bar in the UI, updated as batches finish (at most once a percent)."""

    def __init__(self, run_id: str):
        self.id = _create(ProgressArtifact(progress=0.0, key=_key(f"ingest-progress-{run_id}"),
                                           description=f"Run {run_id}: files done"))
        self.shown = 0

    def update(self, done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 100
        if percent > self.shown:
            update_progress_artifact(self.id, float(percent))
            self.shown = percent


def _literal(text: str) -> str:
    """Text shown as it is in Markdown: control characters escaped, and the characters that could start markup or
    HTML backslash-escaped (CommonMark), so no file name or detail becomes either."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return _MARKUP.sub(r"\\\g<0>", shown)


def publish_ingest_artifacts(result: dict) -> None:
    run_id = result["run_id"]
    counts = result["counts"]
    _create(TableArtifact(
        table=[{"outcome": name, "files": counts[name]}
               for name in ("files", "documents", "duplicates", "quarantined", "skipped")],
        key=_key(f"ingest-counts-{run_id}"), description=f"Run {run_id}: files per outcome"))
    problems = [p for p in result["problems"]][:MAX_QUARANTINE_ROWS]
    # A Markdown list, not a table: the UI keeps each table cell on one line, so a long detail ran off the side of
    # the page; list items wrap.
    items = "\n".join(f"- **{_literal(p['path'])}**: {p['outcome']} `{p['reason']}`: {_literal(p['detail'])}"
                      for p in problems)
    _create(MarkdownArtifact(
        markdown=f"Files set aside by run `{run_id}`, with the reason for each:\n\n{items}\n" if items
        else f"Run `{run_id}` set no file aside: nothing was quarantined or skipped.\n",
        key=_key(f"ingest-quarantine-{run_id}"),
        description=f"Run {run_id}: quarantined and skipped files with reasons (first {MAX_QUARANTINE_ROWS})"))
    notes = "\n".join(f"- {note}" for note in result.get("notes", [])) or "- none"
    _create(MarkdownArtifact(markdown=f"""# Ingest run `{run_id}`: committed

| | |
|---|---|
| DEST | `{result['dest']}` |
| manifest | `{result['manifest']}` |
| files | {counts['files']:,} |
| documents | {counts['documents']:,} |
| duplicates | {counts['duplicates']:,} |
| quarantined | {counts['quarantined']:,} |
| skipped | {counts['skipped']:,} |
| records updated | {counts.get('updated', 0):,} |
| seconds | {result['seconds']:,} |

Notes:
{notes}
""", key=_key(f"ingest-summary-{run_id}"), description=f"Run {run_id}: summary"))


def publish_audit_artifacts(report: dict) -> None:
    problems = report["problems"]
    verdict = "all hold" if not problems else f"{len(problems)} problem(s)"
    _create(MarkdownArtifact(markdown=f"""# Fixity audit `{report['run_id']}`: {verdict}

DEST `{report['dest']}`, manifest `{report['manifest']}`: checked {report['checked']['parts']:,} part files of
{report['checked']['runs']:,} runs and {report['checked']['objects']:,} originals.

""" + "\n".join(f"- {p['message']}" for p in problems[:MAX_QUARANTINE_ROWS]),
        key=_key(f"audit-summary-{report['run_id']}"), description="Fixity audit summary"))
