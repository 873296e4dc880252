"""Energy-based voice activity detection for call recordings, vectorised over whole channels.

Frames follow the feature frames (``spec.hop_length`` hop, centred, ``spec.win_length`` long), so a speech
region ``[start, end)`` in frames is directly a slice of the feature matrix. Every decision is relative to the
line's **noise floor**, tracked per channel (the quietest ``noise_smooth_s`` stretch within ``noise_window_s``:
minimum statistics), never to how loud the channel's loudest turn is, so a customer who speaks 15 dB softer than
the rest of the call is found as surely as a loud one. On levels averaged over ``level_smooth_s``:

* a run of frames ``continue_db`` or more above the noise floor, with gaps under ``min_gap_s`` bridged, is a
  candidate; it is speech when it reaches ``start_db`` above the floor for ``min_peak_s`` (hysteresis) and holds
  ``min_speech_s`` of unsmoothed frames above ``continue_db`` (a click is not speech);
* digital silence never counts (``floor_db``);
* in multi-channel audio a frame more than ``crosstalk_db`` below the loudest channel at that frame is the other
  party's voice leaking into this line (typically 20-40 dB down), not speech here;
* runs whose level barely moves (less than ``min_modulation_db`` between their 10th and 90th percentile: hum,
  tones, steady noise; speech rises and falls with every syllable) are dropped;
* each region loses leading and trailing frames more than ``edge_db`` below its own loudest frame (a loud turn's
  decay), and is then padded by ``pad_s`` before and ``hangover_s`` after (what is windowed);
* the **talk** regions (how long a party speaks) are the same regions unpadded, each from its first to its last
  frame whose own level (unsmoothed) is above ``continue_db``: neither the padding nor the smoothing's reach counts.

Measured against frame-level truth per emotion class in ``bench/vad.py``.

Stereo whose two channels carry the same signal (dual mono: their difference ``dual_mono_db`` or more below
their level) has no second party to tell apart; :func:`is_dual_mono` lets the scorer treat it as mono.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.ndimage

from ser_core.frontends.features import FeatureSpec


@dataclass(frozen=True)
class VadConfig:
    """Thresholds (dB) and durations (seconds) of :func:`speech_regions`; see the module docstring."""

    floor_db: float = -70.0
    noise_window_s: float = 20.0
    noise_smooth_s: float = 0.2
    level_smooth_s: float = 0.1
    start_db: float = 9.0
    continue_db: float = 3.0
    min_peak_s: float = 0.05
    crosstalk_db: float = 15.0
    min_gap_s: float = 0.5
    min_speech_s: float = 0.2
    min_modulation_db: float = 6.0
    edge_db: float = 35.0
    pad_s: float = 0.05
    hangover_s: float = 0.1
    dual_mono_db: float = -30.0


def _levels(padded: np.ndarray, n_frames: int, spec: FeatureSpec) -> np.ndarray:
    """dB levels of ``n_frames`` frames (``hop`` apart, ``win`` long) of one channel, the first starting at ``padded[0]``.

    Energies are summed over blocks that tile both the hop and the half window, so the running sums are small
    and no float64 copy of every sample is made.
    """
    half, win, hop = spec.win_length // 2, spec.win_length, spec.hop_length
    block = math.gcd(math.gcd(hop, half), win)
    length = -(-((n_frames - 1) * hop + win) // block) * block
    values = np.zeros(length, np.float32)
    values[: min(length, padded.size)] = padded[:length]
    energy = np.concatenate([[0.0], np.cumsum(np.square(values).reshape(-1, block).sum(axis=1, dtype=np.float64))])
    starts = np.arange(n_frames) * (hop // block)
    power = (energy[starts + win // block] - energy[starts]) / win
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def stream_frame_levels(read: Callable[[int, int], np.ndarray], n_samples: int, channels: int, spec: FeatureSpec,
                        chunk_frames: int = 60_000) -> np.ndarray:
    """RMS level in dBFS of each centred frame, ``(channels, 1 + n_samples // hop)``, reading the audio in chunks.

    ``read(start, end)`` returns samples ``[start, end)`` as ``(channels, end - start)``. Frame ``i`` covers samples
    ``[i * hop - win / 2, i * hop + win / 2)``, zero-padded at the edges, like the feature frames; memory is one
    chunk of about ``chunk_frames`` frames plus the levels themselves.
    """
    half, win, hop = spec.win_length // 2, spec.win_length, spec.hop_length
    n_frames = 1 + n_samples // hop
    levels = np.empty((channels, n_frames), np.float32)
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        s0, s1 = f0 * hop - half, (f1 - 1) * hop + win - half
        segment = np.zeros((channels, s1 - s0), np.float32)
        a, b = max(0, s0), min(n_samples, s1)
        if b > a:
            segment[:, a - s0 : b - s0] = read(a, b)
        for channel in range(channels):
            levels[channel, f0:f1] = _levels(segment[channel], f1 - f0, spec)
    return levels


def frame_levels_db(samples: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """:func:`stream_frame_levels` of in-memory ``samples`` (``(frames,)`` or ``(channels, frames)``)."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    return stream_frame_levels(lambda a, b: x[:, a:b], x.shape[1], x.shape[0], spec)


def channel_energies(block: np.ndarray) -> np.ndarray:
    """``[energy of left - right, mean energy of the channels]`` of a stereo ``(2, frames)`` block, to be summed."""
    left, right = block[0].astype(np.float64), block[1].astype(np.float64)
    return np.array([np.square(left - right).sum(), 0.5 * (np.square(left).sum() + np.square(right).sum())])


def is_dual_mono(energies: np.ndarray, config: VadConfig) -> bool:
    """Whether summed :func:`channel_energies` show one signal on both channels (their difference is
    ``config.dual_mono_db`` or more below the channels' level): such a call is scored as mono."""
    difference, level = energies
    return level > 0 and difference <= level * 10 ** (config.dual_mono_db / 10)


def runs(mask: np.ndarray) -> np.ndarray:
    """``(n, 2)`` array of ``[start, end)`` index pairs of the True runs of a 1-D boolean ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def bridge_gaps(regions: np.ndarray, max_gap: int) -> np.ndarray:
    """Merge consecutive regions separated by fewer than ``max_gap`` frames (overlapping ones always merge)."""
    if len(regions) < 2:
        return regions
    keep_gap = regions[1:, 0] - regions[:-1, 1] >= max_gap
    starts = regions[np.concatenate([[True], keep_gap]), 0]
    ends = regions[np.concatenate([keep_gap, [True]]), 1]
    return np.stack([starts, ends], axis=1)


def smoothed_levels(levels_db: np.ndarray, seconds: float, frame_s: float) -> np.ndarray:
    """Levels (dB) averaged in power over ``seconds`` around each frame."""
    size = max(1, int(round(seconds / frame_s)))
    power = scipy.ndimage.uniform_filter1d(np.power(10.0, levels_db / 10), size, axis=1, mode="nearest")
    return 10 * np.log10(np.maximum(power, 1e-12))


def noise_floor(levels_db: np.ndarray, config: VadConfig, frame_s: float) -> np.ndarray:
    """Each frame's noise floor per channel: the quietest ``noise_smooth_s`` stretch within ``noise_window_s`` around
    it (minimum statistics), never above the channel's 10th percentile. Speech levels play no part, so a quiet
    turn is judged against the line's noise, not against the loudest turn."""
    smoothed = smoothed_levels(levels_db, config.noise_smooth_s, frame_s)
    local = scipy.ndimage.minimum_filter1d(smoothed, max(1, int(round(config.noise_window_s / frame_s))), axis=1, mode="nearest")
    return np.minimum(local, np.percentile(smoothed, 10, axis=1, keepdims=True))


def speech_masks(levels_db: np.ndarray, config: VadConfig, frame_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame speech decisions (before padding) for ``(channels, frames)`` levels: runs of smoothed level
    ``continue_db`` above the noise floor, gaps under ``min_gap_s`` bridged, that reach ``start_db`` above it for
    ``min_peak_s`` and hold at least ``min_speech_s`` of unsmoothed frames above ``continue_db`` (a click widened by
    smoothing is not speech). Also returns those unsmoothed frames (the voice itself, not the smoothing's reach)."""
    noise = noise_floor(levels_db, config, frame_s)
    smoothed = smoothed_levels(levels_db, config.level_smooth_s, frame_s)
    floor = np.maximum(config.floor_db, noise + config.continue_db)
    audible, raw_audible = smoothed > floor, levels_db > floor
    strong = smoothed > np.maximum(config.floor_db, noise + config.start_db)
    if levels_db.shape[0] > 1:
        own = smoothed >= smoothed.max(axis=0, keepdims=True) - config.crosstalk_db  # a leak's syllable dips follow its source
        audible &= own
        strong &= own
    voiced = raw_audible & audible
    min_peak, min_raw, min_gap = (max(1, int(round(s / frame_s))) for s in (config.min_peak_s, config.min_speech_s, config.min_gap_s))
    masks = np.zeros_like(audible)
    for channel in range(len(audible)):
        peaks, raw = (np.concatenate([[0], np.cumsum(m[channel])]) for m in (strong, voiced))
        for a, b in bridge_gaps(runs(audible[channel]), min_gap):
            masks[channel, a:b] = peaks[b] - peaks[a] >= min_peak and raw[b] - raw[a] >= min_raw
    return masks, voiced


def trim_edges(regions: np.ndarray, levels_db: np.ndarray, edge_db: float) -> np.ndarray:
    """Each region without its leading and trailing frames more than ``edge_db`` below the region's own loudest
    frame (the decay of a loud turn is not speech; a quiet turn keeps all it has).

    >>> trim_edges(np.array([[0, 5]]), np.array([-60.0, -20.0, -10.0, -30.0, -50.0]), 35.0).tolist()
    [[1, 4]]
    """
    trimmed = []
    for a, b in regions:
        loud = np.flatnonzero(levels_db[a:b] >= levels_db[a:b].max() - edge_db)
        trimmed.append([a + loud[0], a + loud[-1] + 1])
    return np.array(trimmed, dtype=regions.dtype).reshape(-1, 2)


def unpadded_regions(mask: np.ndarray, levels_db: np.ndarray, config: VadConfig, frame_s: float) -> np.ndarray:
    """Speech regions ``(n, 2)`` in frames of one channel from its raw ``mask``, before padding (see the module docstring)."""
    regions = bridge_gaps(runs(mask), int(round(config.min_gap_s / frame_s)))
    regions = regions[regions[:, 1] - regions[:, 0] >= max(1, int(round(config.min_speech_s / frame_s)))]
    if len(regions):
        spread = np.array([np.subtract(*np.percentile(levels_db[a:b], [90, 10])) for a, b in regions])
        regions = trim_edges(regions[spread >= config.min_modulation_db], levels_db, config.edge_db)
    return regions


def padded(regions: np.ndarray, config: VadConfig, frame_s: float, n_frames: int) -> np.ndarray:
    """``regions`` padded ``pad_s`` before and ``hangover_s`` after, within the audio, overlaps merged."""
    pad = np.array([-round(config.pad_s / frame_s), round(config.hangover_s / frame_s)], dtype=np.int64)
    return bridge_gaps(np.clip(regions + pad, 0, n_frames - 1), 1)  # frame n // hop: no region ends after the audio


def tightened(regions: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Each region from its first to its last ``voiced`` frame (the level smoothing's reach removed).

    >>> tightened(np.array([[0, 6]]), np.array([0, 0, 1, 0, 1, 0, 0], bool)).tolist()
    [[2, 5]]
    """
    out = []
    for a, b in regions:
        inside = np.flatnonzero(voiced[a:b])
        if len(inside):
            out.append([a + inside[0], a + inside[-1] + 1])
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def detect(levels: np.ndarray, spec: FeatureSpec, config: VadConfig = VadConfig()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per channel, from its frame levels (:func:`stream_frame_levels`): the speech regions that are windowed
    (padded) and the **talk** regions (unpadded, each from its first to its last voiced frame): the time the party
    speaks, pauses under ``min_gap_s`` included."""
    frame_s = spec.hop_length / spec.sample_rate
    masks, voiced = speech_masks(levels, config, frame_s)
    found = [unpadded_regions(mask, level, config, frame_s) for mask, level in zip(masks, levels)]
    return ([padded(r, config, frame_s, levels.shape[1]) for r in found],
            [tightened(r, v) for r, v in zip(found, voiced)])


def regions_from_levels(levels: np.ndarray, spec: FeatureSpec, config: VadConfig = VadConfig()) -> list[np.ndarray]:
    """Speech regions (padded, to be windowed) of each channel from its frame levels (:func:`stream_frame_levels`)."""
    return detect(levels, spec, config)[0]


def speech_regions(samples: np.ndarray, spec: FeatureSpec, config: VadConfig = VadConfig()) -> list[np.ndarray]:
    """Speech regions of each channel of ``samples`` (``(channels, frames)`` at ``spec.sample_rate``).

    Returns one ``(n, 2)`` int array of ``[start, end)`` feature-frame indices per channel.

    Examples
    --------
    >>> spec = FeatureSpec()
    >>> silence = np.zeros((2, spec.sample_rate), np.float32)
    >>> [len(r) for r in speech_regions(silence, spec)]
    [0, 0]
    """
    return regions_from_levels(frame_levels_db(samples, spec), spec, config)
