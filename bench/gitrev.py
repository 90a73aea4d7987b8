"""The code a benchmark measured, for its JSON: the repository's short commit, +dirty with changes to tracked files."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version(repo: Path) -> str:
    """"<short commit>", "<short commit>+dirty", or "unknown" where git or the repository is not there."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
