"""What supervisors and analysts ask of the reports, end to end on a generated archive with known truth.

``ser make-archive`` (synthetic voices, the call channel's defaults: turn levels ±15 dB, noise floors -60 to
-40 dBFS, leak, G.711) → ``ser score --metadata`` (an untrained model: emotions mean nothing, talk and turns do)
→ ``ser report --by --categories --json``, and every reader the README names running one of its queries.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from jobs.cli import main
from ser_core.audio.vad import VadConfig, frame_levels_db, noise_floor
from ser_core.frontends.features import FeatureSpec
from ser_core.reports.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY
from ser_core.scoring import call_metrics
from tests.integration.test_score import make_bundle

DATE = "2026-11-23"
AGENTS = ("a-7", "a-8")
SPEC = FeatureSpec()
FRAME_S = SPEC.hop_length / SPEC.sample_rate
README_QUERY_1 = """SELECT date, status, coalesce(error, '') AS error, count(*) AS calls, round(sum(duration_s) / 3600, 1) AS hours
FROM read_parquet('{reports}/calls/*/*.parquet', hive_partitioning = true)
GROUP BY ALL ORDER BY date, status, calls DESC"""


@pytest.fixture(scope="module")
def scored(tmp_path_factory, local_ray) -> dict:
    """An 8-call archive scored with a metadata file that misses one recording and names one that does not exist."""
    root = tmp_path_factory.mktemp("call-reports")
    made = CliRunner().invoke(main, ["make-archive", "--out", str(root / "archive"), "--calls", "8", "--customer-turns", "4",
                                     "--date", DATE, "--seed", "3"])
    assert made.exit_code == 0, made.output
    truth = pd.read_parquet(root / "archive" / "ground_truth.parquet")
    call_ids = sorted(truth["call_id"].unique())
    metadata = pd.DataFrame({"path": [f"{c}.wav" for c in call_ids[1:]] + ["2026-11-23/queue-9/gone.wav"],
                             "agent_id": [AGENTS[i % 2] for i in range(len(call_ids))],
                             "team": ["north"] * len(call_ids), "direction": ["inbound"] * len(call_ids),
                             "started_at": ["2026-11-23T09:00:00+01:00"] * len(call_ids),
                             "language": ["en"] * len(call_ids)})
    metadata.to_csv(root / "contacts.csv", index=False)
    bundle = make_bundle(root / "model", seed=1)
    out = root / "reports"
    result = CliRunner().invoke(main, ["score", "--archive", str(root / "archive" / "audio"), "--out", str(out), "--model",
                                       str(bundle), "--date", DATE, "--actors", "1", "--no-progress", "--metadata",
                                       str(root / "contacts.csv")])
    assert result.exit_code == 0, result.output
    return {"out": out, "truth": truth, "call_ids": call_ids, "output": result.output, "archive": root / "archive"}


def below_start(archive: Path, call_id: str, turns: pd.DataFrame) -> bool:
    """Whether a turn of ``turns`` never rises ``start_db`` above its line's noise floor (90th percentile of its frame
    levels): a turn the VAD cannot start on, so its talk is missed (the known limit, measured in bench/talk_time.py)."""
    samples, _ = sf.read(archive / "audio" / f"{call_id}.wav", dtype="float32", always_2d=True)
    levels = frame_levels_db(samples.T, SPEC)
    floor = noise_floor(levels, VadConfig(), FRAME_S).min(axis=1)
    return any(np.percentile(levels[t.channel, int(t.start_s / FRAME_S) : int(t.end_s / FRAME_S)], 90)
               < floor[t.channel] + VadConfig().start_db for t in turns.itertuples())


def test_talk_seconds_non_talk_and_turns_match_the_frame_level_truth(scored):
    con = duckdb.connect()
    calls = con.sql(f"SELECT * FROM read_parquet('{scored['out']}/calls/*/*.parquet')").df().set_index("call_id")
    totals = {"agent_speech_s": [0.0, 0.0], "customer_speech_s": [0.0, 0.0]}
    for call_id, turns in scored["truth"].groupby("call_id"):
        row = calls.loc[call_id]
        talk = {role: turns[turns["role"] == role][["start_s", "end_s"]].to_numpy() for role in ("agent", "customer")}
        expected = call_metrics.talk_metrics(talk, row["duration_s"])
        for role in ("agent", "customer"):
            column = f"{role}_speech_s"
            totals[column][0] += row[column]
            totals[column][1] += expected[column]
            if abs(row[column] / expected[column] - 1) > 0.10:  # only where a turn is too quiet to start the VAD
                assert below_start(scored["archive"], call_id, turns[turns["role"] == role]), (call_id, column, row[column], expected)
            elif abs(row["non_talk_s"] / expected["non_talk_s"] - 1) > 0.15:
                assert below_start(scored["archive"], call_id, turns), (call_id, row["non_talk_s"], expected["non_talk_s"])
        assert row["overtalk_s"] == pytest.approx(0.0, abs=0.6)  # the generated turns never overlap
    for column, (measured, truth) in totals.items():
        assert measured == pytest.approx(truth, rel=0.05), column
    turns = con.sql(f"SELECT * FROM read_parquet('{scored['out']}/turns/*/*.parquet')").df()
    assert abs(len(turns) - len(scored["truth"])) <= 1  # one per generated turn (a quiet one may be missed)
    assert (turns.groupby("call_id")["turn"].apply(lambda t: list(t) == list(range(len(t))))).all()


def test_metadata_is_joined_and_misses_are_counted(scored):
    assert "metadata: 8 rows; 1 match no recording; 1 recordings have no row" in scored["output"]
    calls = pd.read_parquet(scored["out"] / "calls").set_index("call_id")
    first, rest = scored["call_ids"][0], scored["call_ids"][1:]
    assert calls.loc[rest, "agent_id"].notna().all() and pd.isna(calls.loc[first, "agent_id"])
    assert (calls.loc[rest, "started_at"] == pd.Timestamp("2026-11-23T08:00:00Z")).all()
    assert calls.loc[rest[0], "metadata"] == [("language", "en")]
    assert set(calls["queue"]) == {"queue-1", "queue-2"}  # no queue column in the file: the recording's folder


def test_report_by_agent_gives_one_row_per_agent_and_categories_per_slice(scored, tmp_path):
    rules = tmp_path / "categories.yaml"
    rules.write_text("long_silence: non_talk_s > 0.3 * duration_s\n"
                     "everyone's: duration_s > 0\n"  # a quote in the name: a value, never pasted into SQL
                     "escalated_and_long: escalated and duration_s > 120\n")
    printed = CliRunner().invoke(main, ["report", "--reports", str(scored["out"]), "--by", "agent", "--categories", str(rules),
                                        "--json"])
    assert printed.exit_code == 0, printed.output
    figures = json.loads(printed.output)
    agents = {row["agent"]: row for row in figures["tables"]["slices"]}
    assert set(agents) == {*AGENTS, "(none)"}
    assert sum(row["calls"] for row in agents.values()) == 8
    for row in agents.values():
        assert set(row) >= {"hours", "share_scored", "customer_negative_share", "escalations", "customer_sentiment_change",
                            "non_talk_share", "interruptions_per_hour"}
        assert 0 < row["non_talk_share"] < 1 and row["share_scored"] == 1.0
    assert [row["date"] for row in figures["tables"]["trend"]] == [DATE]
    counted = {(row["category"], row["agent"]): row["calls"] for row in figures["tables"]["categories"]}
    assert sum(v for (name, _), v in counted.items() if name == "everyone's") == 8
    listed = pd.DataFrame(figures["tables"]["category_calls"])
    con = duckdb.connect()
    for statement in (figures["sql"]["view calls"],):
        con.execute(statement)
    silent = {c for (c,) in con.execute(figures["sql"]["category long_silence"]).fetchall()}
    assert set(listed[listed["category"] == "long_silence"]["call_id"]) == silent


def test_a_rule_that_does_not_parse_is_one_line_naming_it(scored, tmp_path):
    rules = tmp_path / "bad.yaml"
    rules.write_text("fine: duration_s > 0\nbroken: non_talk_s >> > 3\n")
    result = CliRunner().invoke(main, ["report", "--reports", str(scored["out"]), "--categories", str(rules)])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "'broken'" in error[0]
    injected = tmp_path / "injected.yaml"
    injected.write_text("sneaky: 1 = 1); DROP VIEW calls; SELECT (1\n")
    refused = CliRunner().invoke(main, ["report", "--reports", str(scored["out"]), "--categories", str(injected)])
    assert refused.exit_code == 2 and "'sneaky'" in refused.output


def test_the_html_page_has_the_trend_and_a_sortable_agent_table(scored, tmp_path):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", "--reports", str(scored["out"]), "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "<h2>Trend per day</h2>" in text and 'alt="trend per day"' in text
    assert "<h2>Per agent</h2>" in text and 'class="dataframe sortable"' in text and "a-7" in text


# ------------------------------------------------------------------------ every reader the README names


def expected_query_1(scored) -> list[tuple]:
    calls = pd.read_parquet(scored["out"] / "calls")
    return [(DATE, "ok", "", len(calls), round(calls["duration_s"].sum() / 3600, 1))]


def test_tables_carry_the_schema_version(scored):
    for table in ("calls", "segments", "turns"):
        for part in (scored["out"] / table).rglob("*.parquet"):
            assert pq.read_schema(part).metadata[SCHEMA_VERSION_KEY.encode()] == SCHEMA_VERSION.encode()


def test_duckdb_runs_the_readme_query(scored):
    got = duckdb.connect().sql(README_QUERY_1.format(reports=scored["out"])).fetchall()
    assert [(str(d), s, e, n, h) for d, s, e, n, h in got] == expected_query_1(scored)


def test_pandas_reads_the_calls(scored):
    calls = pd.read_parquet(scored["out"] / "calls")  # as the README says: pd.read_parquet('reports/calls')
    got = calls.assign(date=calls["date"].astype(str), error=calls["error"].fillna("")).groupby(
        ["date", "status", "error"]).agg(calls=("call_id", "size"), hours=("duration_s", "sum")).reset_index()
    assert [(r.date, r.status, r.error, r.calls, round(r.hours / 3600, 1)) for r in got.itertuples()] == expected_query_1(scored)


def test_ray_data_reads_the_calls(scored):
    import ray

    calls = ray.data.read_parquet(str(scored["out"] / "calls")).to_pandas()
    assert set(calls["date"].astype(str)) == {DATE}
    got = [(DATE, "ok", "", len(calls), round(calls["duration_s"].sum() / 3600, 1))]
    assert got == expected_query_1(scored) and set(calls["status"]) == {"ok"}


def test_spark_reads_the_calls_with_their_date_partition(scored):
    assert shutil.which("java"), "Spark needs a Java runtime: make test installs Debian's openjdk-17-jre-headless"
    from pyspark.sql import SparkSession  # pyspark is in the test extra

    spark = (SparkSession.builder.master("local[1]").appName("ser-readers").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        spark.read.parquet(str(scored["out"] / "calls")).createOrReplaceTempView("calls")
        got = spark.sql("""SELECT CAST(date AS STRING) AS date, status, coalesce(error, '') AS error, count(*) AS calls,
                                  round(sum(duration_s) / 3600, 1) AS hours
                           FROM calls GROUP BY 1, 2, 3 ORDER BY date, status, calls DESC""").collect()
    finally:
        spark.stop()
    assert [tuple(row) for row in got] == expected_query_1(scored)
