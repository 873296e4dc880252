"""Calls put back together from the pieces :class:`~ser_core.scoring.scorer.CallScoring` yields.

Pieces arrive in any order and interleaved between calls; a retried task yields some of them again. A call is
complete once its :class:`~ser_core.scoring.scorer.CallEnd` and every window it counts have arrived; a window
seen before (by its number in the call) is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ser_core.scoring.calls import CallResult, Windows
from ser_core.scoring.inputs import CallInput
from ser_core.scoring.scorer import CallEnd, ScoredBatch


@dataclass
class _Partial:
    numbers: list[np.ndarray] = field(default_factory=list)
    windows: list[Windows] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    end: CallEnd | None = None


class CallCollector:
    """Reassembles the calls of ``calls`` from their pieces."""

    def __init__(self, calls: list[CallInput]):
        self.uris = {c.call_id: c.uri for c in calls}
        self.partial: dict[str, _Partial] = {}
        self.done: set[str] = set()

    def add(self, piece: ScoredBatch | CallEnd) -> CallResult | None:
        """Take one piece; return its call when the piece completed it."""
        call_id = piece.result.call_id if isinstance(piece, CallEnd) else piece.call_id
        if call_id in self.done:
            return None
        part = self.partial.setdefault(call_id, _Partial())
        if isinstance(piece, CallEnd):
            part.end = piece
        else:
            numbers = piece.first + np.arange(len(piece.windows))
            fresh = ~np.isin(numbers, list(part.seen))
            if fresh.any():
                part.seen.update(numbers[fresh].tolist())
                part.numbers.append(numbers[fresh])
                part.windows.append(piece.windows.take(fresh))
        if part.end is None or len(part.seen) < part.end.windows:
            return None
        self.done.add(call_id)
        del self.partial[call_id]
        if part.end.result.status != "ok":  # a failed call has no windows in the reports
            return part.end.result
        order = np.argsort(np.concatenate(part.numbers)) if part.numbers else np.zeros(0, int)
        return replace(part.end.result, windows=Windows.joined(part.windows).take(order))

    def unfinished(self) -> list[CallInput]:
        """Every call not completed."""
        return [CallInput(call_id, uri) for call_id, uri in self.uris.items() if call_id not in self.done]
