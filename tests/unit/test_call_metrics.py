"""Call metrics on calls whose talk and windows are constructed, so every figure is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.labels import EMOTIONS, VALENCE_AROUSAL
from ser_core.scoring import call_metrics
from ser_core.scoring.calls import CallResult, ScoringConfig, Windows, summarise_call, turn_rows

AGENT = np.array([[1.0, 5.0], [5.3, 8.0], [20.0, 30.0]])  # a 0.3 s pause bridged: two turns
CUSTOMER = np.array([[7.0, 12.0], [29.0, 29.4], [31.0, 35.0]])  # interrupts at 7 (1.0 s overlap); 29.0 overlaps 0.4 s only
DURATION = 40.0


def one_hot(emotions: list[str]) -> np.ndarray:
    probs = np.zeros((len(emotions), len(EMOTIONS)), np.float32)
    probs[np.arange(len(emotions)), [EMOTIONS.index(e) for e in emotions]] = 1.0
    return probs


def test_talk_non_talk_overtalk_and_interruptions():
    row = call_metrics.talk_metrics({"agent": AGENT, "customer": CUSTOMER}, DURATION)
    assert row["agent_speech_s"] == pytest.approx(4.0 + 2.7 + 10.0)
    assert row["customer_speech_s"] == pytest.approx(5.0 + 0.4 + 4.0)
    assert row["overtalk_s"] == pytest.approx(1.0 + 0.4)  # 7-8 and 29-29.4
    talked = [(1.0, 5.0), (5.3, 12.0), (20.0, 30.0), (31.0, 35.0)]
    assert row["non_talk_s"] == pytest.approx(DURATION - sum(b - a for a, b in talked))
    assert row["customer_interruptions"] == 1 and row["agent_interruptions"] == 0


def test_interruptions_need_the_other_party_mid_turn_and_half_a_second_of_overlap():
    other = np.array([[0.0, 10.0]])
    assert call_metrics.interruptions(np.array([[4.0, 4.6]]), other) == 1
    assert call_metrics.interruptions(np.array([[4.0, 4.4]]), other) == 0  # overlap under 0.5 s
    assert call_metrics.interruptions(np.array([[9.7, 12.0]]), other) == 0  # the other ends 0.3 s later
    assert call_metrics.interruptions(np.array([[0.0, 3.0]]), other) == 0  # both start together: nobody interrupts
    assert call_metrics.interruptions(np.array([[2.0, 3.0], [5.0, 6.0]]), other) == 2


def test_mono_calls_have_talk_and_non_talk_but_no_overtalk():
    row = call_metrics.talk_metrics({"mono": np.array([[0.0, 2.0], [1.0, 3.0]])}, 10.0)
    assert row == {"mono_speech_s": 3.0, "non_talk_s": 7.0}


def test_sentiment_over_the_first_and_last_quarter_weighted_by_overlap():
    start = np.array([0.0, 5.0, 32.0, 38.0])
    valence = np.array([-1.0, 1.0, 0.5, -0.5])
    got = call_metrics.sentiment_start_end(start, start + 2.5, valence, DURATION)
    assert got["sentiment_start"] == pytest.approx((-1.0 * 2.5 + 1.0 * 2.5) / 5.0)
    assert got["sentiment_end"] == pytest.approx((0.5 * 2.5 + -0.5 * 2.0) / 4.5)  # the last window is 2.0 s inside
    silent = call_metrics.sentiment_start_end(np.array([15.0]), np.array([17.5]), np.array([0.3]), DURATION)
    assert silent == {"sentiment_start": None, "sentiment_end": None}


def constructed_call() -> CallResult:
    """Agent and customer windows over the talk above: the agent calm throughout, the customer angry at the end."""
    agent_start, customer_start = np.array([1.0, 2.25, 5.3, 20.0, 27.5]), np.array([7.0, 8.25, 9.5, 31.0, 32.5])
    emotions = ["neutral"] * 5 + ["happy", "happy", "neutral", "angry", "angry"]
    start = np.concatenate([agent_start, customer_start])
    windows = Windows(np.array([0] * 5 + [1] * 5, np.int32), start, start + 2.5, np.zeros(10, np.float32), one_hot(emotions))
    return CallResult("q/c-1", "/a/q/c-1.wav", "ok", None, DURATION, 8000, 2, [AGENT, CUSTOMER], windows)


def test_the_calls_row_carries_the_metrics():
    row = summarise_call(constructed_call(), ScoringConfig())
    assert row["agent_speech_s"] == pytest.approx(16.7) and row["customer_speech_s"] == pytest.approx(9.4)
    assert row["overtalk_s"] == pytest.approx(1.4) and row["customer_interruptions"] == 1
    happy, angry, neutral = (VALENCE_AROUSAL[e][0] for e in ("happy", "angry", "neutral"))
    first = (2.5 * happy + 1.75 * happy + 0.5 * neutral) / 4.75  # 7-9.5, 8.25-10, 9.5-10 of the first 10 s
    assert row["customer_sentiment_start"] == pytest.approx(first)
    assert row["customer_sentiment_end"] == pytest.approx(angry)
    assert row["agent_sentiment_start"] == pytest.approx(neutral)
    assert row["agent_sentiment_end"] is None  # the agent's last window ends at 30 s: silent in the last quarter
    flipped = summarise_call(constructed_call(), ScoringConfig(agent_channel=1))
    assert flipped["agent_speech_s"] == pytest.approx(9.4) and flipped["agent_interruptions"] == 1


def test_turn_rows_bridge_short_pauses_and_average_the_windows_over_each_turn():
    rows = turn_rows(constructed_call(), ScoringConfig())
    got = list(zip(rows["speaker_role"], rows["start_s"], rows["end_s"]))
    assert got == [("agent", 1.0, 8.0), ("customer", 7.0, 12.0), ("agent", 20.0, 30.0), ("customer", 29.0, 29.4),
                   ("customer", 31.0, 35.0)]
    assert rows["turn"] == [0, 1, 2, 3, 4] and rows["channel"] == [0, 1, 0, 1, 1]
    assert rows["emotion"][0] == "neutral" and rows["emotion"][4] == "angry"
    assert rows["windows"][1] == 3 and rows["confidence"][4] == pytest.approx(1.0)
    assert rows["emotion"][3] is None and rows["prob_angry"][3] is None  # no customer window over 29.0-29.4
    customer_first = rows["prob_happy"][1]
    assert customer_first == pytest.approx((2.5 + 2.5) / (2.5 + 2.5 + 2.5))  # 7-9.5, 8.25-10.75 happy; 9.5-12 neutral
