"""Voice activity detection on signals whose speech positions are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.audio.vad import VadConfig, bridge_gaps, frame_levels_db, runs, speech_regions
from ser_core.frontends.features import FeatureSpec
from tests.audio_factory import speech_like

SPEC = FeatureSpec()
RATE = SPEC.sample_rate
FRAME_S = SPEC.hop_length / RATE
CONFIG = VadConfig()


def noise(seconds: float, level_db: float, seed: int = 1) -> np.ndarray:
    """White noise at ``level_db`` dBFS RMS."""
    return (10 ** (level_db / 20) * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def place(total_s: float, bursts: list[tuple[float, float]], floor_db: float = -65.0, seed: int = 0) -> np.ndarray:
    """``total_s`` of faint noise with speech-like audio at each ``(start, end)`` second range."""
    y = noise(total_s, floor_db, seed + 100)
    for i, (start, end) in enumerate(bursts):
        a = int(start * RATE)
        y[a : a + int((end - start) * RATE)] += speech_like(end - start, RATE, f0=150 + 20 * i, seed=seed + i)
    return y


def seconds(regions: np.ndarray) -> list[tuple[float, float]]:
    return [(a * FRAME_S, b * FRAME_S) for a, b in regions]


def test_frame_levels_match_the_rms_of_a_sine():
    amplitude = 0.25
    t = np.arange(RATE) / RATE
    levels = frame_levels_db(amplitude * np.sin(2 * np.pi * 440 * t), SPEC)[0]
    assert levels.shape == (1 + RATE // SPEC.hop_length,)
    inner = levels[2:-2]  # the edge frames are half zero padding
    assert np.allclose(inner, 20 * np.log10(amplitude / np.sqrt(2)), atol=0.1)


def test_runs_and_bridging():
    mask = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 1], bool)
    regions = runs(mask)
    assert regions.tolist() == [[1, 3], [4, 5], [8, 10]]
    assert bridge_gaps(regions, 2).tolist() == [[1, 5], [8, 10]]
    assert bridge_gaps(regions, 4).tolist() == [[1, 10]]
    assert runs(np.zeros(5, bool)).shape == (0, 2)


@pytest.mark.parametrize("samples", [np.zeros(5 * RATE, np.float32), noise(5, -65.0)], ids=["digital-silence", "faint-noise"])
def test_silence_and_faint_noise_have_no_speech(samples):
    assert [len(r) for r in speech_regions(samples[np.newaxis], SPEC)] == [0]


def test_steady_tone_and_steady_noise_are_not_speech():
    """A dial tone or a burst of line noise in a quiet channel is loud enough, but its level does not move."""
    on = slice(2 * RATE, 5 * RATE)
    tone, hiss = noise(8, -65.0), noise(8, -65.0, seed=2)
    tone[on] += 0.3 * np.sin(2 * np.pi * 1000 * np.arange(3 * RATE) / RATE)
    hiss[on] += noise(3, -20.0, seed=3)
    assert [len(r) for r in speech_regions(np.stack([tone, hiss]), SPEC, VadConfig(crosstalk_db=np.inf))] == [0, 0]
    steady = speech_regions(np.stack([tone, hiss]), SPEC, VadConfig(crosstalk_db=np.inf, min_modulation_db=0.0))
    assert [len(r) for r in steady] == [1, 1]  # only the modulation rule rejects them


def test_regions_follow_the_bursts():
    bursts = [(1.0, 3.0), (5.0, 8.5)]
    found = seconds(speech_regions(place(10.0, bursts)[np.newaxis], SPEC)[0])
    assert len(found) == len(bursts)
    tolerance = CONFIG.min_gap_s + CONFIG.pad_s  # a syllable envelope may start or end within the last gap
    spread = CONFIG.level_smooth_s / 2 + SPEC.win_length / RATE / 2 + FRAME_S  # frames and their smoothing reach this far
    for (start, end), (a, b) in zip(bursts, found):
        assert start - CONFIG.pad_s - spread <= a <= start + tolerance
        assert end - tolerance <= b <= end + CONFIG.hangover_s + spread


def test_short_gaps_are_bridged_and_blips_dropped():
    gap = CONFIG.min_gap_s / 2
    blip = CONFIG.min_speech_s / 2
    y = place(8.0, [(1.0, 2.0), (2.0 + gap, 3.0)])
    a = int(6.0 * RATE)
    y[a : a + int(blip * RATE)] += 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(blip * RATE)) / RATE)
    found = seconds(speech_regions(y[np.newaxis], SPEC)[0])
    assert len(found) == 1
    assert found[0][0] < 1.5 and found[0][1] > 2.5


def test_crosstalk_from_the_other_channel_is_not_speech():
    agent = place(10.0, [(0.5, 4.0)], seed=0)
    customer_own = place(10.0, [(5.5, 9.0)], seed=7)
    leak = 10 ** (-30 / 20) * agent  # the agent heard 30 dB down on the customer's line
    stereo = np.stack([agent + 10 ** (-30 / 20) * customer_own, customer_own + leak])
    agent_regions, customer_regions = (seconds(r) for r in speech_regions(stereo, SPEC))
    assert len(agent_regions) == 1 and agent_regions[0][1] < 5.0
    assert len(customer_regions) == 1 and customer_regions[0][0] > 4.5


def test_double_talk_at_similar_levels_is_speech_on_both_channels():
    both = place(6.0, [(1.0, 5.0)])
    regions = speech_regions(np.stack([both, place(6.0, [(1.0, 5.0)], seed=3)]), SPEC)
    assert all(len(r) == 1 for r in regions)


def test_regions_end_within_the_audio():
    """Speech up to the last sample (padding included) ends at the audio's end, not one frame after it."""
    seconds_total = 3.0
    y = place(seconds_total, [(1.0, seconds_total)])
    y[-RATE // 10 :] = 0.3 * np.sin(2 * np.pi * 200 * np.arange(RATE // 10) / RATE)  # loud to the very end
    (region,) = speech_regions(y[np.newaxis], SPEC)[0]
    assert region[1] * FRAME_S <= seconds_total
    assert region[1] * FRAME_S > seconds_total - FRAME_S
