"""Commands share one local Prefect server: started on first use, reused, stopped when idle or by `archive service
stop`; `archive service start` brings up the server, the deployments and a worker in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archive.publish import committed_manifests
from archive.storage import open_store

pytestmark = pytest.mark.cli

BOUND_SECONDS = 90


@pytest.fixture
def env(tmp_path):
    """No Prefect API configured, a Prefect home of the test's own: as a user's first command finds things."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "ARCHIVE_DEST"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    yield env
    archive("service", "stop", env=env)  # nothing outlives the test


def archive(*args, env):
    return subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _state(env) -> dict:
    return json.loads((Path(env["PREFECT_HOME"]) / "archive-server.json").read_text())


def _gone(pid: int) -> bool:
    from archive_flows.server import alive

    deadline = time.monotonic() + BOUND_SECONDS
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _flow_run_ids(api_url: str) -> set[str]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return {str(run.id) for run in client.read_flow_runs()}


def test_commands_share_one_server_started_on_first_use(env, tmp_path):
    dest = str(tmp_path / "store")
    first = archive("verify", "--dest", dest, "--json", env=env)
    assert first.returncode == 0, first.stderr
    server = _state(env)
    second = archive("verify", "--dest", dest, "--json", env=env)
    assert second.returncode == 0, second.stderr
    assert _state(env)["pid"] == server["pid"]  # the same server, not a second one
    assert first.stderr == "" and second.stderr == ""
    runs = {m["flow_run_id"] for m in committed_manifests(open_store(dest))}
    assert len(runs) == 2 and runs <= _flow_run_ids(server["api_url"])  # both audits ran on the shared server

    status = archive("service", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["server"]["stops_when_idle"] is True
    stopped = archive("service", "stop", env=env)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert _gone(server["pid"])
    assert archive("service", "status", env=env).returncode == 3


def test_a_server_started_on_first_use_stops_by_itself_when_idle(env, tmp_path):
    env = {**env, "ARCHIVE_PREFECT_IDLE_SECONDS": "2"}
    done = archive("verify", "--dest", str(tmp_path / "store"), env=env)
    assert done.returncode == 0, done.stderr
    pid = _state(env)["pid"]
    assert _gone(pid), "the idle server still runs"
    assert not (Path(env["PREFECT_HOME"]) / "archive-server.json").exists()


def test_an_explicit_prefect_api_is_used_instead(env, tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    done = archive("verify", "--dest", str(tmp_path / "store"), env={**env, "PREFECT_API_URL": PREFECT_API_URL.value()})
    assert done.returncode == 0, done.stderr
    assert not (Path(env["PREFECT_HOME"]) / "archive-server.json").exists()


def test_service_start_brings_up_server_deployments_and_worker_and_stop_ends_them(env):
    started = archive("service", "start", env=env)
    assert started.returncode == 0, started.stderr
    assert "Prefect server  http://127.0.0.1:" in started.stdout and "Worker          pid " in started.stdout
    state = _state(env)
    status = json.loads(archive("service", "status", "--json", env=env).stdout)
    assert status["server"]["up"] and status["worker"]["up"] and status["server"]["stops_when_idle"] is False

    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: state["api_url"]}), get_client(sync_client=True) as client:
        assert client.read_deployment_by_name("ingest/ingest").work_pool_name == "archive-pool"
        assert client.read_deployment_by_name("fixity-audit/fixity-audit").schedules

    again = archive("service", "start", env=env)  # nothing started twice
    assert again.returncode == 0 and _state(env)["pid"] == state["pid"]
    assert _state(env)["worker_pid"] == state["worker_pid"]

    assert archive("service", "stop", env=env).returncode == 0
    assert _gone(state["worker_pid"]) and _gone(state["pid"])
    assert archive("service", "status", env=env).returncode == 3


def _processes(env, marker: str) -> list[int]:
    """The processes of this test's Prefect home whose command line holds marker."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and f"PREFECT_HOME={env['PREFECT_HOME']}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def _await_processes(env, marker: str, count: int = 1) -> list[int]:
    deadline = time.monotonic() + BOUND_SECONDS
    while len(found := _processes(env, marker)) < count:
        assert time.monotonic() < deadline, f"no process {marker!r} appeared"
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("how", ["killed"])  # (ending normally: test_no_command_prints_a_traceback...[ephemeral])
def test_a_temporary_server_ends_with_its_command_however_the_command_ends(env, tmp_path, how):
    env = {**env, "ARCHIVE_PREFECT_SERVER": "ephemeral"}
    (tmp_path / "store").mkdir()
    command = subprocess.Popen([sys.executable, "-m", "archive_flows.cli", "verify", "--dest", str(tmp_path / "store")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = _await_processes(env, "server start --host 127.0.0.1")
    supervisor = _processes(env, "--serve-while-open")
    assert len(server) == 1 and len(supervisor) == 1
    if how == "killed":
        command.kill()  # SIGKILL: no handler of the command's runs
    out, err = command.communicate(timeout=300)
    if how == "ends":
        assert command.returncode == 0, err
        assert "all hold" in out
    assert _gone(server[0]) and _gone(supervisor[0]), "the temporary server outlived its command"
    assert not (Path(env["PREFECT_HOME"]) / "archive-server.json").exists()  # not the shared one


def test_a_shared_server_whose_starting_command_is_killed_before_recording_it_is_stopped(env, tmp_path):
    import signal

    (tmp_path / "store").mkdir()
    command = subprocess.Popen([sys.executable, "-m", "archive_flows.cli", "verify", "--dest", str(tmp_path / "store")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = _await_processes(env, "server start --host 127.0.0.1")[0]
    _await_processes(env, "--keep-until-idle")
    os.kill(server, signal.SIGSTOP)  # it cannot answer, so the command cannot have recorded it
    try:
        command.kill()
        command.wait(timeout=60)
        assert not (Path(env["PREFECT_HOME"]) / "archive-server.json").exists()
    finally:
        os.kill(server, signal.SIGCONT)
    assert _gone(server), "a server nobody recorded was left running"


@pytest.mark.parametrize("server", ["ephemeral", "shared"])
def test_no_command_prints_a_traceback_while_its_prefect_server_shuts_down(env, tmp_path, seeds_dir, server):
    """`archive verify` once printed some 150 lines of Prefect's and SQLAlchemy's CancelledError tracebacks on stderr
    while its temporary server shut down. A server's own output goes to its log in PREFECT_HOME, whichever server a
    command uses: stderr holds the command's own messages only."""
    import shutil

    if server == "ephemeral":
        env = {**env, "ARCHIVE_PREFECT_SERVER": "ephemeral"}
    source = tmp_path / "source"
    source.mkdir()
    for seed in sorted(seeds_dir.iterdir())[:2]:
        shutil.copy(seed, source / seed.name)
    dest = str(tmp_path / "store")
    for command in (("ingest", str(source), "--dest", dest), ("verify", "--dest", dest)):
        done = archive(*command, env=env)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "CancelledError" not in done.stderr, done.stderr
    log = "archive-temporary-server.log" if server == "ephemeral" else "archive-server.log"
    assert (Path(env["PREFECT_HOME"]) / log).exists()  # where the server's output went instead
    assert (Path(env["PREFECT_HOME"]) / "archive-server.json").exists() == (server == "shared")
    if server == "ephemeral":  # each command's own server ended with it
        assert _processes(env, "server start --host 127.0.0.1") == [] and _processes(env, "--serve-while-open") == []
