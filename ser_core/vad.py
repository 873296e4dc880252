"""Energy-based voice activity detection for call recordings, vectorised over whole channels.

Frames follow the feature frames (``spec.hop_length`` hop, centred, ``spec.win_length`` long), so a speech
region ``[start, end)`` in frames is directly a slice of the feature matrix. A frame is speech when its level

* is above an absolute floor (digital silence and faint line noise never count),
* is within ``dynamic_range_db`` of the channel's loud frames (its 99th percentile),
* is ``noise_margin_db`` above the channel's noise floor (its 10th percentile), and
* in multi-channel audio, is within ``crosstalk_db`` of the loudest channel at that frame, so the other
  party's voice leaking into this channel's microphone or line (typically 20-40 dB down) is not speech here.

Runs are then smoothed: gaps shorter than ``min_gap_s`` are bridged (hangover), runs shorter than
``min_speech_s`` are dropped, runs whose level barely moves (less than ``min_modulation_db`` between their
10th and 90th percentile: hum, tones, steady noise; speech rises and falls with every syllable) are dropped,
and the survivors are padded by ``pad_s`` on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ser_core.features import FeatureSpec


@dataclass(frozen=True)
class VadConfig:
    """Thresholds (dB relative to full scale, or relative levels) and durations (seconds) of :func:`speech_regions`."""

    floor_db: float = -50.0
    dynamic_range_db: float = 30.0
    noise_margin_db: float = 10.0
    crosstalk_db: float = 20.0
    min_gap_s: float = 0.3
    min_speech_s: float = 0.2
    min_modulation_db: float = 6.0
    pad_s: float = 0.15


def frame_levels_db(samples: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """RMS level in dBFS of each centred frame, shape ``(channels, 1 + frames // hop)``, from running sums.

    Frame ``i`` covers samples ``[i * hop - win / 2, i * hop + win / 2)``, zero-padded at the edges, like the
    feature frames. Energies are summed over blocks that tile both the hop and the half window, so an hour of
    audio needs one float32 copy per channel and small running sums, not float64 copies of every sample.
    """
    x = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    half, win, hop = spec.win_length // 2, spec.win_length, spec.hop_length
    block = math.gcd(math.gcd(hop, half), win)
    n_frames = 1 + x.shape[1] // hop
    padded = np.zeros(-(-((n_frames - 1) * hop + win) // block) * block, np.float32)
    starts = np.arange(n_frames) * (hop // block)
    levels = np.empty((x.shape[0], n_frames), np.float32)
    for channel, values in enumerate(x):
        padded[half : half + values.size] = values
        energy = np.concatenate([[0.0], np.cumsum(np.square(padded).reshape(-1, block).sum(axis=1, dtype=np.float64))])
        power = (energy[starts + win // block] - energy[starts]) / win
        levels[channel] = 10.0 * np.log10(np.maximum(power, 1e-12))
    return levels


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


def speech_masks(levels_db: np.ndarray, config: VadConfig) -> np.ndarray:
    """Per-frame speech decisions (before smoothing) for ``(channels, frames)`` levels."""
    loud = np.percentile(levels_db, 99, axis=1, keepdims=True)
    noise = np.percentile(levels_db, 10, axis=1, keepdims=True)
    threshold = np.maximum(np.maximum(config.floor_db, loud - config.dynamic_range_db), noise + config.noise_margin_db)
    mask = levels_db > threshold
    if levels_db.shape[0] > 1:
        mask &= levels_db >= levels_db.max(axis=0, keepdims=True) - config.crosstalk_db
    return mask


def smooth(mask: np.ndarray, levels_db: np.ndarray, config: VadConfig, frame_s: float) -> np.ndarray:
    """Speech regions ``(n, 2)`` in frames of one channel from its raw ``mask`` (see the module docstring)."""
    regions = bridge_gaps(runs(mask), int(round(config.min_gap_s / frame_s)))
    regions = regions[regions[:, 1] - regions[:, 0] >= max(1, int(round(config.min_speech_s / frame_s)))]
    if len(regions):
        spread = np.array([np.subtract(*np.percentile(levels_db[a:b], [90, 10])) for a, b in regions])
        regions = regions[spread >= config.min_modulation_db]
    pad = int(round(config.pad_s / frame_s))
    padded = np.clip(regions + np.array([-pad, pad]), 0, mask.size - 1)  # frame n // hop: no region ends after the audio
    return bridge_gaps(padded, 1)


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
    levels = frame_levels_db(samples, spec)
    masks = speech_masks(levels, config)
    frame_s = spec.hop_length / spec.sample_rate
    return [smooth(mask, level, config, frame_s) for mask, level in zip(masks, levels)]
