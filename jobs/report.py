"""``ser report``: what analysts see first, through DuckDB over the Parquet reports of ``ser score``.

The queries here are plain SQL over two views, ``calls`` and ``segments`` (see :func:`connect`), the same ones
the README gives analysts to paste.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
import duckdb
import pandas as pd

from jobs.score import parse_date_option
from ser_core import storage
from ser_core.labels import EMOTIONS

CALL_COUNTS = """
SELECT CAST(date AS VARCHAR) AS date,
       count(*) AS calls,
       count(*) FILTER (status = 'ok') AS scored,
       count(*) FILTER (status = 'error') AS failed,
       round(sum(duration_s) / 3600, 2) AS audio_hours
FROM calls GROUP BY ALL ORDER BY date
"""

ERROR_REASONS = """
SELECT error, count(*) AS calls FROM calls WHERE status = 'error' GROUP BY ALL ORDER BY calls DESC, error LIMIT 10
"""

EMOTIONS_BY_ROLE = """
PIVOT (SELECT speaker_role, emotion, round(count(*) * 100.0 / sum(count(*)) OVER (PARTITION BY speaker_role), 1) AS pct
       FROM segments GROUP BY speaker_role, emotion)
ON emotion IN ({emotions}) USING coalesce(first(pct), 0) GROUP BY speaker_role ORDER BY speaker_role
""".format(emotions=", ".join(f"'{e}'" for e in EMOTIONS))

MOST_ESCALATED = """
SELECT call_id, round(customer_negative_first, 2) AS negative_first, round(customer_negative_last, 2) AS negative_last,
       customer_dominant_emotion, round(duration_s / 60, 1) AS minutes
FROM calls WHERE escalated ORDER BY customer_escalation DESC, call_id LIMIT {top}
"""


def connect(reports: str, date: str | None = None) -> duckdb.DuckDBPyConnection:
    """DuckDB with views ``calls`` and ``segments`` over ``reports`` (a folder or ``s3://`` prefix), one date or all.

    S3 is read through s3fs registered with DuckDB, so it needs no DuckDB extension and honours the usual AWS
    environment (``AWS_ENDPOINT_URL``, credentials).
    """
    con = duckdb.connect()
    if storage.is_remote(reports):
        fs, _ = storage.filesystem(reports)
        con.register_filesystem(fs)
    partition = f"date={date}" if date else "date=*"
    for table in ("calls", "segments"):
        pattern = storage.join(reports, table, partition, "*.parquet")
        fs, path = storage.filesystem(pattern)
        fs.invalidate_cache()
        if not fs.glob(path):
            raise FileNotFoundError(f"no {table} reports matching {pattern}")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)")
    return con


@dataclass
class Report:
    """The tables ``ser report`` prints."""

    counts: pd.DataFrame
    errors: pd.DataFrame
    emotions: pd.DataFrame
    escalated: pd.DataFrame


def build_report(reports: str, date: str | None = None, top: int = 10) -> Report:
    """Run the report queries over ``reports``."""
    con = connect(reports, date)

    def frame(sql: str) -> pd.DataFrame:
        return con.sql(sql).to_arrow_table().to_pandas()

    return Report(frame(CALL_COUNTS), frame(ERROR_REASONS), frame(EMOTIONS_BY_ROLE), frame(MOST_ESCALATED.format(top=int(top))))


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, na_rep="-") if len(frame) else "  (none)"


@click.command("report")
@click.option("--reports", required=True, help="The --out of ser score: a folder or s3:// prefix.")
@click.option("--date", callback=parse_date_option, default=None, metavar="YYYY-MM-DD", help="Only this date partition [default: all].")
@click.option("--top", default=10, show_default=True, help="How many of the most escalated calls to list.")
def cli(reports, date, top) -> None:
    """Summarise scored calls: counts, failures, emotions per speaker role, most escalated calls."""
    try:
        report = build_report(reports, date, top)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    totals = report.counts[["calls", "scored", "failed"]].sum()
    click.echo(f"{reports}{f' (date={date})' if date else ''}: {totals['calls']} calls, {totals['scored']} scored, {totals['failed']} failed")
    click.echo("\nCalls per date\n" + _table(report.counts))
    click.echo("\nFailures by reason\n" + _table(report.errors))
    click.echo("\nEmotions per speaker role (% of scored segments)\n" + _table(report.emotions))
    click.echo("\nMost escalated calls (customer negative share, first vs last third)\n" + _table(report.escalated))
