"""kill -9 of a whole `archive ingest` (the CLI and its worker processes) at seeded random points of a run.

After each kill: no row of the killed run is visible unless its manifest committed, `archive verify` passes,
and the next run commits datasets equal to those of a clean run. The points are chosen by a seeded
generator among the run's phases, so every phase is hit: starting up (a delay), storing originals (after
N objects), writing parts (after N part files), holding the commit lock, and just after the manifest.

`make test` tries ARCHIVE_CRASH_POINTS=4 points (one per phase of a run); `make stress` tries 20.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from archive.commitlock import LOCK_KEY
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import LocalStore
from tests.tables_util import assert_tables_match

pytestmark = pytest.mark.cli

POINTS = int(os.environ.get("ARCHIVE_CRASH_POINTS", "4"))
SEED = int(os.environ.get("ARCHIVE_CRASH_SEED", "20261201"))
BATCH_FILES = 20
LETTERS = 100  # generated letters in the crash source: with the seeds and three more files, 6 batches
PHASES = ("objects", "parts", "commit-lock", "manifest", "startup")
RUN_SECONDS = 240


@dataclass(frozen=True)
class CrashPoint:
    phase: str
    threshold: float  # seconds (startup), objects or parts written; after the lock or the manifest: seconds more

    def __str__(self) -> str:
        return f"{self.phase}@{self.threshold:g}" if self.phase in ("startup", "objects", "parts") \
            else f"{self.phase}+{self.threshold * 1000:.0f}ms"


def crash_points(count: int, seed: int, files: int, parts: int, startup_seconds: float) -> list[CrashPoint]:
    """count points, cycling through the phases so each is hit, with seeded thresholds within each."""
    rng = random.Random(seed)
    points = []
    for index in range(count):
        phase = PHASES[index % len(PHASES)]
        while True:  # twenty different points: draw again on a repeat
            threshold = {"startup": rng.uniform(0.2, startup_seconds), "objects": rng.randint(1, files - 1),
                         "parts": rng.randint(1, parts - 1), "commit-lock": rng.uniform(0, 0.05),
                         "manifest": rng.uniform(0, 0.3)}[phase]
            if CrashPoint(phase, threshold) not in points:
                break
        points.append(CrashPoint(phase, threshold))
    return points


@pytest.fixture(scope="module")
def cli_env(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("ARCHIVE_DEST", None)
    return env


@pytest.fixture(scope="module")
def crash_source(tmp_path_factory, seeds_dir) -> Path:
    """The seeds, LETTERS generated letters (some sharing a seed's text), a duplicate and two bad files: 6 batches."""
    source = tmp_path_factory.mktemp("crash") / "source"
    (source / "seeds").mkdir(parents=True)
    seeds = sorted(seeds_dir.iterdir())
    for seed in seeds:
        (source / "seeds" / seed.name).write_bytes(seed.read_bytes())
    rng = random.Random(SEED)
    words = seeds[0].read_text(encoding="utf-8").split()
    for number in range(LETTERS):
        folder = source / f"box-{number // 40:02d}"
        folder.mkdir(exist_ok=True)
        start = rng.randrange(len(words) - 200)
        body = " ".join(words[start:start + rng.randint(80, 200)])
        (folder / f"letter-{number:03d}.txt").write_text(
            f"Letter {number}\n\ndate 2021-03-{number % 28 + 1:02d}\n\n{body}\n", encoding="utf-8")
    (source / "box-00" / "copy-of-a-seed.txt").write_bytes(seeds[1].read_bytes())
    (source / "box-01" / "empty.txt").write_bytes(b"")
    (source / "box-02" / "scan.bin").write_bytes(bytes(range(256)) * 16)
    return source


def ingest_command(source: Path, dest: Path) -> list[str]:
    return [sys.executable, "-m", "archive_flows.cli", "ingest", str(source), "--dest", str(dest),
            "--collection", "crash", "--batch-files", str(BATCH_FILES), "--workers", "2", "--json"]


def run_to_completion(source: Path, dest: Path, env: dict) -> dict:
    done = subprocess.run(ingest_command(source, dest), env=env, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def datasets(dest: Path) -> dict[str, list[tuple]]:
    """What the run that published the documents holds, without what differs between any two runs (ids, times).
    (A later run of the same source records every file again, as duplicates.)"""
    runs = [m["run_id"] for m in committed_manifests(LocalStore(dest))
            if m["kind"] == "ingest" and m["counts"]["documents"]]
    documents = open_dataset(str(dest), "documents").to_table(columns=["doc_id", "text_sha256", "title", "date"])
    files = open_dataset(str(dest), "files", runs=runs).to_table(columns=["path", "sha256", "outcome", "reason"])
    quarantine = open_dataset(str(dest), "quarantine", runs=runs).to_table(columns=["sha256", "reason"])
    return {"documents": sorted(tuple(r.values()) for r in documents.to_pylist()),
            "files": sorted(tuple(r.values()) for r in files.to_pylist()),
            "quarantine": sorted(tuple(r.values()) for r in quarantine.to_pylist()),
            "records": sorted(records_view(dest).items())}


def records_view(dest: Path) -> dict[str, tuple]:
    """The current view of the records: path -> (version, title, doc_id)."""
    table = open_dataset(str(dest), "records").to_table(columns=["path", "version", "title", "doc_id"])
    return {r["path"]: (r["version"], r["title"], r["doc_id"]) for r in table.to_pylist()}


def count_keys(root: Path, prefix: str) -> int:
    top = root / prefix
    return sum(len(names) for _, _, names in os.walk(top)) if top.is_dir() else 0


def reached(point: CrashPoint, root: Path, started: float) -> bool:
    if point.phase == "startup":
        return time.monotonic() - started >= point.threshold
    if point.phase == "objects":
        return count_keys(root, "objects") >= point.threshold
    if point.phase == "parts":
        return count_keys(root, "datasets") >= point.threshold
    if point.phase == "commit-lock":
        return (root / LOCK_KEY).exists()
    return count_keys(root, "runs") >= 1  # manifest


@pytest.fixture(scope="module")
def clean_run(crash_source, cli_env, tmp_path_factory):
    dest = tmp_path_factory.mktemp("clean") / "store"
    started = time.monotonic()
    result = run_to_completion(crash_source, dest, cli_env)
    seconds = time.monotonic() - started
    assert result["counts"]["documents"] > LETTERS - 10 and result["counts"]["quarantined"] == 2
    return {"result": result, "datasets": datasets(dest), "seconds": seconds,
            "parts": count_keys(dest, "datasets"), "startup": seconds - result["seconds"]}


def _points(request) -> list[CrashPoint]:
    clean = request.getfixturevalue("clean_run")
    return crash_points(POINTS, SEED, clean["result"]["counts"]["files"], clean["parts"], max(clean["startup"], 0.5))


@pytest.mark.parametrize("index", range(POINTS))
def test_kill_9_at_a_seeded_point_loses_nothing(index, request, crash_source, cli_env, clean_run, tmp_path):
    point = _points(request)[index]
    dest = tmp_path / "store"
    root = dest

    # The killed run: its own session, so the kill takes the CLI and its worker processes at once.
    started = time.monotonic()
    process = subprocess.Popen(ingest_command(crash_source, dest), env=cli_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    while not reached(point, root, started):
        if process.poll() is not None:
            break  # it finished first: the point comes after this run's end, checked as a committed run below
        assert time.monotonic() - started < RUN_SECONDS, f"{point} not reached in {RUN_SECONDS} s"
        time.sleep(0.002)
    if point.phase in ("commit-lock", "manifest"):
        time.sleep(point.threshold)  # a seeded moment after the lock was taken or the manifest written
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    killed_after = time.monotonic() - started

    store = LocalStore(dest)
    committed = list(committed_manifests(store)) if dest.exists() else []
    seen = {"objects": count_keys(root, "objects"), "parts": count_keys(root, "datasets"),
            "lock": (root / LOCK_KEY).exists(), "committed": len(committed)}
    print(f"point {index} {point}: killed after {killed_after:.2f} s with {seen}")

    # Nothing of the killed run is visible unless its manifest committed; if it did, all of it is.
    if dest.exists():
        visible = datasets(dest)
        assert visible == clean_run["datasets"] if committed else all(not rows for rows in visible.values()), \
            f"{point}: rows visible from a run that did not commit"

    # archive verify passes on what the killed run left.
    if committed:
        verify = subprocess.run([sys.executable, "-m", "archive_flows.cli", "verify", "--dest", str(dest), "--json"],
                                env=cli_env, capture_output=True, text=True, timeout=RUN_SECONDS)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert json.loads(verify.stdout)["problems"] == []
        assert_tables_match(str(dest))  # (a table the kill left behind its manifest: verify caught it up)

    # The next run completes (a lock left by the killed run does not stop it) and the store holds what a
    # clean run's does: the killed run's stored originals are reused, not duplicated or lost.
    after = run_to_completion(crash_source, dest, cli_env)
    assert after["status"] == "committed"
    assert datasets(dest) == clean_run["datasets"]
    assert not (root / LOCK_KEY).exists()
    expected_new = 0 if committed else clean_run["result"]["counts"]["documents"]
    assert after["counts"]["documents"] == expected_new
    verify = subprocess.run([sys.executable, "-m", "archive_flows.cli", "verify", "--dest", str(dest), "--json"],
                            env=cli_env, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert verify.returncode == 0 and json.loads(verify.stdout)["problems"] == [], verify.stdout + verify.stderr
    assert_tables_match(str(dest))


def test_the_points_cover_every_phase_of_a_run(request):
    points = _points(request)
    assert len(points) == POINTS and len(set(points)) == POINTS
    assert {p.phase for p in points} == set(PHASES[:min(POINTS, len(PHASES))])


# kill -9 of a run that corrects descriptions: at a seeded number of its part files, while it holds the commit lock,
# or just after its manifest. Either every correction is visible (the manifest landed) or none is.
CORRECTION_PHASES = ("parts", "commit-lock", "manifest")
CORRECTED_LETTERS = 60


def describe_letters(source: Path, suffix: str) -> None:
    rows = [f"box-{n // 40:02d}/letter-{n:03d}.txt,Letter {n}{suffix}" for n in range(CORRECTED_LETTERS)]
    (source / "metadata.csv").write_text("filename,dc.title\n" + "\n".join(rows) + "\n", encoding="utf-8")


@pytest.mark.parametrize("phase", CORRECTION_PHASES)
def test_kill_9_during_a_correction_leaves_no_half_visible_version(phase, crash_source, cli_env, tmp_path):
    import shutil

    source, dest = tmp_path / "source", tmp_path / "store"
    shutil.copytree(crash_source, source)
    describe_letters(source, " (described)")
    run_to_completion(source, dest, cli_env)
    before = records_view(dest)
    describe_letters(source, " (corrected)")
    corrected = {path: (2, f"{title.removesuffix(' (described)')} (corrected)", doc_id) if path in {
        f"box-{n // 40:02d}/letter-{n:03d}.txt" for n in range(CORRECTED_LETTERS)} else (version, title, doc_id)
        for path, (version, title, doc_id) in before.items()}
    parts, runs = count_keys(dest, "datasets"), count_keys(dest, "runs")
    rng = random.Random(f"{SEED}-{phase}")
    threshold = {"parts": rng.randint(1, 10), "commit-lock": rng.uniform(0, 0.05), "manifest": rng.uniform(0, 0.3)}

    started = time.monotonic()
    process = subprocess.Popen(ingest_command(source, dest), env=cli_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    while not {"parts": lambda: count_keys(dest, "datasets") >= parts + threshold["parts"],
               "commit-lock": lambda: (dest / LOCK_KEY).exists(),
               "manifest": lambda: count_keys(dest, "runs") > runs}[phase]():
        if process.poll() is not None:
            break
        assert time.monotonic() - started < RUN_SECONDS, f"{phase} not reached in {RUN_SECONDS} s"
        time.sleep(0.002)
    if phase != "parts":
        time.sleep(threshold[phase])
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)

    committed = count_keys(dest, "runs") > runs
    print(f"correction killed at {phase} {threshold[phase]:g} after {time.monotonic() - started:.2f} s: "
          f"{'committed' if committed else 'not committed'}, lock {(dest / LOCK_KEY).exists()}")
    assert records_view(dest) == (corrected if committed else before), f"{phase}: a half-visible correction"
    after = run_to_completion(source, dest, cli_env)
    assert after["counts"]["updated"] == (0 if committed else CORRECTED_LETTERS)
    assert records_view(dest) == corrected
    versions = open_dataset(str(dest), "records", runs=[m["run_id"] for m in committed_manifests(LocalStore(dest))])
    assert versions.count_rows() == len(before) + CORRECTED_LETTERS  # each correction landed once
    verify = subprocess.run([sys.executable, "-m", "archive_flows.cli", "verify", "--dest", str(dest), "--json"],
                            env=cli_env, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert verify.returncode == 0 and json.loads(verify.stdout)["problems"] == [], verify.stdout + verify.stderr
