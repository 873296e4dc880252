"""Hostile and unlucky inputs: special files among the calls, names that a terminal or the chart library would obey,
Ctrl-C in the middle of a run.

Real files (``mkfifo``, a Unix socket), real ``ser`` processes whose raw output bytes are checked, and the real
page in a headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.cbook import is_math_text
from matplotlib.text import Text

from jobs.cli import main
from ser_core.reports.page import calls_chart, errors_chart, figure_uri
from ser_core.reports.queries import build_report
from ser_core.reports.store import LEASE_FILE
from ser_core.scoring.calls import CallResult
from tests.audio_factory import write_audio, write_speech
from tests.integration.test_report_html import CHROMIUM, screenshot
from tests.integration.test_score import DATE, bundle, connect, rows, turn_taking_call  # noqa: F401
from tests.report_factory import NEGATIVE, stereo_call, write_reports

HOSTILE = "e\x1b]0;PWNED\x07\x1b[2Jx"  # printed raw, it retitles the terminal window and clears the screen
HOSTILE_SHOWN = rb"e\x1b]0;PWNED\x07\x1b[2Jx"
QUEUES = ("$x^$", r"$\frac{1}{0}$ $\badcmd{x}$", "_q", "e\x1b[2Jq")


def ser(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """``ser ARGS`` in a fresh process (its own session, so a hang is killed with its Ray); output as raw bytes."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"ser {' '.join(args[:1])} still running after {timeout} s: {stderr.decode(errors='replace')[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def special_files(folder: Path) -> None:
    """A FIFO (opening it for reading blocks until a writer comes: none will) and a Unix socket, named as calls."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "zz.wav")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(folder / "sock.wav"))  # the socket file stays after the socket is closed


@pytest.fixture(scope="module")
def scored_special(bundle, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """``ser score`` over a good call, a FIFO, a socket and a broken file whose name holds escape sequences."""
    archive = tmp_path_factory.mktemp("special") / DATE
    write_audio(archive / "q" / "good.wav", turn_taking_call(8000), 8000)
    special_files(archive / "q")
    (archive / "q" / f"{HOSTILE}.wav").write_text("not audio")
    out = tmp_path_factory.mktemp("special-out") / "reports"
    run = ser("score", "--archive", str(archive), "--out", str(out), "--model", str(bundle), "--date", DATE,
              "--workers", "1", "--no-progress", timeout=300)
    return run, out


def test_special_files_in_the_archive_become_error_rows_and_the_job_finishes(scored_special):
    run, out = scored_special
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    calls = {r["call_id"]: (r["status"], r["error"]) for r in rows(connect(str(out)), "SELECT call_id, status, error FROM calls")}
    assert calls[f"{DATE}/q/good"] == ("ok", None)
    assert calls[f"{DATE}/q/zz"] == ("error", "not a regular file: fifo")
    assert calls[f"{DATE}/q/sock"] == ("error", "not a regular file: socket")
    assert json.loads((out / LEASE_FILE).read_text())["expires_at"] == 0  # released: the next night may write


def test_no_escape_sequence_from_a_file_name_reaches_the_terminal(scored_special):
    run, out = scored_special
    assert b"\x1b" not in run.stdout + run.stderr and b"\x07" not in run.stdout + run.stderr
    assert b"  error " + DATE.encode() + b"/q/" + HOSTILE_SHOWN + b": not decodable audio" in run.stdout
    (stored,) = rows(connect(str(out)), "SELECT call_id FROM calls WHERE call_id LIKE '%PWNED%'")
    assert stored["call_id"] == f"{DATE}/q/{HOSTILE}"  # the data keeps the name as it is


@pytest.fixture(scope="module")
def predicted(bundle, tmp_path_factory) -> subprocess.CompletedProcess:
    """``ser predict`` on a FIFO and on a clip with a hostile name, with a bundle whose first label is hostile."""
    folder = tmp_path_factory.mktemp("predict")
    hostile_labels = Path(shutil.copytree(bundle, folder / "model"))
    info = json.loads((hostile_labels / "bundle.json").read_text())
    info["labels"][0] = "neutral\x1b[2J"
    (hostile_labels / "bundle.json").write_text(json.dumps(info))
    special_files(folder)
    clip = write_speech(folder / f"{HOSTILE}.wav", seconds=4.0, sample_rate=8000)
    return ser("predict", "--model", str(hostile_labels), str(folder / "zz.wav"), str(clip), timeout=300)


def test_predict_refuses_a_fifo_at_once_and_goes_on(predicted):
    assert predicted.returncode == 1, predicted.stderr.decode(errors="replace")
    assert b"zz.wav: cannot decode: not a regular file: fifo" in predicted.stderr
    (line,) = [line for line in predicted.stdout.splitlines() if not line.startswith(b" ")]
    assert line.split(b"\t")[0].endswith(b"/" + HOSTILE_SHOWN + b".wav")


def test_predict_shows_names_and_labels_escaped(predicted):
    assert b"\x1b" not in predicted.stdout + predicted.stderr
    assert rb"neutral\x1b[2J=" in predicted.stdout


def hostile_reports(out: str) -> None:
    """Reports with one escalating call per hostile queue and failures whose reason the chart library would parse."""
    calls = [stereo_call(f"{queue}/c-{i}", ["neutral"] * 2, ["neutral"] * 3 + [NEGATIVE] * 6) for i, queue in enumerate(QUEUES)]
    calls += [CallResult(f"{queue}/broken", f"/archive/{queue}/broken.wav", "error", f"not decodable audio ({queue})")
              for queue in QUEUES]
    write_reports(out, {DATE: calls})


def test_names_the_chart_library_would_parse_are_drawn_literally(tmp_path):
    out = str(tmp_path / "reports")
    hostile_reports(out)
    report = build_report(out)
    queues, errors = calls_chart(report.tables["queues"]), errors_chart(report.tables["errors"])
    for fig in (queues, errors):
        figure_uri(fig)  # drawn as the page draws it (tick labels are made while drawing)
        drawn = [t for t in fig.findobj(Text) if t.get_text()]
        assert not [t.get_text() for t in drawn if t.get_parse_math() and is_math_text(t.get_text())]
    legend = sorted(t.get_text() for t in queues.axes[0].get_legend().get_texts())
    assert legend == sorted(["$x^$", r"$\frac{1}{0}$ $\badcmd{x}$", "_q", r"e\x1b[2Jq"])  # "_q" is not dropped
    reasons = {t.get_text() for t in errors.axes[0].get_yticklabels()}
    assert r"not decodable audio ($\frac{1}{0}$ $\badcmd{x}$)" in reasons


@pytest.fixture
def hostile_page(tmp_path) -> Path:
    out = str(tmp_path / "reports")
    hostile_reports(out)
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", "--reports", out, "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and r"e\x1b[2Jq" in result.output  # the text report escapes names too
    return page


def test_the_page_is_written_with_names_shown_literally(hostile_page):
    text = hostile_page.read_text()
    assert "<td>$x^$</td>" in text and "<td>_q</td>" in text and r"<td>$\frac{1}{0}$ $\badcmd{x}$</td>" in text
    assert "\x1b" not in text and r"<h3>e\x1b[2Jq/c-3</h3>" in text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_page_with_such_names_renders_in_headless_chromium(hostile_page, tmp_path):
    screenshot(hostile_page, tmp_path)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job (`ser score ... &`)


@pytest.mark.slow
@pytest.mark.parametrize("started", [None, ignore_sigint], ids=["from-a-terminal", "with-sigint-ignored"])
def test_ctrl_c_commits_what_is_finished_releases_the_lease_and_the_next_run_resumes(started, bundle, tmp_path, local_ray):
    from tests.integration.test_score import score

    archive, out, total = tmp_path / "archive", tmp_path / "reports", 40
    original = write_audio(tmp_path / "call.wav", turn_taking_call(8000), 8000)
    (archive / "day").mkdir(parents=True)
    for i in range(total):
        os.link(original, archive / "day" / f"c-{i:03d}.wav")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # one part for the whole run (the default --calls-per-part): nothing is committed before the end unless Ctrl-C does it
    job = subprocess.Popen([sys.executable, "-m", "jobs.cli", "score", "--archive", str(archive), "--out", str(out),
                            "--model", str(bundle), "--date", DATE, "--workers", "1"],
                           env=env, start_new_session=True, preexec_fn=started, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        progress = b""
        while not [n for n in re.findall(rb"(\d+)/%d \[" % total, progress) if 3 <= int(n) < total]:
            chunk = os.read(job.stderr.fileno(), 4096)
            assert chunk, progress.decode(errors="replace")[-2000:]
            progress += chunk
        os.killpg(job.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: to the whole group, Ray's processes too
        interrupted = time.monotonic()
        stdout, stderr = job.communicate(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 130 and took < 20, (job.returncode, took, stderr.decode(errors="replace")[-2000:])
    assert b"interrupted" in stderr
    committed = rows(connect(str(out)), "SELECT call_id, status FROM calls")
    assert 3 <= len(committed) < total and {r["status"] for r in committed} == {"ok"}
    assert json.loads((out / LEASE_FILE).read_text())["expires_at"] == 0

    rest = score(archive, out, bundle)
    assert (rest.skipped, rest.ok) == (len(committed), total - len(committed))
    assert connect(str(out)).sql("SELECT count(DISTINCT call_id) FROM calls").fetchall()[0][0] == total
