"""Decoding any supported audio file or URI to float32 samples at the model rate.

Decoding is libsndfile (through soundfile: WAV PCM/mu-law/A-law/float, FLAC, OGG/Vorbis/Opus, MP3),
reading through fsspec so local paths and ``s3://`` URIs behave alike; resampling is soxr.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from ser_core import storage


class AudioDecodeError(Exception):
    """The input could not be turned into audio: empty, truncated, corrupt, not audio, or unreadable."""

    def __init__(self, uri: str, reason: str):
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


@dataclass(frozen=True)
class Audio:
    """Decoded audio: ``samples`` is float32 with shape ``(channels, frames)``."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def channels(self) -> int:
        return self.samples.shape[0]


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample ``samples`` (``(frames,)`` or ``(channels, frames)``) with soxr's high-quality filter."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    if samples.ndim == 1:
        return soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(samples.T), source_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def _wav_data_shortfall(data: bytes) -> int:
    """Bytes missing from a RIFF/WAVE file's ``data`` chunk (0 when complete or not a WAV).

    libsndfile quietly reads what is there when a WAV was cut short; the declared chunk size tells.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 0
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk == b"data":
            available = len(data) - offset - 8
            return size - available if 0 < size < 0xFFFFFFFF and size > available else 0
        offset += 8 + size + (size & 1)
    return 0


def _read(source: io.BytesIO | str, uri: str) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(source) as snd:
            declared = snd.frames
            data = snd.read(dtype="float32", always_2d=True)
            rate = snd.samplerate
    except sf.LibsndfileError as err:
        raise AudioDecodeError(uri, f"not decodable audio ({err.error_string})") from None
    except (RuntimeError, TypeError, ValueError, EOFError) as err:
        raise AudioDecodeError(uri, f"not decodable audio ({err})") from None
    if data.shape[0] == 0:
        raise AudioDecodeError(uri, "no audio samples (empty or header only)")
    if 0 < declared != data.shape[0] and declared < 2**62:
        raise AudioDecodeError(uri, f"truncated: header declares {declared} frames, file holds {data.shape[0]}")
    if not np.isfinite(data).all():
        raise AudioDecodeError(uri, "samples contain NaN or infinity")
    return data.T, rate


def decode(uri: str, target_rate: int | None = None, mono: bool = True, data: bytes | None = None) -> Audio:
    """Decode ``uri`` (a path or fsspec URI; or the given ``data`` bytes, with ``uri`` naming them).

    Parameters
    ----------
    target_rate : resample to this rate (``None`` keeps the file's rate).
    mono : average channels to one; ``False`` keeps them (call recordings are often stereo).

    Raises
    ------
    AudioDecodeError
        For every way the input can fail to be audio, with the reason.
    """
    try:
        if data is None:
            data = storage.read_bytes(uri)
    except (OSError, ValueError) as err:
        raise AudioDecodeError(uri, f"unreadable ({err.__class__.__name__}: {err})") from None
    if not data:
        raise AudioDecodeError(uri, "empty file (0 bytes)")
    shortfall = _wav_data_shortfall(data)
    if shortfall:
        raise AudioDecodeError(uri, f"truncated: WAV data chunk is {shortfall} bytes short of its declared size")
    samples, rate = _read(io.BytesIO(data), uri)
    source_channels = samples.shape[0]
    if mono and source_channels > 1:
        samples = samples.mean(axis=0, keepdims=True)
    if target_rate is not None:
        samples = resample(samples, rate, target_rate)
    return Audio(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=target_rate or rate,
        source_rate=rate,
        source_channels=source_channels,
    )
