"""``ser report`` over reports written by the scoring job's own part writer (locally and on S3 through moto)."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from jobs.cli import main
from ser_core.labels import EMOTIONS
from ser_core.reports.queries import build_report
from tests.report_factory import CALLS, write_reports


def expected_shares(role_channel: int) -> pd.Series:
    emotions = [EMOTIONS[i] for calls in CALLS.values() for r in calls if r.status == "ok"
                for i in r.windows.probs[r.windows.channel == role_channel].argmax(axis=1)]
    return (pd.Series(emotions).value_counts(normalize=True) * 100).round(1)


def check(report, dates=tuple(CALLS)) -> None:
    results = [r for date in dates for r in CALLS[date]]
    counts = report.tables["counts"].set_index("date")
    assert list(counts.index) == list(dates)
    assert counts["calls"].sum() == len(results)
    assert counts["failed"].sum() == sum(r.status == "error" for r in results)
    reasons = pd.Series([r.error for r in results if r.error]).value_counts()
    errors = report.tables["errors"]
    assert dict(zip(errors["error"], errors["calls"])) == reasons.to_dict()


def test_report_counts_emotions_and_escalations(tmp_path):
    out = str(tmp_path / "reports")
    write_reports(out)
    report = build_report(out)
    check(report)
    emotions = report.tables["emotions"].set_index("speaker_role")
    for role, channel in (("agent", 0), ("customer", 1)):
        expected = expected_shares(channel).reindex(list(EMOTIONS), fill_value=0.0)
        assert emotions.loc[role, list(EMOTIONS)].astype(float).tolist() == pytest.approx(expected.tolist())
    by_date = report.tables["emotions_by_date"]  # the mix over time: each day's shares per role add up to 100 %
    assert set(zip(by_date["date"], by_date["speaker_role"])) == {(d, role) for d in CALLS for role in ("agent", "customer")}
    assert by_date[list(EMOTIONS)].sum(axis=1).round().eq(100).all()
    escalated = report.tables["escalated"]
    assert list(escalated["call_id"]) == ["d2/very-escalating", "d1/escalating"]  # largest rise first, calm call absent
    assert escalated["negative_last"].iloc[0] == 1.0

    only = build_report(out, date="2026-11-24")
    check(only, dates=("2026-11-24",))
    assert list(only.tables["escalated"]["call_id"]) == ["d2/very-escalating"]


def test_report_cli_prints_the_summary_and_refuses_missing_reports(tmp_path):
    out = str(tmp_path / "reports")
    write_reports(out)
    results = [r for calls in CALLS.values() for r in calls]
    failed = sum(r.status == "error" for r in results)
    printed = CliRunner().invoke(main, ["report", "--reports", out, "--top", "1"])
    assert printed.exit_code == 0, printed.output
    assert f"{len(results)} calls, {len(results) - failed} scored, {failed} failed" in printed.output
    escalated = printed.output.split("Most escalated calls")[1]
    assert "d2/very-escalating" in escalated and "d1/escalating" not in escalated  # --top 1
    missing = CliRunner().invoke(main, ["report", "--reports", out, "--date", "2020-01-01"])
    assert missing.exit_code != 0 and "no calls reports" in missing.output
    bad_date = CliRunner().invoke(main, ["report", "--reports", out, "--date", "yesterday"])
    assert bad_date.exit_code != 0 and "YYYY-MM-DD" in bad_date.output


def test_report_reads_s3(s3_bucket):
    out = f"{s3_bucket}/reports"
    write_reports(out)
    check(build_report(out))


def test_calls_per_date_and_queue_take_the_queue_from_the_recordings_folder(tmp_path):
    out = str(tmp_path / "reports")
    write_reports(out)
    queues = build_report(out).tables["queues"]
    got = {(row.date, row.queue): row.calls for row in queues.itertuples()}
    assert got == {("2026-11-23", "d1"): 3, ("2026-11-24", "d2"): 3, ("2026-11-24", "(none)"): 1}
    assert queues["failed"].sum() == sum(r.status == "error" for calls in CALLS.values() for r in calls)


def test_a_reports_path_with_quotes_is_quoted_not_pasted_into_sql(tmp_path):
    out = str(tmp_path / "it's the reports'); DROP VIEW calls; --")
    write_reports(out)
    check(build_report(out))


def test_reports_is_a_path_not_a_pattern(tmp_path):
    bracket = str(tmp_path / "br[a]ck")  # as a glob, [a] would match only "brack"
    write_reports(bracket)
    check(build_report(bracket))
    starred = str(tmp_path / "night*?")
    write_reports(starred)
    check(build_report(starred))
    for name in ("out_1", "out_2"):
        write_reports(str(tmp_path / name))
    merged = CliRunner().invoke(main, ["report", "--reports", str(tmp_path / "out_*")])
    assert merged.exit_code == 1 and f"no calls reports in {tmp_path}/out_*/calls" in merged.output  # not two stores in one


def test_a_negative_top_is_a_usage_error(tmp_path):
    out = str(tmp_path / "reports")
    write_reports(out)
    result = CliRunner().invoke(main, ["report", "--reports", out, "--top=-1"])
    assert result.exit_code == 2 and "Invalid value for '--top'" in result.output


def test_report_json_gives_the_same_figures_and_their_sql(tmp_path):
    out = str(tmp_path / "reports")
    write_reports(out)
    printed = CliRunner().invoke(main, ["report", "--reports", out, "--json"])
    assert printed.exit_code == 0, printed.output
    figures = json.loads(printed.output)
    results = [r for calls in CALLS.values() for r in calls]
    assert figures["totals"] == {"calls": len(results), "scored": sum(r.status == "ok" for r in results),
                                 "failed": sum(r.status == "error" for r in results)}
    assert [row["call_id"] for row in figures["tables"]["escalated"]] == ["d2/very-escalating", "d1/escalating"]
    timelines = pd.DataFrame(figures["tables"]["timelines"])
    assert set(timelines["call_id"]) == {"d2/very-escalating", "d1/escalating"}
    assert set(timelines["speaker_role"]) == {"agent", "customer"}
    assert timelines[["valence", "arousal"]].notna().all().all()
    assert set(figures["sql"]) >= {"view calls", "view segments", *figures["tables"]}
    con = duckdb.connect()  # the SQL given reproduces the table
    for statement in (figures["sql"]["view calls"], figures["sql"]["view segments"]):
        con.execute(statement)
    rerun = con.sql(figures["sql"]["queues"]).df()
    assert json.loads(rerun.to_json(orient="records")) == figures["tables"]["queues"]
