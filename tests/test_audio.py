"""Decoding real formats, rates and channel layouts, and clear errors for everything that is not audio."""

from __future__ import annotations

import numpy as np
import pytest

from ser_core.audio import AudioDecodeError, decode, resample
from tests.audio_factory import speech_like, write_corrupt_files, write_speech


@pytest.mark.parametrize("ext, subtype", [("wav", "PCM_16"), ("wav", "ULAW"), ("wav", "FLOAT"), ("flac", None), ("ogg", None), ("mp3", None)])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_formats_and_rates_decode_to_target_rate(tmp_path, ext, subtype, rate):
    path = write_speech(tmp_path / f"a.{ext}", seconds=1.0, sample_rate=rate, subtype=subtype)
    audio = decode(str(path), target_rate=16000)
    assert audio.sample_rate == 16000 and audio.source_rate == rate and audio.channels == 1
    assert abs(audio.duration_s - 1.0) < 0.06  # mp3 encoders pad a little
    assert audio.samples.dtype == np.float32 and np.abs(audio.samples).max() > 0.1


def test_stereo_kept_or_mixed(tmp_path):
    path = write_speech(tmp_path / "call.wav", seconds=1.0, sample_rate=8000, channels=2)
    kept = decode(str(path), mono=False)
    assert kept.samples.shape == (2, 8000) and kept.source_channels == 2
    assert not np.allclose(kept.samples[0], kept.samples[1])
    mixed = decode(str(path), mono=True)
    np.testing.assert_allclose(mixed.samples[0], kept.samples.mean(axis=0), atol=1e-6)


def test_resample_preserves_a_tone():
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    down = resample(tone, 48000, 8000)
    spectrum = np.abs(np.fft.rfft(down))
    assert down.shape == (8000,) and np.argmax(spectrum) == 440


@pytest.mark.parametrize("kind, reason", [("empty", "empty file"), ("text", "not decodable"), ("truncated", "truncated"), ("header", "truncated"), ("silent", "no audio samples")])
def test_bad_inputs_raise_one_error_type_with_reason(tmp_path, kind, reason):
    path = write_corrupt_files(tmp_path)[kind]
    with pytest.raises(AudioDecodeError, match=reason) as info:
        decode(str(path), target_rate=8000)
    assert info.value.uri == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="unreadable"):
        decode(str(tmp_path / "gone.wav"))


def test_decode_from_s3(s3_bucket, tmp_path):
    import s3fs

    path = write_speech(tmp_path / "x.flac", seconds=0.5, sample_rate=16000)
    s3fs.S3FileSystem().put(str(path), f"{s3_bucket}/x.flac")
    audio = decode(f"{s3_bucket}/x.flac", target_rate=8000)
    assert audio.samples.shape == (1, 4000)


def test_speech_like_is_deterministic():
    np.testing.assert_array_equal(speech_like(0.2, 8000, seed=1), speech_like(0.2, 8000, seed=1))
