"""One scored call: window labels and the per-call summary."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS, VALENCE_AROUSAL
from ser_core.scoring.calls import (CallResult, ScoringConfig, Windows, escalation, speaker_role, summarise_call,
                                    window_labels)


def one_hot(emotions: list[str]) -> np.ndarray:
    probs = np.zeros((len(emotions), len(EMOTIONS)), np.float32)
    probs[np.arange(len(emotions)), [EMOTIONS.index(e) for e in emotions]] = 1.0
    return probs


def test_speaker_roles():
    assert speaker_role(0, 1, agent_channel=0) == "mono"
    assert [speaker_role(c, 2, agent_channel=0) for c in (0, 1)] == ["agent", "customer"]
    assert [speaker_role(c, 2, agent_channel=1) for c in (0, 1)] == ["customer", "agent"]


def test_window_labels_weight_the_circumplex():
    probs = np.full((1, len(EMOTIONS)), 1 / len(EMOTIONS), np.float32)
    probs[0] = 0.0
    probs[0, EMOTIONS.index("angry")], probs[0, EMOTIONS.index("happy")] = 0.75, 0.25
    labels = window_labels(probs)
    assert EMOTIONS[labels["emotion"][0]] == "angry"
    assert labels["confidence"][0] == pytest.approx(0.75)
    expected = 0.75 * np.array(VALENCE_AROUSAL["angry"]) + 0.25 * np.array(VALENCE_AROUSAL["happy"])
    assert (labels["valence"][0], labels["arousal"][0]) == pytest.approx(tuple(expected))


def test_escalation_compares_the_first_and_last_third():
    negative = sorted(NEGATIVE_EMOTIONS)[0]
    config = ScoringConfig()
    n = max(config.escalation_min_segments, 9)
    rising = escalation(one_hot(["neutral"] * (n - n // 3) + [negative] * (n // 3)), config)
    assert rising["escalated"] and rising["customer_negative_last"] == 1.0 and rising["customer_negative_first"] == 0.0
    falling = escalation(one_hot([negative] * (n // 3) + ["neutral"] * (n - n // 3)), config)
    assert not falling["escalated"] and falling["customer_escalation"] < 0
    assert escalation(one_hot([negative] * (config.escalation_min_segments - 1)), config) == {"escalated": False}


def test_summary_per_role_of_a_stereo_call():
    agent = ["neutral", "neutral", "happy"]
    customer = ["neutral"] * 4 + ["angry"] * 4
    channel = np.array([0] * len(agent) + [1] * len(customer), np.int32)
    start_s = np.concatenate([np.arange(len(agent)) * 1.25, np.arange(len(customer)) * 1.25 + 0.5])
    talk = [np.array([[0.0, 5.0]]), np.array([[10.0, 15.0], [20.0, 24.0]])]
    windows = Windows(channel, start_s, start_s + 2.5, np.zeros(len(channel), np.float32), one_hot(agent + customer))
    result = CallResult("q/c-1", "/a/q/c-1.wav", "ok", None, 30.0, 8000, 2, talk, windows)
    row = summarise_call(result, ScoringConfig(agent_channel=0))
    assert row["agent_speech_s"] == 5.0 and row["customer_speech_s"] == 9.0
    assert row["agent_segments"] == len(agent) and row["customer_segments"] == len(customer)
    assert row["agent_dominant_emotion"] == "neutral"
    assert row["agent_share_happy"] == pytest.approx(agent.count("happy") / len(agent))
    assert row["customer_share_angry"] == pytest.approx(customer.count("angry") / len(customer))
    assert sum(row[f"customer_share_{e}"] for e in EMOTIONS) == pytest.approx(1.0)
    assert row["customer_valence"] == pytest.approx(np.mean([VALENCE_AROUSAL[e][0] for e in customer]))
    assert row["escalated"] is True
    assert "mono_speech_s" not in row
    flipped = summarise_call(result, ScoringConfig(agent_channel=1))
    assert flipped["agent_segments"] == len(customer) and flipped["customer_segments"] == len(agent)


def test_summary_of_mono_zero_speech_and_error_calls():
    mono = summarise_call(CallResult("c", "u", "ok", None, 3.0, 16000, 1, [np.zeros((0, 2))]), ScoringConfig())
    assert mono["mono_speech_s"] == 0.0 and mono["mono_segments"] == 0 and mono["non_talk_s"] == 3.0
    assert "mono_dominant_emotion" not in mono and "escalated" not in mono and "agent_speech_s" not in mono
    error = summarise_call(CallResult("c", "u", "error", "empty file (0 bytes)"), ScoringConfig())
    assert error == {"call_id": "c", "source_uri": "u", "status": "error", "error": "empty file (0 bytes)",
                     "duration_s": None, "sample_rate": None, "channels": None, "agent_channel": 0}
