"""Report stores written as ``ser score`` writes them, from constructed calls (no audio, no model)."""

from __future__ import annotations

import numpy as np

from ser_core.labels import EMOTIONS
from ser_core.reports.store import Lease, ReportStore
from ser_core.scoring.calls import CallResult, ScoringConfig, Windows
from ser_core.scoring.parts import PartWriter

NEGATIVE, CALM = "angry", "neutral"


def stereo_call(call_id: str, agent: list[str], customer: list[str]) -> CallResult:
    """An ok stereo call whose windows carry one-hot probabilities for the given emotions."""
    emotions = agent + customer
    probs = np.zeros((len(emotions), len(EMOTIONS)), np.float32)
    probs[np.arange(len(emotions)), [EMOTIONS.index(e) for e in emotions]] = 1.0
    channel = np.array([0] * len(agent) + [1] * len(customer), np.int32)
    start = np.concatenate([np.arange(len(agent)), np.arange(len(customer))]) * 1.25
    talk = [np.array([[0.0, 30.0]]), np.array([[40.0, 80.0]])]
    windows = Windows(channel, start.astype(float), start + 2.5, np.full(len(emotions), -20.0, np.float32), probs)
    return CallResult(call_id, f"/archive/{call_id}.wav", "ok", None, 120.0, 8000, 2, talk, windows)


CALLS = {
    "2026-11-23": [
        stereo_call("d1/escalating", ["neutral"] * 3, [CALM] * 6 + [NEGATIVE, CALM, NEGATIVE]),
        stereo_call("d1/calm", ["happy"] * 2, [CALM] * 9),
        CallResult("d1/broken", "/archive/d1/broken.wav", "error", "empty file (0 bytes)"),
    ],
    "2026-11-24": [
        stereo_call("d2/very-escalating", ["neutral"] * 2, [CALM] * 3 + [NEGATIVE] * 6),
        CallResult("d2/broken", "/archive/d2/broken.wav", "error", "empty file (0 bytes)"),
        CallResult("d2/notes", "/archive/d2/notes.wav", "error", "not decodable audio (Format not recognised.)"),
        CallResult("2026-11-24/loose", "/archive/2026-11-24/loose.wav", "error", "empty file (0 bytes)"),  # no queue folder
    ],
}


def write_reports(out: str, calls: dict[str, list[CallResult]] = CALLS) -> None:
    """Commit ``calls`` (per date) to a report store at ``out`` as ``ser score`` does, two calls per part."""
    for date, results in calls.items():
        with Lease(out, f"run-{date}") as lease:
            writer = PartWriter(ReportStore(out, lease), date, f"run-{date}", "ser-cnn-test", ScoringConfig(), calls_per_part=2)
            for result in results:
                writer.add(result)
            writer.flush()
