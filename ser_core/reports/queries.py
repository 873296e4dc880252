"""What ``ser report`` shows analysts and supervisors, through DuckDB over the report store of ``ser score``.

The queries here are plain SQL over three views, ``calls``, ``segments`` and ``turns`` (see :func:`view_sql`), which
the README, ``--json`` and the HTML page give with every table so that anyone can rerun them in DuckDB. The views
cover a window of dates (``--since``/``--until``, by default the last 7 dates present; ``--date``: one date).
``ser report`` fills them from the committed parts of one state of the store, each call once (:func:`connect`).

Slices (``--by agent|queue|team``) and the trend per day give the same figures (:data:`FIGURES`). Categories
(``--categories FILE.yaml``) are named SQL conditions over ``calls``, each evaluated in DuckDB. A call's ``queue``
is stored by ``ser score``: the ``--metadata`` queue, else the folder holding the recording.
"""

from __future__ import annotations

import glob
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import yaml

from ser_core import storage
from ser_core.errors import Refused, SerError
from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS
from ser_core.reports.store import committed_files
from ser_core.text import shown

DEFAULT_DAYS = 7
SNAPSHOT_TRIES = 20
"""Reads of the store before :func:`connect` gives up on a store that changes under every one."""
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


def _window(since: str, until: str) -> str:
    return f"date BETWEEN DATE {sql_literal(since)} AND DATE {sql_literal(until)}"


def view_sql(reports: str, since: str, until: str, tables: tuple[str, ...] = TABLES) -> dict[str, str]:
    """``CREATE VIEW`` statements for ``tables`` over ``reports``, dates ``since``..``until``: what anyone can run in
    DuckDB over a store at rest (``ser report`` itself reads a snapshot of the committed parts, see :func:`connect`)."""
    return {table: f"CREATE VIEW {table} AS SELECT * FROM read_parquet({_source(reports, table)}, hive_partitioning = true, "
                   f"union_by_name = true) WHERE {_window(since, until)}" for table in tables}


def _date(part: str) -> str:
    """The date of a ``date=YYYY-MM-DD/part-....parquet`` name."""
    return part.split("/")[0].removeprefix("date=")


def report_window(reports: str, files: dict[str, dict[str, str]], date: str | None, since: str | None,
                  until: str | None) -> tuple[str, str, tuple[str, ...]]:
    """The dates ``since``..``until`` to report on (see :func:`connect`) and the tables that have committed parts."""
    dates = sorted({_date(part) for part in files["calls"]}, reverse=True)
    if (date not in dates) if date else not dates:
        raise FileNotFoundError(f"no calls reports in {storage.join(reports, 'calls')}{f' for date {date}' if date else ''}")
    if not files["segments"]:
        raise FileNotFoundError(f"no segments reports under {reports}")
    tables = tuple(t for t in TABLES if files[t])
    if date:
        return date, date, tables
    dates = [d for d in dates if until is None or d <= until]
    if not dates:
        raise FileNotFoundError(f"no calls reports up to {until} under {reports}")
    return since or dates[min(DEFAULT_DAYS, len(dates)) - 1], until or dates[0], tables


PART = r"regexp_extract(filename, '[^/]+/[^/]+$') AS _part"
"""A row's part: the ``date=.../part-....parquet`` end of the file it was read from."""


def _read_snapshot(con: duckdb.DuckDBPyConnection, reports: str, files: dict[str, dict[str, str]], since: str, until: str,
                   tables: tuple[str, ...]) -> None:
    """Temporary tables ``_latest`` (the part of each input's latest calls row, over every date) and ``_<table>`` (the
    rows of ``since``..``until`` of the parts in ``files``, with their part)."""
    def sources(table: str, names: list[str]) -> str:
        return "[" + ", ".join(sql_literal(glob.escape(storage.join(reports, table, name))) for name in names) + "]"

    con.execute(f"CREATE TEMP TABLE _latest AS SELECT {PART}, call_id FROM read_parquet({sources('calls', sorted(files['calls']))}, "
                "filename = true, union_by_name = true) "
                "QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY scored_at DESC, run_id DESC) = 1")
    for table in tables:
        names = sorted(files[table])
        chosen = [name for name in names if since <= _date(name) <= until] or names[:1]  # one part: the columns
        con.execute(f"CREATE TEMP TABLE _{table} AS SELECT *, {PART} FROM read_parquet({sources(table, chosen)}, "
                    f"hive_partitioning = true, union_by_name = true, filename = true) WHERE {_window(since, until)}")


def connect(reports: str, date: str | None = None, since: str | None = None,
            until: str | None = None) -> tuple[duckdb.DuckDBPyConnection, str, str, tuple[str, ...]]:
    """DuckDB with the tables ``calls``, ``segments`` and ``turns`` of ``reports`` (a folder or ``s3://`` prefix) for one
    ``date`` or ``since``..``until`` (open ends: up to the last date present, from :data:`DEFAULT_DAYS` dates before);
    returns it, the window and the tables made (``turns`` only where reports of schema version 2 or later wrote it).

    They hold what :func:`view_sql` gives over a store at rest, read from one state of the store through its index
    (:func:`~ser_core.reports.store.committed_files`): committed parts only, each input once (its latest calls row
    and the detail rows of that row's part), even while ``ser score --force`` replaces parts; a read that met a
    change is read again. S3 is read through s3fs registered with DuckDB, so it needs no DuckDB extension and honours
    the usual AWS environment (``AWS_ENDPOINT_URL``, credentials).
    """
    for attempt in range(SNAPSHOT_TRIES):
        files = committed_files(reports)
        since_, until_, tables = report_window(reports, files, date, since, until)
        con = duckdb.connect()
        if storage.is_remote(reports):
            con.register_filesystem(storage.filesystem(reports)[0])
        try:
            _read_snapshot(con, reports, files, since_, until_, tables)
        except (duckdb.IOException, FileNotFoundError):
            pass  # a part replaced or removed while it was read
        else:
            if committed_files(reports) == files:
                for table in tables:
                    con.execute(f"CREATE TEMP TABLE {table} AS SELECT * EXCLUDE (filename, _part) FROM _{table} "
                                "SEMI JOIN _latest USING (_part, call_id)")
                    con.execute(f"DROP TABLE _{table}")
                return con, since_, until_, tables
        con.close()
        time.sleep(0.05 * attempt)
    raise Refused(f"{reports} changed during each of {SNAPSHOT_TRIES} reads (parts being replaced); run ser report again")


class CategoryError(SerError, ValueError):
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


def summary_line(report: Report) -> str:
    """``REPORTS (SINCE..UNTIL): N calls, N scored, N failed``: the report in one line."""
    totals = report.totals()
    days = report.since if report.since == report.until else f"{report.since}..{report.until}"
    return shown(f"{report.reports} ({days}): {totals['calls']} calls, {totals['scored']} scored, {totals['failed']} failed")
