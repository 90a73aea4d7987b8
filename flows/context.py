"""What the flow layer knows about a run that the library cannot: the Prefect flow run and deployment."""

from __future__ import annotations

from archive.provenance import who_started


def started_by() -> dict:
    """RunContext keyword arguments: the flow run id and who or what started it."""
    from prefect.runtime import deployment, flow_run

    who = who_started()
    flow_run_id = flow_run.id
    if deployment.id:
        who["deployment"] = deployment.name
    return {"flow_run_id": str(flow_run_id) if flow_run_id else None, "started_by": who}
