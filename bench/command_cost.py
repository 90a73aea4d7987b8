"""The fixed cost of an `archive` command that runs a flow: `archive verify` of a five-document store, with the
shared local Prefect server (the default) against a temporary server for each command (ARCHIVE_PREFECT_SERVER=
ephemeral), in alternating pairs in one run.

    python bench/command_cost.py [--runs 5] [--json-out FILE]

Its own PREFECT_HOME (a temporary directory): the shared server is started by a warm-up command, as by a user's
first command, and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "tests" / "corpus" / "seeds"


def archive(*args: str, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs of commands timed (default 5)")
    parser.add_argument("--json-out", help="also write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archive-command-cost-") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "ARCHIVE_PREFECT_SERVER"}
        env.update(PREFECT_HOME=str(Path(work) / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        source, dest = Path(work) / "source", str(Path(work) / "store")
        shutil.copytree(SEEDS, source)
        first = archive("ingest", str(source), "--dest", dest, env=env)  # starts the shared server
        ephemeral = {**env, "ARCHIVE_PREFECT_SERVER": "ephemeral"}
        shared, temporary = [], []
        try:
            for _ in range(args.runs):
                shared.append(archive("verify", "--dest", dest, env=env))
                temporary.append(archive("verify", "--dest", dest, env=ephemeral))
        finally:
            subprocess.run([sys.executable, "-m", "archive_flows.cli", "service", "stop"], env=env,
                           stdout=subprocess.DEVNULL)
    figures = {"first_command_s": round(first, 2),
               "verify_shared_server_s": round(statistics.median(shared), 2),
               "verify_temporary_server_s": round(statistics.median(temporary), 2),
               "ratio_median": round(statistics.median(s / t for s, t in zip(shared, temporary)), 3),
               "runs": args.runs}
    print(f"archive verify, median of {args.runs}: shared server {figures['verify_shared_server_s']} s, temporary "
          f"server {figures['verify_temporary_server_s']} s (ratio {figures['ratio_median']}); the first command, "
          f"which starts the shared server: {figures['first_command_s']} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
