"""Provenance: the run's context and PREMIS event constructors (PROV export builds on these)."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import secrets
import socket
import uuid
from dataclasses import dataclass, field

from . import SOFTWARE_NAME, __version__
from .records import utc_now

# PREMIS 3 event types (id.loc.gov/vocabulary/preservation/eventType) this pipeline records.
INGESTION = "ingestion"
MESSAGE_DIGEST = "message digest calculation"
FORMAT_IDENTIFICATION = "format identification"
NORMALIZATION = "normalization"
METADATA_EXTRACTION = "metadata extraction"
VALIDATION = "validation"
QUARANTINE = "quarantine"
DEDUPLICATION = "deduplication"
PUBLICATION = "publication"
FIXITY_CHECK = "fixity check"

SUCCESS, FAILURE, WARNING = "success", "failure", "warning"


def new_run_id(now: dt.datetime | None = None) -> str:
    """Sortable UTC time plus a random suffix: 20261122T153000Z-3f9a."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def who_started() -> dict:
    """The person or deployment behind a run: the OS user and host, and the
    Prefect deployment and schedule when the flow layer knows them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = os.environ.get("USER")
    return {"user": user, "host": socket.gethostname(), "deployment": None, "schedule": None}


@dataclass(frozen=True)
class RunContext:
    """What every record and event of a run carries. Small and picklable."""

    run_id: str
    collection: str | None
    source: str
    flow_run_id: str | None = None
    started_at: str = field(default_factory=utc_now)
    started_by: dict = field(default_factory=who_started)

    def event(
        self,
        event_type: str,
        outcome: str,
        detail: str,
        *,
        sha256: str | None = None,
        path: str | None = None,
        tool: str | None = None,
    ) -> dict:
        """One event row (schemas/event.schema.json)."""
        return {
            "event_id": str(uuid.uuid4()),
            "run_id": self.run_id,
            "flow_run_id": self.flow_run_id,
            "event_type": event_type,
            "event_time": utc_now(),
            "outcome": outcome,
            "detail": detail,
            "object_sha256": sha256,
            "source_path": path,
            "agent": SOFTWARE_NAME,
            "agent_version": __version__,
            "tool": tool,
        }
