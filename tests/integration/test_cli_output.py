"""What a user sees from a default ``ser score``: a progress bar and one summary, not Ray's or TensorFlow's logs.

A real archive (``ser make-archive``, synthetic voices) is scored by the installed ``ser`` in a fresh process with a
private local Ray, as ``make demo`` does; ``-v`` adds ``ser``'s INFO lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SER = str(Path(sys.executable).parent / "ser")
PROGRESS = re.compile(r"^score: +\d+%\|")  # tqdm's bar, redrawn with carriage returns

pytestmark = pytest.mark.slow


def ser(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SER_VERBOSITY", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run([SER, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    """Every line written to stderr, progress redraws (``\\r``) split into their own lines, blanks dropped."""
    return [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    made = ser("make-archive", "--calls", "2", "--out", str(root), cwd=root)
    assert made.returncode == 0, made.stderr
    return root / "audio"


def test_a_default_score_prints_its_progress_and_summary_only(archive, tmp_path):
    result = ser("score", "--archive", str(archive), "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 files: 2 ok, 0 error") and len(result.stdout.splitlines()) == 1, result.stdout
    noise = [line for line in stderr_lines(result) if not PROGRESS.match(line)]
    assert noise == [], "\n".join(noise)


def test_verbose_adds_sers_info_lines(archive, tmp_path):
    result = ser("-v", "score", "--archive", str(archive), "--out", str(tmp_path / "reports"), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "INFO jobs.score: scoring 2 calls" in result.stderr
