"""``ser report``: the command over :mod:`ser_core.reports.queries` (the queries) and :mod:`ser_core.reports.page` (``--html``)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from jobs import options
from ser_core.reports.queries import (
    DEFAULT_DAYS,
    SLICES,
    CategoryError,
    build_report,
    read_categories,
    report_json,
    shown_frame,
    summary_line,
)
from ser_core.text import shown


def _table(frame: pd.DataFrame) -> str:
    return shown_frame(frame).to_string(index=False, na_rep="-") if len(frame) else "  (none)"


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
@options.refusals
def cli(reports, date, since, until, by, categories_path, top, html_path, as_json) -> None:
    """Summarise scored calls: counts, failures, emotions, escalations, slices and trend per day, categories."""
    if date and (since or until):
        raise click.UsageError("--date is one date: give it or --since/--until, not both")
    try:
        categories = read_categories(categories_path) if categories_path else None
        report = build_report(reports, date, top, by, since, until, categories)
    except CategoryError as err:
        raise click.UsageError(str(err)) from None
    if html_path is not None:
        from ser_core.reports.page import render_page

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
