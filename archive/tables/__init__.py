"""Apache Iceberg tables of the datasets, following the run manifests: catalog.py (the catalog embedded in the
store, or a REST catalog), sync.py (each committed run appended to its datasets' tables).

Every command that commits a run brings the tables up to date right after its manifest (follow_after_commit); the
manifest stays the commit point, so a failure there fails nothing: it is warned, and the next command catches up.
ARCHIVE_TABLES=off leaves the tables alone (`archive tables --sync` brings them up to date later).
"""

from __future__ import annotations

import os
import warnings

from ..storage import Store


class TablesBehindWarning(UserWarning):
    """The run committed, but its datasets' Iceberg tables could not be brought up to date (the next command or
    `archive tables --sync` does it)."""


def tables_enabled() -> bool:
    return os.environ.get("ARCHIVE_TABLES", "on").strip().lower() not in ("off", "0", "false", "no")


def follow_after_commit(store: Store, manifests: list[dict] | None = None) -> None:
    """Bring the tables up to date after a manifest landed (manifests: every committed run's, if at hand)."""
    if not tables_enabled():
        return
    from .sync import follow

    try:
        follow(store, manifests)
    except Exception as exc:  # noqa: BLE001 - the run is committed whatever happens here; the next command catches up
        warnings.warn(TablesBehindWarning(f"the Iceberg tables of {store.url} were not brought up to date: "
                                          f"{type(exc).__name__}: {exc}; the next command or `archive tables "
                                          "--sync` does it"), stacklevel=2)
