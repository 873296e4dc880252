"""``ser report --html``: one self-contained page, rendered in a real headless Chromium (skipped where there is none)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.cli import main
from tests.report_factory import CALLS, write_reports

CHROMIUM = Path("/usr/bin/chromium")
ESCALATED = ("d2/very-escalating", "d1/escalating")


@pytest.fixture
def page(tmp_path) -> Path:
    out = str(tmp_path / "reports")
    write_reports(out)
    page = tmp_path / "mail" / "report.html"
    result = CliRunner().invoke(main, ["report", "--reports", out, "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert f"HTML report: {page}" in result.output
    return page


def test_the_page_is_self_contained_with_charts_counts_and_every_escalated_call(page):
    text = page.read_text()
    calls = sum(len(results) for results in CALLS.values())
    assert f"{calls} calls" in text
    assert len(re.findall(r'<img class="chart"[^>]* src="data:image/png;base64,', text)) >= 2
    for call_id in ESCALATED:
        assert f"<h3>{call_id}</h3>" in text
    assert not re.search(r"https?://", text, re.IGNORECASE)
    assert all(ref.startswith("data:") for ref in re.findall(r'(?:src|href)="([^"]*)"', text))
    assert "CREATE VIEW calls AS" in text and "FROM calls WHERE escalated" in text  # the SQL behind the tables


def screenshot(page: Path, tmp_path: Path) -> None:
    """Render ``page`` in headless Chromium and check the shot shows text and coloured charts, not a blank page."""
    shot = tmp_path / "report.png"
    profile = tmp_path / "chromium-profile"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--window-size=1200,2600", f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (2600, 1200)
    not_white = (pixels < 235).any(axis=2).mean()
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 60).mean()  # bars and lines, not only black text
    assert not_white > 0.03 and coloured > 0.01, (not_white, coloured)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_page_renders_in_headless_chromium(page, tmp_path):
    screenshot(page, tmp_path)
