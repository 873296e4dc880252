"""The Whisper-base front end: pinned weights verified, frames at 50 Hz, level-free input, pooled windows."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.audio_factory import speech_like

encoder = pytest.importorskip("ser_core.frontends.encoder")
pytest.importorskip("ctranslate2")

from ser_core.frontends.embeddings import EmbeddingSpec, region_embeddings, window_bounds  # noqa: E402
from ser_core.frontends.features import FeatureSpec  # noqa: E402
from ser_core.frontends.windows import EncoderFrontend  # noqa: E402


@pytest.fixture(scope="module")
def whisper():
    try:
        return encoder.WhisperEncoder()
    except encoder.EncoderUnavailable as err:
        pytest.skip(str(err))


def test_frames_rate_width_and_level_invariance(whisper):
    voice = speech_like(3.0, 8000)
    frames = whisper.frames(voice, 8000)
    assert frames.shape == (150, 512) and np.isfinite(frames).all()
    quiet = whisper.frames(voice * 10 ** (-30 / 20), 8000)
    assert np.corrcoef(frames.ravel(), quiet.ravel())[0, 1] > 0.99  # same up to int8 rounding: level does not reach the model
    other = whisper.frames(speech_like(3.0, 8000, f0=110.0, seed=3), 8000)
    assert np.corrcoef(frames.ravel(), other.ravel())[0, 1] < np.corrcoef(frames.ravel(), quiet.ravel())[0, 1]


def test_long_audio_is_encoded_in_30_s_chunks(whisper):
    frames = whisper.frames(speech_like(31.0, 8000), 8000)
    assert frames.shape == (1550, 512)


def test_joined_weights_are_verified(tmp_path, monkeypatch, whisper):
    folder = encoder.model_dir()
    monkeypatch.setenv("SER_CACHE", str(tmp_path))
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    assert encoder.model_dir() == copy
    with open(copy / "model.bin", "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(encoder.EncoderUnavailable, match="sha256"):
        encoder.model_dir()


def test_fresh_cache_joins_the_two_halves(tmp_path, monkeypatch, whisper):
    monkeypatch.setenv("SER_CACHE", str(tmp_path))
    folder = encoder.model_dir()
    assert folder.parent == tmp_path and (folder / "config.json").exists()
    assert not list(folder.glob("model.bin.tmp-*"))


def test_truncated_encoder_gives_an_earlier_layer(whisper):
    voice = speech_like(2.0, 8000)
    full = whisper.frames(voice, 8000)
    third = encoder.WhisperEncoder(layers=3).frames(voice, 8000)
    assert third.shape == full.shape == (100, 512) and np.isfinite(third).all()
    assert np.abs(third - full).mean() > 0.1
    assert np.array_equal(encoder.WhisperEncoder(layers=6).frames(voice, 8000), full)
    weights = (encoder.model_dir() / "model.bin").read_bytes()
    assert encoder.encoder_truncated(weights, 6) == weights  # the parser keeps every byte of what it keeps


def test_altered_truncated_weights_are_refused(tmp_path, monkeypatch, whisper):
    folder = encoder.model_dir()
    monkeypatch.setenv("SER_CACHE", str(tmp_path))
    shutil.copytree(folder, tmp_path / folder.name)
    truncated = encoder.truncated_model_dir(2)
    assert truncated.parent == tmp_path and not list(truncated.glob("*.tmp-*"))
    with open(truncated / "model.bin", "r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x01")
    with pytest.raises(encoder.EncoderUnavailable, match="sha256 .* is not the pinned") as err:
        encoder.WhisperEncoder(layers=2)
    assert "\n" not in str(err.value)


def test_clip_and_region_windows(whisper):
    spec = EmbeddingSpec()
    frontend = EncoderFrontend(FeatureSpec(), spec, _encoder=whisper)
    silence = np.zeros(4000, np.float32)
    vectors, starts = frontend.utterance_windows(np.concatenate([silence, speech_like(1.0, 8000), silence]))
    assert vectors.shape == (1, 1024) and 0.3 <= starts[0] <= 0.5  # a clip's speech, not its silences, is pooled
    vectors, starts = frontend.utterance_windows(speech_like(6.0, 8000))
    assert len(vectors) == len(window_bounds(300, spec)) == 4
    voice = np.concatenate([np.zeros(8000, np.float32), speech_like(4.0, 8000), np.zeros(8000, np.float32), speech_like(0.5, 8000)])
    regions = np.array([[100, 500], [600, 650]])  # VAD frames of 10 ms: a 4 s region, then a 0.5 s one
    (start_s, end_s, rms_db, pooled), short = region_embeddings(voice, regions, 80, whisper, spec)
    assert start_s.tolist() == [1.0, 2.24, 2.5] and end_s[-1] == pytest.approx(5.0)
    assert pooled.shape == (3, 1024) and (rms_db > -40).all()
    assert short[0].tolist() == [6.0] and short[3].shape == (1, 1024)  # shorter than a window: pooled over what it has
