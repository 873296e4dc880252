"""Segmentation: chunks on one window grid, windows over speech regions, short regions, clips as one-turn calls."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.audio.segmentation import Segmentation, channel_windows, chunk_bounds, clip_regions
from ser_core.frontends.features import FeatureSpec, frame_features, window_starts, windows
from ser_core.frontends.windows import FeatureFrontend
from tests.audio_factory import speech_like

SPEC = FeatureSpec()
FRAME_S = SPEC.hop_length / SPEC.sample_rate


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
    out = list(channel_windows(samples, region, SPEC, Segmentation()))
    start_s, end_s, rms_db, batch = (np.concatenate(parts) for parts in zip(*out))
    a, b = region[0]
    expected, starts = windows(frame_features(samples[a * SPEC.hop_length : b * SPEC.hop_length], SPEC)[: b - a], SPEC)
    assert np.allclose(batch, expected, atol=1e-4)
    assert np.allclose(start_s, (a + starts) * FRAME_S)
    assert np.allclose(end_s - start_s, SPEC.window_seconds)
    assert end_s.max() == pytest.approx(b * FRAME_S)
    rms = SPEC.feature_names.index("rms_db")
    assert np.allclose(rms_db, expected[:, :, rms].mean(axis=1))


def test_short_regions_are_scored_over_what_they_have():
    samples = speech_like(5.0, SPEC.sample_rate)
    short, shorter = int(1.5 / FRAME_S), int(0.3 / FRAME_S)
    regions = np.array([[0, short], [300, 300 + shorter]])
    out = list(channel_windows(samples, regions, SPEC, Segmentation()))
    assert [batch.shape for *_, batch in out] == [(1, *SPEC.window_shape)] * 2
    times = [v for s, e, _, _ in out for v in (s[0], e[0])]
    assert times == pytest.approx([0.0, short * FRAME_S, 3.0, 3.0 + shorter * FRAME_S])
    assert len(list(channel_windows(samples, regions, SPEC, Segmentation(min_region_s=1.0)))) == 1


def test_a_clip_is_segmented_as_a_one_turn_call():
    """A clip's silences are not windowed: its windows are those of its speech region, wherever it sits."""
    rate = SPEC.sample_rate
    voice = speech_like(1.2, rate)
    quiet = np.random.default_rng(0).normal(0, 10 ** (-65 / 20), rate).astype(np.float32)
    clip = np.concatenate([quiet, voice * 0.05, quiet])
    [[a, b]] = clip_regions(clip, SPEC)
    assert 0.85 <= a * FRAME_S <= 1.0 and 2.2 <= b * FRAME_S <= 2.45
    frontend = FeatureFrontend(SPEC)
    batch, starts = frontend.utterance_windows(clip)
    assert batch.shape == (1, *SPEC.window_shape) and starts[0] == pytest.approx(a * FRAME_S)
    louder, _ = frontend.utterance_windows(np.concatenate([quiet, voice * 0.5, quiet]))
    assert louder.shape == batch.shape  # the same speech found 20 dB louder
    empty, _ = frontend.utterance_windows(quiet)
    assert empty.shape == (0, *SPEC.window_shape)
