"""The pipeline as a service: a real Prefect server on 127.0.0.1, prefect.yaml deployed to a process work pool,
a worker, and ingest runs triggered through the Prefect client; the committed run and its artifacts read back."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import open_store

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "archive-pool"
SERVER_START_SECONDS = 90
RUN_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectService:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME, this repository's prefect.yaml deployed
    with `prefect deploy --all` to a process work pool, and a `prefect worker` polling it: what the README's
    "Operating" section tells an operator to do."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.store = str(root / "store")
        self._processes: list[subprocess.Popen] = []
        self._runs: dict[tuple, object] = {}
        # Only the variables this test decides: nothing from the harness or a developer's profile.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "ARCHIVE_DEST"}
        self.env.update({
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick up a new run within a second, not ten
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # schedule within seconds, not a minute
        })

    def logs(self) -> str:
        return "\n".join(f"--- {path.name} (last lines)\n"
                         + "\n".join(path.read_text(errors="replace").splitlines()[-40:])
                         for path in sorted(self.root.glob("*.log")))

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        process = subprocess.Popen([PREFECT, *args], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._processes.append(process)
        return process

    def _prefect(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> None:
        server = self._spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert server.poll() is None, f"prefect server exited with {server.returncode}\n{self.logs()}"
            assert time.monotonic() < deadline, \
                f"prefect server not healthy after {SERVER_START_SECONDS} s\n{self.logs()}"
            time.sleep(0.25)
        self._prefect("work-pool", "create", POOL, "--type", "process")
        self.deploy_output = self._prefect("--no-prompt", "deploy", "--all")
        self._spawn("worker", "worker", "start", "--pool", POOL)

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # its own session: the worker's flow-run processes too
        for process in reversed(self._processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    @contextmanager
    def settings(self):
        """This server for the Prefect client in the test process (the flow tests' harness may be active)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    def client(self):
        from prefect import get_client

        return get_client(sync_client=True)

    def run_ingest(self, **parameters):
        """The `ingest` deployment run with these parameters, triggered once, waited for (bounded)."""
        key = tuple(sorted(parameters.items()))
        if key not in self._runs:
            from prefect.deployments import run_deployment

            with self.settings():
                run = run_deployment("ingest/ingest", parameters=parameters, timeout=RUN_SECONDS, poll_interval=0.5)
            assert run.state is not None and run.state.is_final(), \
                f"the ingest run did not finish in {RUN_SECONDS} s: {run.state}\n{self.logs()}"
            assert run.state.is_completed(), \
                f"the ingest run ended {run.state.name}: {run.state.message}\n{self.logs()}"
            self._runs[key] = run
        return self._runs[key]


_SERVICE = pytest.StashKey[PrefectService]()


def shared_service(request, tmp_path_factory) -> PrefectService:
    """One server, deployment and worker for the session, whichever test module asks first (see test_browser)."""
    stash = request.config.stash
    if _SERVICE not in stash:
        service = PrefectService(tmp_path_factory.mktemp("prefect-service"))
        request.addfinalizer(service.stop)
        service.start()
        stash[_SERVICE] = service
    return stash[_SERVICE]


def seeds_run(service: PrefectService, seeds_dir: Path):
    """The ingest deployment run on the seeds into the service's store: (deployment flow run, manifest)."""
    run = service.run_ingest(source=str(seeds_dir), dest=service.store, collection="seeds")
    (manifest,) = [m for m in committed_manifests(open_store(service.store)) if m["source"] == str(seeds_dir)]
    return run, manifest


@pytest.fixture(scope="session")
def service(request, tmp_path_factory) -> PrefectService:
    return shared_service(request, tmp_path_factory)


def test_prefect_yaml_deploys_ingest_and_a_weekly_fixity_audit(service):
    with service.settings(), service.client() as client:
        ingest = client.read_deployment_by_name("ingest/ingest")
        audit = client.read_deployment_by_name("fixity-audit/fixity-audit")
    assert ingest.entrypoint == "flows/service.py:ingest_deployment" and ingest.work_pool_name == POOL
    assert ingest.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    documented = ingest.parameter_openapi_schema["properties"]
    for name in ("source", "dest", "collection", "metadata", "dask_address"):
        assert documented[name].get("description"), f"parameter {name} has no description"
    assert ingest.parameter_openapi_schema["required"] == ["source"]
    assert audit.entrypoint == "flows/audit.py:fixity_audit" and audit.work_pool_name == POOL
    (schedule,) = audit.schedules
    assert schedule.active and schedule.schedule.cron == "0 3 * * 0" and schedule.schedule.timezone == "UTC"


def test_ingest_deployment_commits_a_run_with_its_artifacts(service, seeds_dir):
    run, manifest = seeds_run(service, seeds_dir)

    # The committed run: five documents, one files row per seed, started by the deployment.
    assert manifest["status"] == "committed" and manifest["collection"] == "seeds"
    assert manifest["counts"] == {"files": 5, "documents": 5, "duplicates": 0, "quarantined": 0, "skipped": 0,
                                  "updated": 0}
    assert manifest["started_by"]["deployment"] == "ingest"
    files = open_dataset(service.store, "files", runs=[manifest["run_id"]]).to_table().to_pylist()
    assert sorted(f["path"] for f in files) == sorted(p.name for p in seeds_dir.iterdir())
    assert open_dataset(service.store, "documents", runs=[manifest["run_id"]]).count_rows() == 5

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = manifest["run_id"].lower()
    with service.settings(), service.client() as client:
        # The manifest's flow run is the ingest flow, a subflow of the deployment's run.
        ingest_run = client.read_flow_run(manifest["flow_run_id"])
        assert client.read_task_run(ingest_run.parent_task_run_id).flow_run_id == run.id
        assert ingest_run.state.is_completed()
        keys = [f"ingest-{kind}-{key}" for kind in ("counts", "quarantine", "summary", "progress")]
        artifacts = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))}

    # On the page of the run the deployment started, not one level down on the ingest subflow's.
    assert {a.flow_run_id for a in artifacts.values()} == {run.id}
    counts = artifacts[f"ingest-counts-{key}"]
    assert counts.type == "table"
    table = json.loads(counts.data) if isinstance(counts.data, str) else counts.data
    files_counts = {k: v for k, v in manifest["counts"].items() if k != "updated"}  # (records, not files)
    assert {row["outcome"]: row["files"] for row in table} == files_counts
    summary = artifacts[f"ingest-summary-{key}"]
    assert summary.type == "markdown"
    for text in (manifest["run_id"], service.store, f"runs/{manifest['run_id']}.json", "| documents | 5 |"):
        assert text in summary.data, (text, summary.data)
    quarantine = artifacts[f"ingest-quarantine-{key}"]
    assert quarantine.type == "markdown" and "nothing was quarantined or skipped" in quarantine.data
    assert artifacts[f"ingest-progress-{key}"].data == 100.0


def test_ingest_deployment_runs_its_batches_on_dask(service, seeds_dir, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    dest = str(tmp_path / "store")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        with get_task_stream(client) as stream:
            service.run_ingest(source=str(seeds_dir), dest=dest, dask_address=cluster.scheduler_address, batch_files=2)
        dask_workers = set(cluster.scheduler_info["workers"])
    (manifest,) = committed_manifests(open_store(dest))
    assert manifest["counts"] == {"files": 5, "documents": 5, "duplicates": 0, "quarantined": 0, "skipped": 0,
                                  "updated": 0}
    assert manifest["parameters"]["workers"] == 1  # no idle process pool beside the cluster
    batches = [t for t in stream.data if "process_batch" in str(t["key"])]
    assert len(batches) == 3, [t["key"] for t in stream.data]  # 5 files, 2 a batch
    assert {t["worker"] for t in batches} <= dask_workers


def test_the_scheduler_creates_a_scheduled_audit_run_and_the_worker_completes_it(service, seeds_dir):
    """The weekly fixity audit's path, due within a minute: the server's scheduler creates the run from the
    deployment's schedule, and the worker runs it to completion: an audit run committed in the store."""
    from datetime import datetime, timedelta, timezone

    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    seeds_run(service, seeds_dir)  # something to audit
    due = datetime.now(timezone.utc) + timedelta(seconds=5)
    with service.settings(), service.client() as client:
        weekly = client.read_deployment_by_name("fixity-audit/fixity-audit")
        schedule = DeploymentScheduleCreate(
            schedule=IntervalSchedule(interval=timedelta(minutes=1), anchor_date=due - timedelta(minutes=1)),
            active=True, parameters={"dest": service.store})
        deployment_id = client.create_deployment(
            flow_id=weekly.flow_id, name="every-minute", entrypoint=weekly.entrypoint, path=weekly.path,
            pull_steps=weekly.pull_steps, work_pool_name=POOL, work_queue_name=weekly.work_queue_name,
            parameter_openapi_schema=weekly.parameter_openapi_schema, schedules=[schedule])
        deadline = time.monotonic() + RUN_SECONDS + 60
        of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        finished = None
        while finished is None:
            runs = client.read_flow_runs(deployment_filter=of_deployment)
            assert all(r.auto_scheduled for r in runs), "only the scheduler makes this deployment's runs"
            finished = next((r for r in runs if r.state is not None and r.state.is_final()), None)
            assert time.monotonic() < deadline, \
                f"no scheduled run finished: {[(r.name, r.state_name) for r in runs]}\n{service.logs()}"
            if finished is None:
                time.sleep(0.5)
        client.delete_deployment(deployment_id)  # no more runs every minute for the rest of the session
    assert finished.state.is_completed(), f"{finished.state.name}: {finished.state.message}\n{service.logs()}"
    audits = [m for m in committed_manifests(open_store(service.store)) if m["kind"] == "audit"
              and m["flow_run_id"] == str(finished.id)]
    assert len(audits) == 1 and audits[0]["counts"]["problems"] == 0
    assert audits[0]["started_by"]["schedule"].startswith("schedule, for ")
