"""One local Prefect server that `archive` commands share, instead of a temporary server for each command.

A command that is given no PREFECT_API_URL uses the server recorded in $PREFECT_HOME/archive-server.json when it
answers, else starts one there (`prefect server start` on 127.0.0.1, in a session of its own). A server started
this way stops by itself once no command has used it for ARCHIVE_PREFECT_IDLE_SECONDS (default 600): a keeper
process watches it. A server started by `archive service start` stays up until `archive service stop`.

A command holds a shared lock on archive-server.lock while it uses the server; the keeper stops the server only
when it can take that lock exclusively, so a long run is never cut off.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

START_SECONDS = 120
IDLE_SECONDS = 600
STOP_SECONDS = 15


def home() -> Path:
    """Prefect's home (PREFECT_HOME, else ~/.prefect): its database, and the shared server's state."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def _state_path() -> Path:
    return home() / "archive-server.json"


def read_state() -> dict | None:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def alive(pid: int | None) -> bool:
    """Whether the process runs (a zombie, ended but not yet reaped by its parent, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running() -> dict | None:
    """The shared server's state if it is up and answers, else None."""
    state = read_state()
    if state and alive(state.get("pid")) and healthy(state["api_url"]):
        return state
    return None


@contextmanager
def _file_lock(name: str, kind: int) -> Iterator[None]:
    home().mkdir(parents=True, exist_ok=True)
    with open(home() / name, "a") as handle:
        fcntl.flock(handle, kind)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], log: Path, env: dict | None = None, cwd: str | None = None,
          pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """A process in a session of its own (it outlives the command), its output appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True, pass_fds=pass_fds)


def prefect_command() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def ensure_started(*, keep: bool = False) -> dict:
    """The shared server, started if none answers. keep: stays up until stopped (the service), no idle stop."""
    with _file_lock("archive-server.start.lock", fcntl.LOCK_EX):  # two commands starting at once start one server
        state = running()
        if state is not None:
            if keep and not state.get("keep"):
                state["keep"] = True
                _write_state(state)
            return state
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = _server_env(api_url)
        server = spawn(_server_args(port), home() / "archive-server.log", env)
        # The keeper first: should this command end before it records the server, the keeper stops it.
        spawn([sys.executable, "-m", "archive_flows.server", "--keep-until-idle", str(server.pid), str(os.getpid())],
              home() / "archive-server.log")
        _wait_healthy(api_url, server, home() / "archive-server.log")
        state = {"pid": server.pid, "api_url": api_url, "ui_url": api_url.removesuffix("/api"), "keep": keep,
                 "started_at": time.time()}
        _write_state(state)
        return state


def _server_args(port: int) -> list[str]:
    return [prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def _server_env(api_url: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false"}


def _wait_healthy(api_url: str, process: subprocess.Popen, log: Path) -> None:
    """Until the server at api_url answers; else its process group is stopped and the error names its log."""
    deadline = time.monotonic() + START_SECONDS
    while not healthy(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            _kill_group(process.pid)
            raise RuntimeError(f"the local Prefect server did not start (see {log})")
        time.sleep(0.2)


def _write_state(state: dict) -> None:
    tmp = _state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, _state_path())


@contextmanager
def using(api_url: str) -> Iterator[None]:
    """Mark the shared server as in use for the block (the keeper does not stop it meanwhile)."""
    with _file_lock("archive-server.lock", fcntl.LOCK_SH):
        try:
            yield
        finally:
            if _state_path().exists():
                os.utime(_state_path())  # the idle time counts from the end of the last use


def stop(state: dict | None = None) -> bool:
    """Stop the shared server (and its worker, if the service started one). False if none was running."""
    state = state or read_state()
    if not state:
        return False
    _state_path().unlink(missing_ok=True)  # first: no command takes up a server that is stopping
    stopped = False
    for pid in (state.get("worker_pid"), state.get("pid")):  # the worker first, while the server still answers
        if alive(pid):
            _kill_group(pid)
            stopped = True
    return stopped


def _kill_group(pid: int) -> None:
    """SIGTERM to the process's session, then SIGKILL if it has not ended within STOP_SECONDS."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            except ChildProcessError:  # not our child: see whether it is gone
                if not alive(pid):
                    return
            time.sleep(0.1)


def keep_until_idle(pid: int, starter: int, idle_seconds: float, poll: float = 5.0) -> None:
    """The keeper: stop the server once nothing has used it for idle_seconds and no command holds it. Started
    with the server, before the command that starts it (starter) records it: a server that its command ended
    without recording, or that another replaced, is stopped at once."""
    recorded_by = time.monotonic() + START_SECONDS + 5
    while alive(pid):
        state = read_state()
        if not state or state.get("pid") != pid:
            if alive(starter) and time.monotonic() < recorded_by:
                time.sleep(0.2)  # still starting
                continue
            _kill_group(pid)  # nobody will use it
            return
        starter = 0  # recorded: from now on the server outlives the command that started it
        if state.get("keep"):
            return  # the service's: it runs until `archive service stop`
        try:
            idle = time.time() - _state_path().stat().st_mtime
        except OSError:
            return
        if idle >= idle_seconds:
            with open(home() / "archive-server.lock", "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # a command is using it
                else:
                    stop(state)
                    return
        time.sleep(min(poll, max(0.5, idle_seconds / 4)))


def idle_seconds() -> float:
    return float(os.environ.get("ARCHIVE_PREFECT_IDLE_SECONDS") or IDLE_SECONDS)


@contextmanager
def temporary() -> Iterator[str]:
    """A Prefect server of this command's own (ARCHIVE_PREFECT_SERVER=ephemeral): its API URL for the block.

    It ends with the command however the command ends, SIGKILL included: a supervisor process holds the read
    end of a pipe whose only write end this process holds; the kernel closes that end when this process ends,
    and the supervisor then stops the server's process group.
    """
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = home() / "archive-temporary-server.log"
    read_end, write_end = os.pipe()  # (neither is inherited by other children: close_fds is the default)
    try:
        supervisor = spawn([sys.executable, "-m", "archive_flows.server", "--serve-while-open", str(port),
                            str(read_end)], log, _server_env(api_url), pass_fds=(read_end,))
    finally:
        os.close(read_end)
    try:
        _wait_healthy(api_url, supervisor, log)
        yield api_url
    finally:
        os.close(write_end)
        try:
            supervisor.wait(timeout=STOP_SECONDS + 10)
        except subprocess.TimeoutExpired:
            _kill_group(supervisor.pid)


def serve_while_open(port: int, fd: int) -> None:
    """The supervisor of a temporary server: runs it until fd (a pipe's read end) reaches its end, or the server
    ends by itself, then stops the server's process group."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # stopped itself: it stops the server first
        signal.signal(sig, lambda *_: sys.exit(0))
    server = subprocess.Popen(_server_args(port), stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while server.poll() is None:
            readable, _, _ = select.select([fd], [], [], 1.0)
            if readable and not os.read(fd, 1):
                break  # the command has ended
    finally:
        _kill_group(server.pid)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--keep-until-idle":
        keep_until_idle(int(sys.argv[2]), int(sys.argv[3]), idle_seconds())
    elif len(sys.argv) == 4 and sys.argv[1] == "--serve-while-open":
        serve_while_open(int(sys.argv[2]), int(sys.argv[3]))


@contextmanager
def for_this_command() -> Iterator[None]:
    """This command's flows talk to the shared server, unless a Prefect API is configured (PREFECT_API_URL, a
    profile) or ARCHIVE_PREFECT_SERVER=ephemeral asks for Prefect's temporary server of the command's own."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        yield
    elif os.environ.get("ARCHIVE_PREFECT_SERVER") == "ephemeral":
        with temporary() as api_url, temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield
    else:
        state = ensure_started()
        with using(state["api_url"]), temporary_settings(updates={PREFECT_API_URL: state["api_url"]}):
            yield


REPO = Path(__file__).resolve().parent.parent  # prefect.yaml is here; the deployments run this checkout's code
POOL = "archive-pool"


def start_service() -> dict:
    """The service in one step, in order: the server (answering), the work pool, the deployments of prefect.yaml,
    then a worker polling the pool. Again on a running service: what is missing is started, nothing twice."""
    state = ensure_started(keep=True)
    env = {**os.environ, "PREFECT_API_URL": state["api_url"]}
    inspected = subprocess.run([prefect_command(), "work-pool", "inspect", POOL], env=env, capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=120)
    if inspected.returncode != 0:
        _prefect(["work-pool", "create", POOL, "--type", "process"], env)
    _prefect(["--no-prompt", "deploy", "--all"], env)
    if not alive(state.get("worker_pid")):
        worker = spawn([prefect_command(), "worker", "start", "--pool", POOL], home() / "archive-worker.log",
                       env, cwd=str(REPO))
        state["worker_pid"] = worker.pid
        _write_state(state)
    return state


def _prefect(args: list[str], env: dict) -> str:
    done = subprocess.run([prefect_command(), *args], env=env, cwd=REPO, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"prefect {' '.join(args)} failed: {lines[-1] if lines else done.returncode}")
    return done.stdout


def status() -> dict:
    """What runs: the server (its URL and whether it answers), whether it stops when idle, the worker."""
    state = read_state() or {}
    up = running() is not None
    return {"server": {"up": up, "pid": state.get("pid"), "api_url": state.get("api_url"),
                       "ui_url": state.get("ui_url"), "stops_when_idle": not state.get("keep", False)},
            "worker": {"up": alive(state.get("worker_pid")), "pid": state.get("worker_pid"), "pool": POOL},
            "state_file": str(_state_path())}
