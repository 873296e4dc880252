"""Decoding any supported audio file or URI to float32 samples at the model rate.

Decoding is libsndfile (through soundfile: WAV PCM/mu-law/A-law/float, FLAC, OGG/Vorbis/Opus, MP3),
reading through fsspec so local paths and ``s3://`` URIs behave alike; resampling is soxr. Files are read
block by block (:class:`AudioReader`, with soxr's streaming resampler), so a long file costs its blocks, not
its length; :func:`decode` collects the blocks for callers that want the whole signal.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf
import soxr

from ser_core import storage
from ser_core.errors import SerError

MAX_SECONDS = 8 * 3600.0
"""Longest file accepted by default (declared in the header or found while decoding)."""
MAX_CHANNELS = 8
BLOCK_FRAMES = 1 << 16
"""Frames read per block at the file's rate (1.4 s at 48 kHz)."""


class AudioDecodeError(SerError):
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


def _wav_data_shortfall(handle: BinaryIO, size: int) -> int:
    """Bytes missing from a RIFF/WAVE file's ``data`` chunk (0 when complete or not a WAV), read by seeking.

    libsndfile quietly reads what is there when a WAV was cut short; the declared chunk size tells.
    """
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    offset = 12
    while offset + 8 <= size:
        handle.seek(offset)
        header = handle.read(8)
        chunk, length = header[:4], int.from_bytes(header[4:8], "little")
        if chunk == b"data":
            available = size - offset - 8
            return length - available if 0 < length < 0xFFFFFFFF and length > available else 0
        offset += 8 + length + (length & 1)
    return 0


class AudioReader:
    """Decodes one file block by block, resampled on the fly, so memory does not grow with the file's length.

    Use as a context manager; :meth:`blocks` yields float32 ``(channels, frames)`` blocks at ``target_rate``
    (``None``: the file's rate). Everything that makes the input unusable raises :class:`AudioDecodeError`:
    not a regular file (a FIFO, socket or device is never opened for reading), unreadable, a read that stalls for
    more than ``read_timeout_s``, empty, truncated, not audio, non-finite samples, more than ``max_channels``
    channels, or longer than ``max_seconds`` (declared in the header, or found while decoding).
    """

    def __init__(self, uri: str, target_rate: int | None = None, max_seconds: float = MAX_SECONDS,
                 max_channels: int = MAX_CHANNELS, block_frames: int = BLOCK_FRAMES,
                 read_timeout_s: float = storage.READ_TIMEOUT_S):
        self.uri, self.target_rate, self.max_seconds = uri, target_rate, max_seconds
        self.max_channels, self.block_frames, self.read_timeout_s = max_channels, block_frames, read_timeout_s
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "AudioReader":
        try:
            handle, size = storage.open_input(self.uri, self.read_timeout_s)
            self._handle = self._stack.enter_context(handle)
        except storage.NotRegularFile as err:
            raise AudioDecodeError(self.uri, str(err)) from None
        except (OSError, ValueError) as err:
            raise AudioDecodeError(self.uri, f"unreadable ({err.__class__.__name__}: {err})") from None
        try:
            self._open(self._handle, size)
        except AudioDecodeError as err:
            self._stack.close()
            raise self._stalled() or err from None
        except BaseException:
            self._stack.close()
            raise
        return self

    def _stalled(self) -> AudioDecodeError | None:
        """The error to report when a read of this input stalled (whatever the decoder made of the missing data)."""
        reason = self._handle.raw.stalled
        return AudioDecodeError(self.uri, reason) if reason else None

    def __exit__(self, *_exc) -> None:
        self._stack.close()

    def _open(self, handle: BinaryIO, size: int) -> None:
        if not size:
            raise AudioDecodeError(self.uri, "empty file (0 bytes)")
        shortfall = _wav_data_shortfall(handle, size)
        if shortfall:
            raise AudioDecodeError(self.uri, f"truncated: WAV data chunk is {shortfall} bytes short of its declared size")
        handle.seek(0)
        try:
            self.sound = self._stack.enter_context(sf.SoundFile(handle))
        except sf.LibsndfileError as err:
            raise AudioDecodeError(self.uri, f"not decodable audio ({err.error_string})") from None
        except (RuntimeError, TypeError, ValueError, EOFError) as err:
            raise AudioDecodeError(self.uri, f"not decodable audio ({err})") from None
        self.source_rate, self.source_channels = self.sound.samplerate, self.sound.channels
        self.declared_frames = self.sound.frames if 0 < self.sound.frames < 2**62 else 0
        if self.source_channels > self.max_channels:
            raise AudioDecodeError(self.uri, f"{self.source_channels} channels, more than the {self.max_channels} allowed")
        if self.declared_frames > self.max_seconds * self.source_rate:
            raise AudioDecodeError(self.uri, f"too long: the header declares {self.declared_frames / self.source_rate / 3600:.1f} h, "
                                             f"over the {self.max_seconds / 3600:g} h limit per file")

    @property
    def sample_rate(self) -> int:
        return self.target_rate or self.source_rate

    def blocks(self) -> Iterator[np.ndarray]:
        """The audio as consecutive ``(channels, frames)`` float32 blocks at :attr:`sample_rate`."""
        stream = None
        if self.target_rate and self.target_rate != self.source_rate:
            stream = soxr.ResampleStream(self.source_rate, self.target_rate, self.source_channels, dtype="float32", quality="HQ")
        read = 0
        while True:
            block = self._read_block()
            read += len(block)
            if read > self.max_seconds * self.source_rate:
                raise AudioDecodeError(self.uri, f"too long: over the {self.max_seconds / 3600:g} h limit per file")
            last = len(block) == 0
            out = stream.resample_chunk(block, last=last) if stream is not None else block
            if len(out):
                yield np.ascontiguousarray(out.T)
            if last:
                break
        if read == 0:
            raise AudioDecodeError(self.uri, "no audio samples (empty or header only)")
        if self.declared_frames and self.declared_frames != read:
            raise AudioDecodeError(self.uri, f"truncated: header declares {self.declared_frames} frames, file holds {read}")

    def _read_block(self) -> np.ndarray:
        try:
            block = self.sound.read(self.block_frames, dtype="float32", always_2d=True)
        except sf.LibsndfileError as err:
            raise self._stalled() or AudioDecodeError(self.uri, f"not decodable audio ({err.error_string})") from None
        except (RuntimeError, ValueError, EOFError) as err:
            raise self._stalled() or AudioDecodeError(self.uri, f"not decodable audio ({err})") from None
        stalled = self._stalled()
        if stalled:
            raise stalled
        if not np.isfinite(block).all():
            raise AudioDecodeError(self.uri, "samples contain NaN or infinity")
        return block


class SpooledAudio:
    """Audio from an :class:`AudioReader` spooled to a local temporary file, read back by sample range.

    Memory holds one block at a time; the disk holds the decoded signal (float32 at the reader's rate: 230 MB per
    hour of 8 kHz stereo). Explicit reads (no memory map) keep it out of the process's resident memory.
    """

    def __init__(self, reader: AudioReader, folder: str | None = None):
        self.sample_rate, self.source_rate, self.channels = reader.sample_rate, reader.source_rate, reader.source_channels
        self._file = tempfile.TemporaryFile(prefix="ser-audio-", dir=folder)
        self.frames = 0
        for block in reader.blocks():
            self._file.write(np.ascontiguousarray(block.T).tobytes())
            self.frames += block.shape[1]

    def __enter__(self) -> "SpooledAudio":
        return self

    def __exit__(self, *_exc) -> None:
        self._file.close()

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` (clipped to the audio) as float32 ``(channels, frames)``."""
        start, end = max(0, start), min(self.frames, end)
        width = 4 * self.channels
        self._file.seek(start * width)
        data = self._file.read(max(0, end - start) * width)
        return np.frombuffer(data, np.float32).reshape(-1, self.channels).T

    def chunks(self, frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The whole signal again, as consecutive ``(channels, frames)`` chunks."""
        for start in range(0, self.frames, frames):
            yield self.read(start, start + frames)


def decode(uri: str, target_rate: int | None = None, mono: bool = True, max_seconds: float = MAX_SECONDS) -> Audio:
    """Decode all of ``uri`` (a path or fsspec URI) into memory; see :class:`AudioReader` for long files.

    Parameters
    ----------
    target_rate : resample to this rate (``None`` keeps the file's rate).
    mono : average channels to one; ``False`` keeps them (call recordings are often stereo).
    max_seconds : longer files are refused.

    Raises
    ------
    AudioDecodeError
        For every way the input can fail to be audio, with the reason (running out of memory included).
    """
    try:
        with AudioReader(uri, target_rate, max_seconds) as reader:
            blocks = [b.mean(axis=0, keepdims=True) if mono else b for b in reader.blocks()]
            samples = np.concatenate(blocks, axis=1)
            return Audio(samples=samples, sample_rate=reader.sample_rate, source_rate=reader.source_rate,
                         source_channels=reader.source_channels)
    except MemoryError:
        raise AudioDecodeError(uri, "too large to decode in memory") from None
