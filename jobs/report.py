"""``ser report``: what analysts and supervisors see, through DuckDB over the Parquet reports of ``ser score``.

The queries here are plain SQL over three views, ``calls``, ``segments`` and ``turns`` (see :func:`view_sql`), which
the README, ``--json`` and the HTML page give with every table so that anyone can rerun them in DuckDB. The views
cover a window of dates (``--since``/``--until``, by default the last 7 dates present; ``--date``: one date).

Slices (``--by agent|queue|team``) and the trend per day give the same figures (:data:`FIGURES`). Categories
(``--categories FILE.yaml``) are named SQL conditions over ``calls``, each evaluated in DuckDB. A call's ``queue``
is stored by ``ser score``: the ``--metadata`` queue, else the folder holding the recording.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

import click
import duckdb
import pandas as pd
import yaml

from jobs import options
from ser_core import storage
from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS
from ser_core.text import shown

DEFAULT_DAYS = 7
TABLES = ("calls", "segments", "turns")
SLICES = {"agent": "agent_id", "queue": "queue", "team": "team"}
"""``--by`` values and the ``calls`` column each slices on."""

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

NEGATIVE_SHARE = " + ".join(f"customer_share_{e}" for e in EMOTIONS if e in NEGATIVE_EMOTIONS)
FIGURES = f"""count(*) AS calls,
       round(sum(duration_s) / 3600, 3) AS hours,
       round(count(*) FILTER (status = 'ok') / count(*), 3) AS share_scored,
       round(sum(customer_segments * ({NEGATIVE_SHARE})) / nullif(sum(customer_segments), 0), 3) AS customer_negative_share,
       count(*) FILTER (escalated) AS escalations,
       round(avg(customer_sentiment_end - customer_sentiment_start), 3) AS customer_sentiment_change,
       round(sum(non_talk_s) / nullif(sum(duration_s) FILTER (status = 'ok'), 0), 3) AS non_talk_share,
       round(sum(coalesce(agent_interruptions, 0) + coalesce(customer_interruptions, 0))
             / nullif(sum(duration_s) FILTER (status = 'ok') / 3600, 0), 1) AS interruptions_per_hour"""
"""The figures of a slice and of a day of the trend, over the ``calls`` view."""

QUERIES["trend"] = f"""
SELECT CAST(date AS VARCHAR) AS date, {FIGURES}
FROM calls GROUP BY ALL ORDER BY date"""
QUERIES["slices"] = f"""
SELECT coalesce({{column}}, '(none)') AS {{by}}, {FIGURES}
FROM calls GROUP BY ALL ORDER BY calls DESC, {{by}}"""

CATEGORY_QUERIES = {
    "categories": """
SELECT category, coalesce(c.{column}, '(none)') AS {by}, count(*) AS calls
FROM call_categories JOIN calls c USING (call_id) GROUP BY ALL ORDER BY category, calls DESC, {by}""",
    "category_calls": """
SELECT category, call_id, CAST(c.date AS VARCHAR) AS date, c.queue, c.agent_id, round(c.duration_s / 60, 1) AS minutes
FROM call_categories JOIN calls c USING (call_id) ORDER BY category, date, call_id""",
}

TITLES = {
    "counts": "Calls per date",
    "queues": "Calls and hours per date and queue",
    "errors": "Failures by reason",
    "emotions": "Emotions per speaker role (% of scored segments)",
    "emotions_by_date": "Emotion mix per speaker role and date (% of that day's scored segments)",
    "escalated": "Most escalated calls, worst first (customer negative share, first vs last third)",
    "timelines": "Valence and arousal over each escalated call, per window",
    "trend": "Trend per day",
    "slices": "Per {by}",
    "categories": "Categories per {by} (calls matching each rule)",
    "category_calls": "Calls in each category",
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


def _source(reports: str, table: str) -> str:
    return sql_literal(parquet_pattern(reports, table))


def view_sql(reports: str, since: str, until: str, tables: tuple[str, ...] = TABLES) -> dict[str, str]:
    """``CREATE VIEW`` statements for ``tables`` over ``reports``, dates ``since``..``until``."""
    window = f"date BETWEEN DATE {sql_literal(since)} AND DATE {sql_literal(until)}"
    return {table: f"CREATE VIEW {table} AS SELECT * FROM read_parquet({_source(reports, table)}, hive_partitioning = true, "
                   f"union_by_name = true) WHERE {window}" for table in tables}


def _present(pattern: str) -> bool:
    fs, path = storage.filesystem(pattern)
    fs.invalidate_cache()
    return bool(fs.glob(path))


def connect(reports: str, date: str | None = None, since: str | None = None,
            until: str | None = None) -> tuple[duckdb.DuckDBPyConnection, str, str, tuple[str, ...]]:
    """DuckDB with the views over ``reports`` (a folder or ``s3://`` prefix) for one ``date`` or ``since``..``until``
    (open ends: up to the last date present, from :data:`DEFAULT_DAYS` dates before); returns it, the window and the
    views made (``turns`` only where reports of schema version 2 or later wrote it).

    S3 is read through s3fs registered with DuckDB, so it needs no DuckDB extension and honours the usual AWS
    environment (``AWS_ENDPOINT_URL``, credentials).
    """
    con = duckdb.connect()
    if storage.is_remote(reports):
        con.register_filesystem(storage.filesystem(reports)[0])
    if not _present(parquet_pattern(reports, "calls", date)):
        raise FileNotFoundError(f"no calls reports in {storage.join(reports, 'calls')}{f' for date {date}' if date else ''}")
    if not _present(parquet_pattern(reports, "segments")):
        raise FileNotFoundError(f"no segments reports under {reports}")
    tables = tuple(t for t in TABLES if t != "turns" or _present(parquet_pattern(reports, t)))
    if date:
        since = until = date
    else:
        dates = [d for (d,) in con.execute(
            f"SELECT DISTINCT CAST(date AS VARCHAR) FROM read_parquet({_source(reports, 'calls')}, hive_partitioning = true) "
            "WHERE date <= coalesce(CAST(? AS DATE), date) ORDER BY 1 DESC", [until]).fetchall()]
        if not dates:
            raise FileNotFoundError(f"no calls reports up to {until} under {reports}")
        until = until or dates[0]
        since = since or dates[min(DEFAULT_DAYS, len(dates)) - 1]
    for statement in view_sql(reports, since, until, tables).values():
        con.execute(statement)
    return con, since, until, tables


class CategoryError(click.UsageError):
    """A category rule that is not a usable SQL condition over ``calls``."""


def read_categories(path: Path) -> dict[str, str]:
    """``name -> SQL condition`` from a YAML mapping; :class:`CategoryError` when it is not one."""
    try:
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise CategoryError(f"cannot read categories {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(rules, dict) or not rules:
        raise CategoryError(f"categories {path}: expected a mapping of name: SQL condition over calls")
    for name, rule in rules.items():
        if not isinstance(rule, (str, bool, int, float)) or not str(rule).strip():
            raise CategoryError(f"category {name!r}: its rule must be one SQL condition over calls")
    return {str(name): str(rule) for name, rule in rules.items()}


def category_sql(rule: str) -> str:
    """The query of the calls a rule selects."""
    return f"SELECT call_id FROM calls WHERE ({rule})"


def evaluate_categories(con: duckdb.DuckDBPyConnection, rules: dict[str, str]) -> None:
    """Table ``call_categories(category, call_id)`` from each rule evaluated over ``calls``; a rule that does not parse
    as one condition or does not run is a one-line :class:`CategoryError` naming it."""
    con.execute("CREATE TEMP TABLE call_categories (category VARCHAR, call_id VARCHAR)")
    for name, rule in rules.items():
        try:
            if len(con.extract_statements(category_sql(rule))) != 1:
                raise duckdb.ParserException("not one condition: it holds more than one statement")
            con.execute(f"INSERT INTO call_categories SELECT ?, call_id FROM ({category_sql(rule)})", [name])
        except duckdb.Error as err:
            raise CategoryError(f"category {name!r} ({rule}): {str(err).strip().splitlines()[0]}") from None


@dataclass
class Report:
    """The tables of ``ser report`` (one per query run) and the SQL that made each."""

    reports: str
    since: str
    until: str
    by: str
    tables: dict[str, pd.DataFrame]
    sql: dict[str, str] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """Calls, scored and failed over the whole selection."""
        return {k: int(self.tables["counts"][k].sum()) for k in ("calls", "scored", "failed")}

    def title(self, name: str) -> str:
        return TITLES[name].format(by=self.by)


def build_report(reports: str, date: str | None = None, top: int = 10, by: str = "agent", since: str | None = None,
                 until: str | None = None, categories: dict[str, str] | None = None) -> Report:
    """Run every query of :data:`QUERIES` (and the ``categories``) over ``reports`` for the date window."""
    con, since, until, tables = connect(reports, date, since, until)
    queries = dict(QUERIES)
    if categories:
        evaluate_categories(con, categories)
        queries.update(CATEGORY_QUERIES)
    sql = {name: query.strip().replace("{top}", str(int(top))).replace("{column}", SLICES[by]).replace("{by}", by)
           for name, query in queries.items()}
    views = {f"view {k}": v for k, v in view_sql(reports, since, until, tables).items()}
    tables = {name: con.sql(statement).to_arrow_table().to_pandas() for name, statement in sql.items()}
    rules = {f"category {name}": category_sql(rule) for name, rule in (categories or {}).items()}
    return Report(reports, since, until, by, tables, {**views, **sql, **rules})


def report_json(report: Report) -> dict:
    """Every figure of the report as plain JSON: totals, one list of rows per table, and the SQL of each."""
    return {
        "reports": report.reports,
        "since": report.since,
        "until": report.until,
        "by": report.by,
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
    """``REPORTS (SINCE..UNTIL): N calls, N scored, N failed``: the report in one line."""
    totals = report.totals()
    days = report.since if report.since == report.until else f"{report.since}..{report.until}"
    return shown(f"{report.reports} ({days}): {totals['calls']} calls, {totals['scored']} scored, {totals['failed']} failed")


PRINTED = ("counts", "queues", "errors", "emotions", "escalated", "trend", "slices", "categories")


@click.command("report")
@click.option("--reports", required=True, metavar="DIR_OR_S3",
              help="The --out of ser score: a folder or s3:// prefix (a path, not a pattern: * ? [ are plain characters).")
@options.date("Only this date partition [default: the --since..--until window].")
@click.option("--since", callback=options.parse_date, default=None, metavar="YYYY-MM-DD",
              help=f"First date [default: the last {DEFAULT_DAYS} dates present].")
@click.option("--until", callback=options.parse_date, default=None, metavar="YYYY-MM-DD",
              help="Last date [default: the last date present].")
@click.option("--by", type=click.Choice(list(SLICES)), default="agent", show_default=True,
              help="Slice the figures per agent, queue or team.")
@click.option("--categories", "categories_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE.yaml", help="Named rules (name: SQL condition over the calls view), counted per slice.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="How many of the most escalated calls to list.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              metavar="PAGE", help="Also write the report as one self-contained HTML page (charts inline, no external URL).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object instead of tables.")
def cli(reports, date, since, until, by, categories_path, top, html_path, as_json) -> None:
    """Summarise scored calls: counts, failures, emotions, escalations, slices and trend per day, categories."""
    if date and (since or until):
        raise click.UsageError("--date is one date: give it or --since/--until, not both")
    categories = read_categories(categories_path) if categories_path else None
    report = build_report(reports, date, top, by, since, until, categories)
    if html_path is not None:
        from jobs.report_html import render_page

        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_page(report), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report_json(report), indent=1))
        return
    for name in PRINTED:
        if name in report.tables:
            click.echo(f"{report.title(name)}\n{_table(report.tables[name])}\n")
    click.echo(summary_line(report) + f"; {len(report.tables['escalated'])} escalated calls listed")
    if html_path is not None:
        click.echo(shown(f"HTML report: {html_path} (one self-contained page; open it in a browser)"))
