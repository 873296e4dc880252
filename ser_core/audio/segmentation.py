"""Where speech is, and how it becomes model windows: one segmentation for training, evaluation, prediction and scoring.

A recording is a call: one or more channels, each one party. :func:`prepare_call` finds each channel's speech
regions with the voice activity detector (:mod:`ser_core.audio.vad`: noise-floor tracking, so a quiet turn counts as
much as a loud one); a front end turns each region into model windows: 2.5 s windows on a 1.25 s hop, and a
region shorter than a window is one window over what it has (never dropped, never padded with silence). Long
regions are processed in chunks whose windows continue one hop grid.

A clip is a one-turn call: :func:`clip_regions` segments it exactly as a call channel is segmented, so ``ser
predict`` on a file, ``ser evaluate`` on a corpus and the training examples of ``ser embed`` / ``ser extract`` see
the same speech, cut the same way, as ``ser score`` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ser_core.audio.decoding import SpooledAudio
from ser_core.audio.vad import VadConfig, channel_energies, detect, frame_levels_db, is_dual_mono, stream_frame_levels
from ser_core.errors import SerError
from ser_core.frontends.features import FeatureSpec, frame_features, windows


@dataclass(frozen=True)
class Segmentation:
    """How speech is found and cut: the VAD's settings, the shortest region scored, the longest chunk processed at once."""

    vad: VadConfig = VadConfig()
    min_region_s: float = 0.0
    max_chunk_s: float = 60.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Segmentation":
        return cls(vad=VadConfig(**values["vad"]), **{k: v for k, v in values.items() if k != "vad"})


class NonFiniteError(SerError, ValueError):
    """Features or probabilities that are not finite numbers (float audio with huge samples, for example)."""


@dataclass
class WindowBatch:
    """Model windows of one channel: ``windows`` ``(n, frames, features)`` and per-window times and level."""

    channel: int
    start_s: np.ndarray
    end_s: np.ndarray
    rms_db: np.ndarray
    windows: np.ndarray


class ChannelSignal:
    """One channel of spooled audio (``channel=None``: the mean of all), sliced by sample range like a 1-D array."""

    def __init__(self, audio: SpooledAudio, channel: int | None):
        self.audio, self.channel = audio, channel

    def __getitem__(self, item: slice) -> np.ndarray:
        block = self.audio.read(item.start, item.stop)
        return block.mean(axis=0) if self.channel is None else block[self.channel]


@dataclass
class PreparedCall:
    """A call ready for windowing: the signal of each scored channel, its speech regions (padded, windowed) and its
    talk regions (unpadded: the time the party speaks), in VAD frames."""

    channels: list[ChannelSignal]
    regions: list[np.ndarray]
    dual_mono: bool
    talk: list[np.ndarray]


def prepare_call(audio: SpooledAudio, spec: FeatureSpec, config: Segmentation = Segmentation()) -> PreparedCall:
    """Scored channels (one, the mean, for mono and dual-mono audio) and their speech regions, read in chunks.

    Raises :class:`NonFiniteError` when the frame levels overflow (float audio with huge samples).
    """
    dual = audio.channels == 2 and is_dual_mono(sum(channel_energies(c) for c in audio.chunks()), config.vad)
    signals = [ChannelSignal(audio, None)] if dual or audio.channels == 1 else [ChannelSignal(audio, c) for c in range(audio.channels)]
    levels = stream_frame_levels(lambda a, b: np.stack([s[a:b] for s in signals]), audio.frames, len(signals), spec)
    if not np.isfinite(levels).all():
        raise NonFiniteError("frame levels are not finite (samples too large?)")
    regions, talk = detect(levels, spec, config.vad)
    return PreparedCall(signals, regions, dual, talk)


def chunk_bounds(start: int, end: int, spec: FeatureSpec, max_chunk_frames: int) -> list[tuple[int, int]]:
    """Split the frame range ``[start, end)`` into chunks whose windows continue one hop grid without repeats.

    Consecutive chunks overlap by ``window - hop`` frames, so the last regular window of a chunk ends flush with
    it and the next chunk's first window is the next hop. A last chunk shorter than a window starts earlier,
    one window before the end, rather than being tiled.
    """
    size, hop = spec.window_frames, spec.window_hop_frames
    step = max(1, (max_chunk_frames - (size - hop)) // hop) * hop
    bounds = []
    a = start
    while True:
        b = min(a + step + size - hop, end)
        if b == end and b - a < size:
            a = max(start, end - size)
        bounds.append((a, b))
        if b >= end:
            return bounds
        a += step


def channel_windows(samples: np.ndarray | ChannelSignal, regions: np.ndarray, spec: FeatureSpec, config: Segmentation) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(start_s, end_s, rms_db, windows)`` for each scored chunk of speech of one channel's ``samples``."""
    hop, rate = spec.hop_length, spec.sample_rate
    frame_s = hop / rate
    rms_column = spec.feature_names.index("rms_db")
    max_chunk = int(config.max_chunk_s / frame_s)
    for region_start, region_end in scored_regions(regions, spec, config):
        for a, b in chunk_bounds(int(region_start), int(region_end), spec, max_chunk):
            frames = frame_features(samples[a * hop : b * hop], spec)[: b - a]
            if not np.isfinite(frames).all():
                raise NonFiniteError("features are not finite (samples too large?)")
            batch, starts = windows(frames, spec)
            start_s = (a + starts) * frame_s
            end_s = start_s + min(spec.window_frames, b - a) * frame_s
            yield start_s, end_s, batch[:, :, rms_column].mean(axis=1), batch


def call_windows(samples: np.ndarray | Sequence[ChannelSignal], regions: list[np.ndarray], spec: FeatureSpec,
                 config: Segmentation) -> Iterator[WindowBatch]:
    """Windows over the speech of every channel of ``samples`` (``(channels, frames)`` or channel signals), one batch
    per chunk; :class:`NonFiniteError` if any feature is not finite."""
    for channel, (channel_samples, channel_regions) in enumerate(zip(samples, regions)):
        for start_s, end_s, rms_db, batch in channel_windows(channel_samples, channel_regions, spec, config):
            yield WindowBatch(channel, start_s, end_s, rms_db, batch)


def speech_seconds(regions: np.ndarray, spec: FeatureSpec) -> float:
    """Total duration of speech ``regions`` in seconds."""
    return float((regions[:, 1] - regions[:, 0]).sum() * spec.hop_length / spec.sample_rate) if len(regions) else 0.0


def scored_regions(regions: np.ndarray, spec: FeatureSpec, config: Segmentation) -> np.ndarray:
    """The ``regions`` (VAD frames) long enough to be scored (``config.min_region_s``)."""
    keep = (regions[:, 1] - regions[:, 0]) * spec.hop_length / spec.sample_rate >= config.min_region_s
    return regions[keep] if len(regions) else regions


def call_speech(samples: np.ndarray, spec: FeatureSpec, config: Segmentation = Segmentation()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Speech and talk regions (VAD frames) of each channel of in-memory ``samples`` ``(channels, frames)`` at
    ``spec.sample_rate``, as :func:`prepare_call` finds them in a spooled call."""
    levels = frame_levels_db(samples, spec)
    if not np.isfinite(levels).all():
        raise NonFiniteError("frame levels are not finite (samples too large?)")
    return detect(levels, spec, config.vad)


def call_regions(samples: np.ndarray, spec: FeatureSpec, config: Segmentation = Segmentation()) -> list[np.ndarray]:
    """Speech regions (VAD frames, padded: what is windowed) of each channel of in-memory ``samples``."""
    return call_speech(samples, spec, config)[0]


def clip_regions(samples: np.ndarray, spec: FeatureSpec, config: Segmentation = Segmentation()) -> np.ndarray:
    """Speech regions (VAD frames) of a mono clip, segmented as a one-turn call.

    >>> spec = FeatureSpec()
    >>> clip_regions(np.zeros(spec.sample_rate, np.float32), spec).shape
    (0, 2)
    """
    return call_regions(samples[np.newaxis], spec, config)[0]
