"""The call archive's pieces without the command line: customer turns per call, the turn order, the ground truth."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from ser_core.audio import call_sim
from ser_core.audio.call_archive import (
    RATE,
    SYNTHETIC_NOTICE,
    ArchiveConfig,
    ArchiveSummary,
    Voice,
    arrange,
    customer_groups,
    make_archive,
    split_warning,
    truth_rows,
)
from ser_core.labels import NEGATIVE_EMOTIONS


def voice(speaker: str, emotion: str, number: int = 0) -> Voice:
    return Voice(np.zeros(RATE // 2, np.float32), emotion, speaker, "corpus", f"{speaker}/{number}", f"/data/{speaker}/{number}.wav")


def test_a_call_has_one_customer_and_at_most_size_turns():
    pool = [voice("a", "sad", i) for i in range(5)] + [voice("b", "happy", i) for i in range(2)]
    groups = customer_groups(pool, 2)
    assert [[v.utterance_id for v in group] for group in groups] == [["a/0", "a/1"], ["a/2", "a/3"], ["a/4"], ["b/0", "b/1"]]


def test_the_agent_opens_and_closes_politely_and_an_escalating_call_ends_negative():
    customer = [voice("c", e, i) for i, e in enumerate(("angry", "neutral", "sad", "happy"))]
    agent = [voice("a", "angry", 0), voice("a", "neutral", 1), voice("a", "happy", 2)]
    order = arrange(customer, agent, escalate=True, rng=np.random.default_rng(0))
    assert [role for _, role in order] == ["agent", "customer"] * 4 + ["agent"]
    assert {v.emotion for v, role in order if role == "agent"} <= {"neutral", "happy"}
    said = [v.emotion in NEGATIVE_EMOTIONS for v, role in order if role == "customer"]
    assert said == [False, False, True, True]
    calm = arrange(customer, agent, escalate=False, rng=np.random.default_rng(0))
    assert [v.utterance_id for v, role in calm if role == "customer"] == ["c/0", "c/1", "c/2", "c/3"]


def test_an_agent_with_only_negative_utterances_still_speaks():
    order = arrange([voice("c", "happy")], [voice("a", "sad")], escalate=False, rng=np.random.default_rng(0))
    assert [(v.speaker, role) for v, role in order] == [("a", "agent"), ("c", "customer"), ("a", "agent")]


def test_truth_rows_name_each_turn_and_the_calls_mood():
    order = [(voice("a", "neutral"), "agent"), (voice("c", "happy", 1), "customer"), (voice("c", "angry", 2), "customer"),
             (voice("a", "neutral"), "agent")]
    turns = [call_sim.Turn(0 if role == "agent" else 1, 2.0 * i, v.samples, (0.0, 0.5)) for i, (v, role) in enumerate(order)]
    stereo = ArchiveConfig(out="unused", corpora=(("ravdess", "/data"),))
    rows = truth_rows("d/queue-1/c-0000", order, turns, True, stereo)
    assert [(r["turn"], r["role"], r["channel"], r["start_s"], r["end_s"]) for r in rows] == [
        (0, "agent", 0, 0.0, 0.5), (1, "customer", 1, 2.0, 2.5), (2, "customer", 1, 4.0, 4.5), (3, "agent", 0, 6.0, 6.5)]
    assert {r["call_mood"] for r in rows} == {"escalating"} and not any(r["synthetic"] for r in rows)
    mono = truth_rows("d/queue-1/c-0000", order, turns, False, ArchiveConfig(out="unused", stereo=False))
    assert {(r["call_mood"], r["channel"], r["synthetic"]) for r in mono} == {("mixed", 0, True)}


def test_only_a_recomputed_split_of_corpora_is_warned_about():
    corpora = ArchiveConfig(out="unused", corpora=(("ravdess", "/data"),))
    recomputed = ArchiveSummary(split_recorded=False)
    assert "NOT guaranteed" in split_warning(corpora, recomputed)
    assert split_warning(corpora, ArchiveSummary()) is None
    assert split_warning(ArchiveConfig(out="unused", corpora=corpora.corpora, split="all"), recomputed) is None
    assert split_warning(ArchiveConfig(out="unused"), recomputed) is None


def test_a_synthetic_archive_says_so(tmp_path):
    summary = make_archive(ArchiveConfig(out=str(tmp_path), calls=1, customer_turns=1, date="2026-11-23"))
    assert (summary.calls, summary.turns, summary.synthetic) == (1, 3, True)
    assert SYNTHETIC_NOTICE in (tmp_path / "README.txt").read_text()
    assert (tmp_path / "audio" / "2026-11-23" / "queue-1" / "c-0000.wav").is_file()
    assert pq.read_table(tmp_path / "ground_truth.parquet").column("synthetic").to_pylist() == [True] * 3
