"""User mistakes end in one ``Error: ...`` line saying what to do (exit 1, or 2 for bad usage); ``-v`` adds the traceback.

Each case runs the installed ``ser`` command in a fresh process, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SER = str(Path(sys.executable).parent / "ser")


def ser(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SER, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def one_clean_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Exit ``code``, no traceback, exactly one ``Error:`` line that contains ``words``."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result)
    for word in words:
        assert word in line, line


@pytest.fixture
def not_a_bundle(tmp_path) -> Path:
    folder = tmp_path / "not-a-bundle"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"not a model")
    return folder


def test_a_missing_or_unreadable_model_bundle_is_one_line_saying_what_to_pass(tmp_path, not_a_bundle):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    one_clean_error(ser("predict", "--model", str(tmp_path / "nonexistent"), str(clip), cwd=tmp_path), 1,
                    "not a model bundle")
    one_clean_error(ser("predict", "--model", str(not_a_bundle), str(clip), cwd=tmp_path), 1, "bundle.json")
    archive = tmp_path / "archive"
    archive.mkdir()
    one_clean_error(ser("score", "--model", str(not_a_bundle), "--archive", str(archive), "--out", str(tmp_path / "out"),
                        cwd=tmp_path), 1, "not a model bundle")


@pytest.fixture
def corrupt_reports(tmp_path) -> Path:
    """A report folder whose Parquet files are not Parquet (the query engine's own error, not a user-error check)."""
    for table in ("calls", "segments"):
        part = tmp_path / "reports" / table / "date=2026-01-01" / "part-0.parquet"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"not parquet")
    return tmp_path / "reports"


def test_any_other_failure_is_one_line_and_verbose_adds_the_traceback(tmp_path, corrupt_reports):
    one_clean_error(ser("report", "--reports", str(corrupt_reports), cwd=tmp_path), 1, "part-0.parquet", "ser -v")
    verbose = ser("-v", "report", "--reports", str(corrupt_reports), cwd=tmp_path)
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert len(error_lines(verbose)) == 1


def test_missing_paths_and_bad_options(tmp_path):
    one_clean_error(ser("score", "--archive", str(tmp_path / "no-archive"), "--out", str(tmp_path / "out"), cwd=tmp_path),
                    1, "does not exist")
    one_clean_error(ser("report", "--reports", str(tmp_path / "no-reports"), cwd=tmp_path), 1, "no calls reports")
    one_clean_error(ser("report", "--reports", str(tmp_path), "--date", "yesterday", cwd=tmp_path), 2, "YYYY-MM-DD")
    one_clean_error(ser("extract", "--corpus", "nosuch=.", "--out", str(tmp_path / "f"), cwd=tmp_path), 2,
                    "unknown corpus", "known:")
