"""Scored calls committed to the report store in parts: each part is one Parquet file per table, committed
atomically with the calls it holds (:meth:`~ser_core.reports.store.ReportStore.commit`)."""

from __future__ import annotations

import datetime as dt

from ser_core.reports.store import ReportStore
from ser_core.scoring.calls import CallResult, ScoringConfig
from ser_core.scoring.rows import RunStamp, calls_table, segments_table, turns_table


class PartWriter:
    """Buffers completed calls and commits them as parts of ``calls_per_part`` calls under ``date=DATE/``."""

    def __init__(self, store: ReportStore, date: str, run_id: str, model_version: str, scoring: ScoringConfig,
                 calls_per_part: int, contacts: dict[str, dict] | None = None):
        self.store, self.date, self.run_id, self.model_version = store, date, run_id, model_version
        self.scoring, self.calls_per_part = scoring, calls_per_part
        self.contacts = contacts or {}  # call_id -> contact columns (``--metadata``)
        self.buffer: list[CallResult] = []
        self.parts = 0
        self.replaced = 0  # rows of earlier runs the committed parts replaced

    def add(self, result: CallResult) -> None:
        """Buffer one call; commit a part when the buffer is full."""
        self.buffer.append(result)
        if len(self.buffer) >= self.calls_per_part:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered calls as one part (nothing when the buffer is empty)."""
        if not self.buffer:
            return
        stamp = RunStamp(self.model_version, self.run_id, dt.datetime.now(dt.timezone.utc))
        name = f"date={self.date}/part-{self.run_id}-{self.parts:05d}.parquet"
        details = {"segments": segments_table(self.buffer, self.scoring, stamp),
                   "turns": turns_table(self.buffer, self.scoring, stamp)}
        self.replaced += self.store.commit(name, details, calls_table(self.buffer, self.scoring, stamp, self.contacts))
        self.parts += 1
        self.buffer = []
