"""``ser report``: what analysts and supervisors see, through DuckDB over the Parquet reports of ``ser score``.

The queries here are plain SQL over two views, ``calls`` and ``segments`` (see :func:`view_sql`), which the
README, ``--json`` and the HTML page give with every table so that anyone can rerun them in DuckDB.

The queue of a call is the name of the folder that holds its recording (``audio/<date>/<queue>/<call>.wav`` as
``ser make-archive`` lays an archive out): the last folder of ``source_uri`` (of ``call_id`` when there is no
``source_uri``), or ``(none)`` when that folder is a day folder (``YYYY-MM-DD``) or the file has no folder. Only
``/`` separates folders: a backslash is part of a name.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

import click
import duckdb
import pandas as pd

from jobs import options
from ser_core import storage
from ser_core.labels import EMOTIONS
from ser_core.text import shown

QUEUE = r"""coalesce(nullif(regexp_extract(coalesce(source_uri, call_id), '([^/]+)/[^/]+$', 1), ''), '(none)')"""
QUEUE_COLUMN = rf"""CASE WHEN regexp_matches({QUEUE}, '^\d{{4}}-\d{{2}}-\d{{2}}$') THEN '(none)' ELSE {QUEUE} END AS queue"""

EMOTION_LIST = ", ".join(f"'{e}'" for e in EMOTIONS)

QUERIES: dict[str, str] = {
    "counts": """
SELECT CAST(date AS VARCHAR) AS date,
       count(*) AS calls,
       count(*) FILTER (status = 'ok') AS scored,
       count(*) FILTER (status = 'error') AS failed,
       round(sum(duration_s) / 3600, 2) AS audio_hours
FROM calls GROUP BY ALL ORDER BY date""",
    "queues": """
SELECT CAST(date AS VARCHAR) AS date, queue,
       count(*) AS calls,
       count(*) FILTER (status = 'error') AS failed,
       round(sum(duration_s) / 3600, 2) AS audio_hours
FROM calls GROUP BY ALL ORDER BY date, queue""",
    "errors": """
SELECT error, count(*) AS calls FROM calls WHERE status = 'error' GROUP BY ALL ORDER BY calls DESC, error LIMIT 10""",
    "emotions": """
PIVOT (SELECT speaker_role, emotion, round(count(*) * 100.0 / sum(count(*)) OVER (PARTITION BY speaker_role), 1) AS pct
       FROM segments GROUP BY speaker_role, emotion)
ON emotion IN ({emotions}) USING coalesce(first(pct), 0) GROUP BY speaker_role ORDER BY speaker_role""".format(
        emotions=EMOTION_LIST),
    "emotions_by_date": """
PIVOT (SELECT CAST(date AS VARCHAR) AS date, speaker_role, emotion,
              round(count(*) * 100.0 / sum(count(*)) OVER (PARTITION BY date, speaker_role), 1) AS pct
       FROM segments GROUP BY date, speaker_role, emotion)
ON emotion IN ({emotions}) USING coalesce(first(pct), 0) GROUP BY date, speaker_role ORDER BY date, speaker_role""".format(
        emotions=EMOTION_LIST),
    "escalated": """
SELECT call_id, CAST(date AS VARCHAR) AS date, queue,
       round(customer_negative_first, 2) AS negative_first, round(customer_negative_last, 2) AS negative_last,
       customer_dominant_emotion, round(duration_s / 60, 1) AS minutes
FROM calls WHERE escalated ORDER BY customer_escalation DESC, call_id LIMIT {top}""",
    "timelines": """
SELECT call_id, speaker_role, start_s, valence, arousal, emotion
FROM segments WHERE call_id IN (SELECT call_id FROM calls WHERE escalated ORDER BY customer_escalation DESC, call_id LIMIT {top})
ORDER BY call_id, speaker_role, start_s""",
}

TITLES = {
    "counts": "Calls per date",
    "queues": "Calls and hours per date and queue",
    "errors": "Failures by reason",
    "emotions": "Emotions per speaker role (% of scored segments)",
    "emotions_by_date": "Emotion mix per speaker role and date (% of that day's scored segments)",
    "escalated": "Most escalated calls, worst first (customer negative share, first vs last third)",
    "timelines": "Valence and arousal over each escalated call, per window",
}


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal (single quotes doubled), safe to paste into a statement."""
    return "'" + text.replace("'", "''") + "'"


def parquet_pattern(reports: str, table: str, date: str | None = None) -> str:
    """The glob of ``table``'s Parquet files under ``reports``, one date or all; ``reports`` and ``date`` are taken
    literally (their ``*``, ``?`` and ``[`` escaped as ``[*]``, ``[?]``, ``[[]``, which DuckDB and fsspec both
    read), only the partition and file names are patterns."""
    partition = f"date={glob.escape(date)}" if date else "date=*"
    return storage.join(glob.escape(reports), table, partition, "*.parquet")


def view_sql(reports: str, date: str | None = None) -> dict[str, str]:
    """``CREATE VIEW`` statements for ``calls`` (with its ``queue``) and ``segments`` over ``reports``, one date or all."""
    source = {table: sql_literal(parquet_pattern(reports, table, date)) for table in ("calls", "segments")}
    return {
        "calls": f"CREATE VIEW calls AS SELECT *, {QUEUE_COLUMN} FROM read_parquet({source['calls']}, hive_partitioning = true)",
        "segments": f"CREATE VIEW segments AS SELECT * FROM read_parquet({source['segments']}, hive_partitioning = true)",
    }


def connect(reports: str, date: str | None = None) -> duckdb.DuckDBPyConnection:
    """DuckDB with views ``calls`` and ``segments`` over ``reports`` (a folder or ``s3://`` prefix), one date or all.

    S3 is read through s3fs registered with DuckDB, so it needs no DuckDB extension and honours the usual AWS
    environment (``AWS_ENDPOINT_URL``, credentials).
    """
    con = duckdb.connect()
    if storage.is_remote(reports):
        fs, _ = storage.filesystem(reports)
        con.register_filesystem(fs)
    for table, statement in view_sql(reports, date).items():
        fs, path = storage.filesystem(parquet_pattern(reports, table, date))
        fs.invalidate_cache()
        if not fs.glob(path):
            raise FileNotFoundError(f"no {table} reports in {storage.join(reports, table)}{f' for date {date}' if date else ''}")
        con.execute(statement)
    return con


@dataclass
class Report:
    """The tables of ``ser report`` (one per entry of :data:`QUERIES`) and the SQL that made each."""

    reports: str
    date: str | None
    tables: dict[str, pd.DataFrame]
    sql: dict[str, str] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """Calls, scored and failed over the whole selection."""
        return {k: int(self.tables["counts"][k].sum()) for k in ("calls", "scored", "failed")}


def build_report(reports: str, date: str | None = None, top: int = 10) -> Report:
    """Run every query of :data:`QUERIES` over ``reports`` (``top`` escalated calls)."""
    con = connect(reports, date)
    sql = {name: query.strip().replace("{top}", str(int(top))) for name, query in QUERIES.items()}
    tables = {name: con.sql(statement).to_arrow_table().to_pandas() for name, statement in sql.items()}
    return Report(reports, date, tables, {**{f"view {k}": v for k, v in view_sql(reports, date).items()}, **sql})


def report_json(report: Report) -> dict:
    """Every figure of the report as plain JSON: totals, one list of rows per table, and the SQL of each."""
    return {
        "reports": report.reports,
        "date": report.date,
        "totals": report.totals(),
        "tables": {name: json.loads(frame.to_json(orient="records")) for name, frame in report.tables.items()},
        "sql": report.sql,
    }


def shown_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell :func:`~ser_core.text.shown` (control characters escaped)."""
    return frame.map(lambda value: shown(value) if isinstance(value, str) else value)


def _table(frame: pd.DataFrame) -> str:
    return shown_frame(frame).to_string(index=False, na_rep="-") if len(frame) else "  (none)"


def summary_line(report: Report) -> str:
    """``REPORTS (date=...): N calls, N scored, N failed``: the report in one line."""
    totals = report.totals()
    where = f"{report.reports}{f' (date={report.date})' if report.date else ''}"
    return shown(f"{where}: {totals['calls']} calls, {totals['scored']} scored, {totals['failed']} failed")


PRINTED = ("counts", "queues", "errors", "emotions", "escalated")


@click.command("report")
@click.option("--reports", required=True, metavar="DIR_OR_S3",
              help="The --out of ser score: a folder or s3:// prefix (a path, not a pattern: * ? [ are plain characters).")
@options.date("Only this date partition [default: all].")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="How many of the most escalated calls to list.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              metavar="PAGE", help="Also write the report as one self-contained HTML page (charts inline, no external URL).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object instead of tables.")
def cli(reports, date, top, html_path, as_json) -> None:
    """Summarise scored calls: counts per date and queue, failures, emotions per speaker role, most escalated calls."""
    report = build_report(reports, date, top)
    if html_path is not None:
        from jobs.report_html import render_page

        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_page(report), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report_json(report), indent=1))
        return
    for name in PRINTED:
        click.echo(f"{TITLES[name]}\n{_table(report.tables[name])}\n")
    click.echo(summary_line(report) + f"; {len(report.tables['escalated'])} escalated calls listed")
    if html_path is not None:
        click.echo(shown(f"HTML report: {html_path} (one self-contained page; open it in a browser)"))
