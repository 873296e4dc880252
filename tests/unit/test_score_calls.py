"""One call in one process: windows over speech regions, window labels, and the per-call summary."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.calls import (
    CallResult,
    ScoringConfig,
    channel_windows,
    chunk_bounds,
    escalation,
    speaker_role,
    summarise_call,
    window_labels,
)
from ser_core.features import FeatureSpec, frame_features, window_starts, windows
from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS, VALENCE_AROUSAL
from tests.audio_factory import speech_like

SPEC = FeatureSpec()
FRAME_S = SPEC.hop_length / SPEC.sample_rate


def one_hot(emotions: list[str]) -> np.ndarray:
    probs = np.zeros((len(emotions), len(EMOTIONS)), np.float32)
    probs[np.arange(len(emotions)), [EMOTIONS.index(e) for e in emotions]] = 1.0
    return probs


def test_speaker_roles():
    assert speaker_role(0, 1, agent_channel=0) == "mono"
    assert [speaker_role(c, 2, agent_channel=0) for c in (0, 1)] == ["agent", "customer"]
    assert [speaker_role(c, 2, agent_channel=1) for c in (0, 1)] == ["customer", "agent"]


@pytest.mark.parametrize("length", [SPEC.window_frames * 7 + 13, SPEC.window_frames * 3, SPEC.window_frames + 1])
def test_chunks_continue_one_window_grid(length):
    """Windows cut chunk by chunk start where windows over the whole region would, ending flush with it."""
    start = 40
    max_chunk = SPEC.window_frames * 2
    bounds = chunk_bounds(start, start + length, SPEC, max_chunk)
    assert len(bounds) > 1 or length <= max_chunk
    chunked = sorted({a + s for a, b in bounds for s in window_starts(b - a, SPEC)})
    whole = [start + s for s in window_starts(length, SPEC)]
    assert chunked == whole
    assert all(b - a <= max_chunk for a, b in bounds)


def test_channel_windows_match_windows_over_the_region():
    rate = SPEC.sample_rate
    samples = speech_like(12.0, rate)
    region = np.array([[100, 100 + int(6.0 / FRAME_S)]])
    out = list(channel_windows(samples, region, SPEC, ScoringConfig()))
    start_s, end_s, rms_db, batch = (np.concatenate(parts) for parts in zip(*out))
    a, b = region[0]
    expected, starts = windows(frame_features(samples[a * SPEC.hop_length : b * SPEC.hop_length], SPEC)[: b - a], SPEC)
    assert np.allclose(batch, expected, atol=1e-4)
    assert np.allclose(start_s, (a + starts) * FRAME_S)
    assert np.allclose(end_s - start_s, SPEC.window_seconds)
    assert end_s.max() == pytest.approx(b * FRAME_S)
    rms = SPEC.feature_names.index("rms_db")
    assert np.allclose(rms_db, expected[:, :, rms].mean(axis=1))


def test_short_regions_are_tiled_or_skipped():
    samples = speech_like(5.0, SPEC.sample_rate)
    config = ScoringConfig(min_region_s=1.0)
    short = int(1.5 / FRAME_S)
    too_short = int(0.5 / FRAME_S)
    regions = np.array([[0, short], [300, 300 + too_short]])
    out = list(channel_windows(samples, regions, SPEC, config))
    assert len(out) == 1
    start_s, end_s, _, batch = out[0]
    assert batch.shape == (1, *SPEC.window_shape)
    assert (start_s[0], end_s[0]) == pytest.approx((0.0, short * FRAME_S))


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
    result = CallResult("q/c-1", "/a/q/c-1.wav", "ok", None, 30.0, 8000, 2, [5.0, 9.0], channel=channel,
                        start_s=start_s, end_s=start_s + 2.5, rms_db=np.zeros(len(channel), np.float32),
                        probs=one_hot(agent + customer))
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
    mono = summarise_call(CallResult("c", "u", "ok", None, 3.0, 16000, 1, [0.0]), ScoringConfig())
    assert mono["mono_speech_s"] == 0.0 and mono["mono_segments"] == 0
    assert "mono_dominant_emotion" not in mono and "escalated" not in mono and "agent_speech_s" not in mono
    error = summarise_call(CallResult("c", "u", "error", "empty file (0 bytes)"), ScoringConfig())
    assert error == {"call_id": "c", "source_uri": "u", "status": "error", "error": "empty file (0 bytes)",
                     "duration_s": None, "sample_rate": None, "channels": None, "agent_channel": 0}
