"""Shared fixtures: the seed corpus, a Prefect test harness once per session, stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["tests.s3server"]

SEEDS = Path(__file__).resolve().parent / "corpus" / "seeds"  # five digitised news documents, as delivered


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    if not SEEDS.is_dir():
        pytest.fail(f"the seed corpus is missing: {SEEDS}")
    return SEEDS


@pytest.fixture
def seed_copy(tmp_path, seeds_dir) -> Path:
    """A writable copy of the five seeds, as a source folder of its own."""
    target = tmp_path / "source"
    shutil.copytree(seeds_dir, target)
    return target


@pytest.fixture(scope="session")
def prefect_harness():
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls out of a test run
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Flow run heartbeats (Prefect's detection of crashed runs) are off: no test is about
    # them, and at its end every flow waits for the heartbeat thread's current 1 s sleep.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield
