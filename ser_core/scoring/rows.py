"""The report tables of scored calls: :data:`~ser_core.reports.schema.CALLS`, ``SEGMENTS`` and ``TURNS`` rows
built from :class:`~ser_core.scoring.calls.CallResult` values, stamped with the run that scored them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ser_core.labels import EMOTIONS
from ser_core.reports.schema import CALLS, SEGMENTS, TURNS
from ser_core.scoring.calls import (
    CallResult,
    ScoringConfig,
    Windows,
    speaker_role,
    summarise_call,
    turn_rows,
    window_labels,
)
from ser_core.scoring.contact_metadata import folder_queue


@dataclass(frozen=True)
class RunStamp:
    """Who scored the rows: the run columns of every report table."""

    model_version: str
    run_id: str
    scored_at: dt.datetime

    def columns(self, n: int) -> dict[str, list]:
        return {"model_version": [self.model_version] * n, "run_id": [self.run_id] * n, "scored_at": [self.scored_at] * n}


def calls_table(results: list[CallResult], scoring: ScoringConfig, stamp: RunStamp,
                contacts: dict[str, dict] | None = None) -> pa.Table:
    """One row per call, with its contact columns (``contacts``: call id -> columns of ``ser score --metadata``);
    ``queue`` defaults to the call's queue folder."""
    contacts = contacts or {}
    rows = [{**summarise_call(r, scoring), **contacts.get(r.call_id, {})} for r in results]
    for row in rows:
        row["queue"] = row.get("queue") or folder_queue(row["source_uri"])
    columns = {name: [row.get(name) for row in rows] for name in CALLS.names}
    return pa.table({**columns, **stamp.columns(len(rows))}, schema=CALLS)


def turns_table(results: list[CallResult], scoring: ScoringConfig, stamp: RunStamp) -> pa.Table:
    """One row per turn of the calls scored ok."""
    tables = [turn_rows(r, scoring) for r in results if r.status == "ok"]
    if not tables:
        return TURNS.empty_table()
    columns = {name: [v for t in tables for v in t[name]] for name in tables[0]}
    return pa.table({**columns, **stamp.columns(len(columns["call_id"]))}, schema=TURNS)


def segments_table(results: list[CallResult], scoring: ScoringConfig, stamp: RunStamp) -> pa.Table:
    """One row per scored window of the calls scored ok, with its labels and speaker role."""
    scored = [r for r in results if r.status == "ok" and len(r.windows)]
    if not scored:
        return SEGMENTS.empty_table()
    windows = Windows.joined([r.windows for r in scored])
    labels = window_labels(windows.probs)
    agent = scoring.agent_channel
    columns = {
        "call_id": [r.call_id for r in scored for _ in range(len(r.windows))],
        "channel": windows.channel,
        "speaker_role": [speaker_role(int(c), r.scored_channels, agent) for r in scored for c in r.windows.channel],
        "start_s": windows.start_s,
        "end_s": windows.end_s,
        "emotion": np.asarray(EMOTIONS, dtype=object)[labels["emotion"]],
        "confidence": labels["confidence"],
        **{f"prob_{e}": windows.probs[:, i] for i, e in enumerate(EMOTIONS)},
        "valence": labels["valence"],
        "arousal": labels["arousal"],
        "rms_db": windows.rms_db,
    }
    return pa.table({**columns, **stamp.columns(len(windows))}, schema=SEGMENTS)
