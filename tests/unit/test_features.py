"""Feature spec versioning, frame features and windowing."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.frontends.features import (
    FeatureSpec,
    frame_features,
    trim_silence,
    utterance_windows,
    window_starts,
    windows,
)
from tests.audio_factory import speech_like


def test_version_is_a_content_hash():
    assert FeatureSpec().version == FeatureSpec().version
    assert FeatureSpec(n_mfcc=13).version != FeatureSpec().version
    assert FeatureSpec.from_dict(FeatureSpec().to_dict()) == FeatureSpec()
    assert hash(FeatureSpec()) == hash(FeatureSpec())


def test_frame_features_shape_and_columns():
    spec = FeatureSpec()
    y = speech_like(2.0, spec.sample_rate)
    frames = frame_features(y, spec)
    assert frames.shape == (1 + y.size // spec.hop_length, spec.n_features)
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    names = spec.feature_names
    zcr, rms = frames[:, names.index("zcr")], frames[:, names.index("rms_db")]
    assert 0 <= zcr.min() and zcr.max() <= 1
    loud = frame_features(y * 0.1, spec)[:, names.index("rms_db")]
    assert np.median(rms - loud) == pytest.approx(20.0, abs=0.5)  # 20 dB quieter


def test_feature_selection_changes_width():
    assert FeatureSpec(logmel=False, deltas=False).n_features == 20 + 2
    assert len(FeatureSpec().feature_names) == 40 + 20 + 20 + 2


def test_window_starts_cover_everything():
    spec = FeatureSpec()
    size = spec.window_frames
    assert window_starts(10, spec) == [0]
    for n in (size, size + 1, 3 * size + 17):
        starts = window_starts(n, spec)
        assert starts[0] == 0 and starts[-1] + size == n
        assert all(b - a <= spec.window_hop_frames for a, b in zip(starts, starts[1:]))


def test_short_input_is_tiled_not_zero_padded():
    spec = FeatureSpec()
    frames = np.arange(30 * 3, dtype=np.float32).reshape(30, 3)
    batch, starts = windows(frames, spec)
    assert batch.shape == (1, spec.window_frames, 3) and list(starts) == [0]
    np.testing.assert_array_equal(batch[0, 30:60], frames)


def test_long_utterance_gives_overlapping_windows():
    spec = FeatureSpec()
    batch, start_s = utterance_windows(speech_like(6.0, spec.sample_rate), spec)
    assert batch.shape[1:] == spec.window_shape and len(batch) >= 3
    assert start_s[1] == pytest.approx(spec.window_hop_seconds)


def test_trim_silence_removes_padding():
    spec = FeatureSpec()
    speech = speech_like(1.0, spec.sample_rate)
    padded = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(8000, np.float32)])
    trimmed = trim_silence(padded, spec)
    assert speech.size * 0.8 < trimmed.size < speech.size * 1.2
    silence = np.zeros(8000, np.float32)
    assert trim_silence(silence, spec).size == silence.size
