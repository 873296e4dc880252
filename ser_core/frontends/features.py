"""Frame-level acoustic features and the fixed-length windows the CNN sees.

A :class:`FeatureSpec` fixes everything that changes the numbers; its :attr:`~FeatureSpec.version` (a hash
of the spec) is stored with every feature row and every model bundle, so features and models made under
different specs are never mixed.

Each frame (25 ms, 10 ms hop) holds log-mel energies, MFCCs and their deltas, zero-crossing rate and
RMS energy in dB. The default rate is 8 kHz: the scoring job's input is telephone audio, and a model that
never sees energy above 4 kHz behaves the same on narrowband calls and wideband corpora.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass

import librosa
import numpy as np


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines the feature numbers (hashable; see :attr:`version`)."""

    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int = 200
    hop_length: int = 80
    n_mels: int = 40
    fmin: float = 50.0
    fmax: float = 4000.0
    n_mfcc: int = 20
    deltas: bool = True
    logmel: bool = True
    window_seconds: float = 2.5
    window_hop_seconds: float = 1.25
    trim_top_db: float = 30.0

    @property
    def version(self) -> str:
        """Short content hash of the spec: equal specs, equal versions."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return "fs-" + hashlib.sha256(payload).hexdigest()[:12]

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature columns of a frame, in order."""
        names = [f"logmel_{i}" for i in range(self.n_mels)] if self.logmel else []
        names += [f"mfcc_{i}" for i in range(self.n_mfcc)]
        if self.deltas:
            names += [f"delta_mfcc_{i}" for i in range(self.n_mfcc)]
        return names + ["zcr", "rms_db"]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def window_frames(self) -> int:
        """Frames in one model window."""
        return int(round(self.window_seconds * self.sample_rate / self.hop_length))

    @property
    def window_hop_frames(self) -> int:
        return int(round(self.window_hop_seconds * self.sample_rate / self.hop_length))

    @property
    def window_shape(self) -> tuple[int, int]:
        """``(frames, features)`` of one window."""
        return self.window_frames, self.n_features

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureSpec":
        return cls(**values)


@functools.lru_cache(maxsize=8)
def mel_basis(spec: FeatureSpec) -> np.ndarray:
    """The spec's mel filterbank, ``(n_mels, 1 + n_fft // 2)``, built once per process."""
    return librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax)


def frame_features(samples: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Frame-level features of mono ``samples`` at ``spec.sample_rate``, shape ``(frames, spec.n_features)``.

    One STFT feeds the mel, MFCC and RMS computations; the mel projection is a plain matrix product with a
    cached filterbank (``librosa.feature.melspectrogram`` rebuilds the filterbank and uses a slow einsum).

    Examples
    --------
    >>> spec = FeatureSpec()
    >>> frame_features(np.zeros(8000, dtype=np.float32), spec).shape
    (101, 82)
    """
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"frame_features expects mono samples, got shape {y.shape}")
    if y.size < spec.win_length:
        y = np.pad(y, (0, spec.win_length - y.size))
    magnitude = np.abs(
        librosa.stft(y, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length, center=True)
    )
    mel = mel_basis(spec) @ (magnitude * magnitude)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=spec.n_mfcc)
    blocks = [log_mel] if spec.logmel else []
    blocks.append(mfcc)
    if spec.deltas:
        blocks.append(librosa.feature.delta(mfcc, width=9, mode="nearest"))
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=spec.win_length, hop_length=spec.hop_length, center=True)
    rms = librosa.feature.rms(S=magnitude, frame_length=spec.n_fft, hop_length=spec.hop_length)
    blocks.append(zcr[:, : magnitude.shape[1]])
    blocks.append(20.0 * np.log10(np.maximum(rms, 1e-5)))
    return np.ascontiguousarray(np.concatenate(blocks, axis=0).T, dtype=np.float32)


def window_starts(n_frames: int, spec: FeatureSpec) -> list[int]:
    """First frame of each window over ``n_frames`` frames: hop-spaced, the last one flush with the end."""
    size, hop = spec.window_frames, spec.window_hop_frames
    if n_frames <= size:
        return [0]
    starts = list(range(0, n_frames - size + 1, hop))
    if starts[-1] + size < n_frames:
        starts.append(n_frames - size)
    return starts


def windows(frames: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Cut frame features into model windows.

    Returns ``(windows, starts)``: ``windows`` has shape ``(n, window_frames, n_features)`` and ``starts`` the
    first frame of each. Inputs shorter than one window are tiled (wrapped) to full length, so a short
    utterance fills its window with its own speech rather than with silence.
    """
    size = spec.window_frames
    if frames.shape[0] < size:
        frames = np.pad(frames, ((0, size - frames.shape[0]), (0, 0)), mode="wrap")
    starts = np.asarray(window_starts(frames.shape[0], spec), dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(frames, size, axis=0)  # (n, F, size)
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1)), starts


def trim_silence(samples: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Drop leading and trailing silence (more than ``spec.trim_top_db`` below the peak)."""
    trimmed, _ = librosa.effects.trim(samples, top_db=spec.trim_top_db, frame_length=spec.n_fft, hop_length=spec.hop_length)
    return trimmed if trimmed.size >= spec.win_length else samples


def utterance_windows(samples: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed, windowed features for one labelled utterance: ``(windows, start_seconds)``."""
    frames = frame_features(trim_silence(samples, spec), spec)
    batch, starts = windows(frames, spec)
    return batch, starts * spec.hop_length / spec.sample_rate
