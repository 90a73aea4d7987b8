"""What the flow layer knows about a run that the library cannot: the Prefect flow run and deployment."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from archive import errors
from archive.provenance import who_started


def started_by() -> dict:
    """RunContext keyword arguments: the flow run id and who or what started it."""
    from prefect.context import FlowRunContext
    from prefect.runtime import deployment, flow_run

    who = who_started()
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    flow_run_id = run.id if run is not None else flow_run.id
    if _in_deployment(run) and deployment.id:
        who["deployment"] = deployment.name
        who["schedule"] = _schedule(flow_run_id)
    return {"flow_run_id": str(flow_run_id) if flow_run_id else None, "started_by": who}


def _in_deployment(run) -> bool:
    """Whether a run may belong to a deployment. A top-level run says so itself; asking
    prefect.runtime.deployment instead reads the run back from the API (a round trip
    every command) when it is not. A subflow inherits its deployment: that one is asked."""
    return run is None or run.deployment_id is not None or run.parent_task_run_id is not None


def _schedule(flow_run_id) -> str | None:
    """How a deployment run was started: by its schedule, or by whom."""
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
    except Exception as exc:  # noqa: BLE001 - provenance detail only; the run itself goes on
        return f"unknown (the Prefect API did not say: {type(exc).__name__})"
    if run.auto_scheduled:
        return f"schedule, for {run.expected_start_time.isoformat() if run.expected_start_time else 'an unknown time'}"
    if run.created_by is not None:
        return f"triggered by {run.created_by.type.lower()} {run.created_by.display_value or ''}".strip()
    return "triggered by hand"


def is_transient(task, task_run, state) -> bool:
    """Retry a task only for a failure that may pass (archive.errors.is_transient reads its type)."""
    return errors.is_transient(state.result(raise_on_failure=False))


@contextmanager
def command_line_run() -> Iterator[None]:
    """Prefect settings for a flow that an `archive` command runs in its own process.

    Flow run heartbeats are off unless configured. Prefect 3.8 sends one every
    180 s by default, from a thread that sleeps in 1 s steps, and every flow's
    end waits for the step under way: a noticeable share of a short command,
    spent idle.
    Heartbeats serve Prefect's detection of crashed runs, which needs an
    automation on the server; whoever set a frequency (environment, profile,
    prefect.toml) keeps it. Deployments' runs, started by a worker, keep theirs.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if heartbeats_configured(get_current_settings()):
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def heartbeats_configured(settings) -> bool:
    """Whether a source of these Prefect settings gave a heartbeat frequency (else it is Prefect's default)."""
    return "heartbeat_frequency" in settings.flows.model_fields_set
