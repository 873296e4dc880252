"""Where a model came from: the project's git revision, recorded in every bundle."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision() -> str | None:
    """The project's git commit (with ``-dirty`` when the tree has changes), or ``None`` outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("-dirty" if dirty else "")
