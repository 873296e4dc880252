"""The ``ser report --html`` page: one self-contained HTML file for supervisors, mailable and readable offline.

Charts are drawn with matplotlib and embedded as PNG data URIs; the style sheet and the few lines of script that
sort a table by a clicked column are inline; the page references no URL at all. Every table comes with the SQL that
reproduces it over the ``calls``, ``segments`` and ``turns`` views. Names from the data are shown literally
everywhere: escaped for HTML, control characters escaped, and in charts (built and drawn under
:func:`~ser_core.training.plots.literal_text`) never parsed as math (``$x^$``) nor dropped from a legend (``_q``).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ser_core.labels import EMOTIONS
from ser_core.reports.queries import Report, shown_frame, summary_line
from ser_core.text import shown
from ser_core.training.plots import literal_text

DPI = 96
ROLE_COLOURS = {"customer": "#c0392b", "agent": "#2471a3", "mono": "#7d3c98"}
EMOTION_COLOURS = dict(zip(EMOTIONS, ("#8c8c8c", "#f1c40f", "#5dade2", "#e74c3c", "#8e44ad", "#27ae60", "#e67e22")))

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
.summary { font-size: 1.15em; background: #f4f6f7; padding: 0.6em 1em; border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; } th { background: #f4f6f7; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } details { margin: 0.3em 0 1em; } summary { cursor: pointer; color: #555; }
pre { background: #f8f8f8; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.none { color: #777; font-style: italic; }
table.sortable th { cursor: pointer; } table.sortable th::after { content: " \\2195"; color: #aaa; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), down = th.dataset.order !== "desc";
      var value = function (row) { var t = row.cells[column].textContent.trim(), n = parseFloat(t); return isNaN(n) ? t : n; };
      rows.sort(function (a, b) { var x = value(a), y = value(b); return (x > y ? 1 : x < y ? -1 : 0) * (down ? -1 : 1); });
      th.dataset.order = down ? "desc" : "asc";
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@literal_text()
def figure_uri(fig: Figure) -> str:
    """``fig`` as a PNG ``data:`` URI (no metadata, so nothing in it names a web address)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chart(fig: Figure, alt: str) -> str:
    """An ``<img class="chart">`` holding ``fig``."""
    return f'<img class="chart" alt="{html.escape(alt)}" src="{figure_uri(fig)}">'


@literal_text()
def calls_chart(queues: pd.DataFrame) -> Figure:
    """Calls per date, stacked by queue."""
    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    table = queues.pivot_table(index="date", columns="queue", values="calls", aggfunc="sum", fill_value=0)
    bottom = np.zeros(len(table))
    bars = []
    for queue in table.columns:
        bars.append(ax.bar(table.index, table[queue], bottom=bottom))
        bottom += table[queue].to_numpy()
    ax.set_ylabel("calls")
    ax.set_title("Calls per date and queue")
    # labels passed with their handles: a queue named "_q" is listed too (a label of its own would hide it)
    ax.legend(bars, [shown(queue) for queue in table.columns], fontsize=8, ncols=min(len(table.columns), 6), loc="upper left")
    return fig


@literal_text()
def emotion_mix_chart(mix: pd.DataFrame) -> Figure:
    """Per speaker role, the share of each emotion in that day's scored windows, one stacked bar per date."""
    roles = list(dict.fromkeys(mix["speaker_role"]))
    fig = Figure(figsize=(9, 2.6 * len(roles)))
    axes = fig.subplots(len(roles), 1, sharex=True, squeeze=False)[:, 0]
    for ax, role in zip(axes, roles):
        table = mix[mix["speaker_role"] == role].set_index("date")
        bottom = np.zeros(len(table))
        for emotion in EMOTIONS:
            ax.bar(table.index, table[emotion], bottom=bottom, color=EMOTION_COLOURS[emotion])
            bottom += table[emotion].to_numpy(dtype=float)
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{shown(role)} %")
    axes[0].set_title("Emotion mix per speaker role over time")
    handles = [Patch(color=EMOTION_COLOURS[e], label=e) for e in EMOTIONS]
    fig.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


@literal_text()
def timeline_chart(windows: pd.DataFrame) -> Figure:
    """Valence and arousal of each window over one call, customer and agent."""
    fig = Figure(figsize=(9, 2.4))
    axes = fig.subplots(1, 2, sharex=True)
    lines, roles = [], []
    for role, rows in windows.groupby("speaker_role"):
        for ax, measure in zip(axes, ("valence", "arousal")):
            line, = ax.plot(rows["start_s"], rows[measure], marker=".", color=ROLE_COLOURS.get(str(role)))
        lines.append(line)
        roles.append(shown(role))
    for ax, measure in zip(axes, ("valence", "arousal")):
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="#bbb", linewidth=0.8)
        ax.set_title(measure, fontsize=9)
        ax.set_xlabel("seconds into the call")
    axes[0].legend(lines, roles, fontsize=8)
    return fig


@literal_text()
def trend_chart(trend: pd.DataFrame) -> Figure:
    """Per day: calls (bars), the customer's negative share and the non-talk share (lines), interruptions per hour."""
    fig = Figure(figsize=(9, 3.2))
    calls, shares, rate = fig.subplots(1, 3)
    calls.bar(trend["date"], trend["calls"], color="#2471a3")
    calls.set_title("calls", fontsize=9)
    for column, colour in (("customer_negative_share", "#c0392b"), ("non_talk_share", "#7f8c8d")):
        shares.plot(trend["date"], trend[column].astype(float), marker="o", color=colour, label=column.replace("_", " "))
    shares.set_ylim(0, 1)
    shares.legend(fontsize=7)
    shares.set_title("shares", fontsize=9)
    rate.plot(trend["date"], trend["interruptions_per_hour"].astype(float), marker="o", color="#8e44ad")
    rate.set_title("interruptions per hour", fontsize=9)
    for ax in (calls, shares, rate):
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return fig


@literal_text()
def errors_chart(errors: pd.DataFrame) -> Figure:
    """Failed calls per reason, largest first."""
    fig = Figure(figsize=(9, 0.5 + 0.35 * len(errors)))
    ax = fig.subplots()
    reasons = [reason if len(reason) <= 70 else reason[:67] + "..." for reason in map(shown, errors["error"])]
    ax.barh(reasons[::-1], errors["calls"][::-1], color="#c0392b")
    ax.set_xlabel("calls")
    return fig


def table_html(frame: pd.DataFrame, sortable: bool = False) -> str:
    """An escaped HTML table (``sortable``: by a click on a column's header), or a note that there are no rows."""
    if not len(frame):
        return '<p class="none">none</p>'
    return shown_frame(frame).to_html(index=False, na_rep="-", border=0, escape=True, float_format=lambda v: f"{v:g}",
                                      classes="sortable" if sortable else None)


def sql_html(*statements: str) -> str:
    """A collapsed block with the SQL that reproduces the table above it."""
    return f"<details><summary>SQL</summary><pre>{html.escape(chr(10).join(statements))}</pre></details>"


def section(report: Report, name: str, *body: str, sortable: bool = False) -> str:
    """``<h2>`` with the table's title, then ``body`` (charts), the table and its SQL (empty for a table not run)."""
    if name not in report.tables:
        return ""
    rules = [sql for key, sql in report.sql.items() if key.startswith("category ")] if name == "category_calls" else []
    return "\n".join([f"<h2>{html.escape(report.title(name))}</h2>", *body, table_html(report.tables[name], sortable),
                      sql_html(report.sql[name], *rules)])


def render_page(report: Report) -> str:
    """The whole page for ``report``, as one string."""
    tables = report.tables
    timelines = tables["timelines"]
    escalated = [
        f"<h3>{html.escape(shown(call_id))}</h3>"
        + chart(timeline_chart(timelines[timelines["call_id"] == call_id]), f"valence and arousal over {shown(call_id)}")
        for call_id in tables["escalated"]["call_id"] if (timelines["call_id"] == call_id).any()
    ]
    views = sql_html(*(sql for key, sql in report.sql.items() if key.startswith("view ")))
    days = report.since if report.since == report.until else f"{report.since} to {report.until}"
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ser call report {html.escape(days)}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Call emotion report</h1>",
        f'<p class="summary">{html.escape(summary_line(report))}</p>',
        f"<p>Generated {generated}. Every table can be reproduced in DuckDB: create the views below, then run the "
        f"table's SQL.</p>{views}",
        section(report, "trend", chart(trend_chart(tables["trend"]), "trend per day") if len(tables["trend"]) else ""),
        section(report, "slices", sortable=True),
        section(report, "categories", sortable=True),
        section(report, "category_calls", sortable=True),
        section(report, "counts"),
        section(report, "queues", chart(calls_chart(tables["queues"]), "calls per date and queue") if len(tables["queues"]) else ""),
        section(report, "errors", chart(errors_chart(tables["errors"]), "failures by reason") if len(tables["errors"]) else ""),
        section(report, "emotions"),
        section(report, "emotions_by_date",
                chart(emotion_mix_chart(tables["emotions_by_date"]), "emotion mix per role over time")
                if len(tables["emotions_by_date"]) else ""),
        section(report, "escalated"),
        f"<h2>{html.escape(report.title('timelines'))}</h2>",
        "\n".join(escalated) or '<p class="none">no escalated calls</p>',
        sql_html(report.sql["timelines"]),
        f"<script>{SORT_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
