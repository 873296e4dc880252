"""Decoding real formats, rates and channel layouts, and clear errors for everything that is not audio."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_core.audio.decoding import AudioDecodeError, AudioReader, SpooledAudio, decode, resample
from ser_core.storage import BoundedReader
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


def test_only_regular_files_are_inputs_and_nothing_else_is_opened_for_reading(tmp_path):
    os.mkfifo(tmp_path / "fifo.wav")  # opening it for reading blocks until a writer comes: none will
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "socket.wav"))
        (tmp_path / "device.wav").symlink_to("/dev/zero")  # endless
        (tmp_path / "folder.wav").mkdir()
        reasons: dict[str, str] = {}

        def decode_all() -> None:
            for name in ("fifo", "socket", "device", "folder"):
                try:
                    decode(str(tmp_path / f"{name}.wav"))
                except AudioDecodeError as err:
                    reasons[name] = err.reason

        worker = threading.Thread(target=decode_all, daemon=True)
        worker.start()
        worker.join(20)
        stuck = worker.is_alive()
        if stuck:  # let a reader blocked on the FIFO go before failing
            os.close(os.open(tmp_path / "fifo.wav", os.O_WRONLY | os.O_NONBLOCK))
    assert not stuck, f"decoding blocked; got only {reasons}"
    assert reasons == {"fifo": "not a regular file: fifo", "socket": "not a regular file: socket",
                       "device": "not a regular file: character device", "folder": "not a regular file: directory"}


def test_a_read_that_stalls_gives_up_after_the_timeout():
    read_end, write_end = os.pipe()  # a pipe whose writer sends a little and then nothing, as a hung mount does
    os.write(write_end, b"RIFF")
    with open(read_end, "rb", buffering=0) as handle:
        reader = BoundedReader(handle, timeout_s=0.5)
        assert reader.read(100) == b"RIFF" and reader.stalled is None
        started = time.monotonic()
        assert reader.read(100) == b""  # end of file for the decoder instead of a wait without end
        assert 0.4 < time.monotonic() - started < 5
        assert reader.stalled == "a read stalled for more than 0.5 s"
        assert reader.read(100) == b""
        os.close(write_end)  # lets the helper thread's read end


def test_decode_from_s3(s3_bucket, tmp_path):
    import s3fs

    path = write_speech(tmp_path / "x.flac", seconds=0.5, sample_rate=16000)
    s3fs.S3FileSystem().put(str(path), f"{s3_bucket}/x.flac")
    audio = decode(f"{s3_bucket}/x.flac", target_rate=8000)
    assert audio.samples.shape == (1, 4000)


def test_speech_like_is_deterministic():
    np.testing.assert_array_equal(speech_like(0.2, 8000, seed=1), speech_like(0.2, 8000, seed=1))


def declare_huge(flac: Path) -> Path:
    """Patch a FLAC's STREAMINFO to declare 2^36 - 1 samples (what a hostile or broken header can claim)."""
    data = bytearray(flac.read_bytes())
    fields = int.from_bytes(data[18:26], "big") | ((1 << 36) - 1)  # the low 36 bits are the total sample count
    data[18:26] = fields.to_bytes(8, "big")
    flac.write_bytes(bytes(data))
    return flac


def test_a_header_declaring_too_many_frames_is_refused_before_reading(tmp_path):
    path = declare_huge(write_speech(tmp_path / "huge.flac", seconds=1.0, sample_rate=16000))
    with pytest.raises(AudioDecodeError, match="header declares .* over the 8 h limit"):
        decode(str(path), target_rate=8000)


def test_files_over_the_length_limit_are_refused(tmp_path):
    path = write_speech(tmp_path / "long.wav", seconds=3.0, sample_rate=8000)
    with pytest.raises(AudioDecodeError, match="too long"):
        decode(str(path), max_seconds=2.0)


def test_blocks_are_bounded_and_add_up_to_the_whole_file(tmp_path):
    path = write_speech(tmp_path / "call.wav", seconds=20.0, sample_rate=48000, channels=2)
    whole = decode(str(path), target_rate=8000, mono=False).samples
    with AudioReader(str(path), target_rate=8000, block_frames=4800) as reader:
        blocks = list(reader.blocks())
    assert max(b.shape[1] for b in blocks) <= 2 * 4800 * 8000 // 48000 and len(blocks) > 20  # the resampler holds back a little
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)
    expected = soxr.resample(sf.read(str(path), dtype="float32")[0], 48000, 8000, quality="HQ").T
    np.testing.assert_allclose(whole, expected, atol=1e-6)  # streaming resampling = one-shot resampling


def test_spooled_audio_reads_back_any_range(tmp_path):
    path = write_speech(tmp_path / "call.flac", seconds=5.0, sample_rate=16000, channels=2)
    whole = decode(str(path), target_rate=8000, mono=False).samples
    with AudioReader(str(path), target_rate=8000, block_frames=3000) as reader, SpooledAudio(reader) as audio:
        assert (audio.frames, audio.channels, audio.source_rate) == (whole.shape[1], 2, 16000)
        np.testing.assert_array_equal(audio.read(-10, 7), whole[:, :7])
        np.testing.assert_array_equal(audio.read(12345, 23456), whole[:, 12345:23456])
        np.testing.assert_array_equal(audio.read(whole.shape[1] - 5, whole.shape[1] + 50), whole[:, -5:])
        np.testing.assert_array_equal(np.concatenate(list(audio.chunks(999)), axis=1), whole)
