"""Seeded waveform augmentation: noise at an SNR, pitch shift, time stretch, gain and a telephone channel.

Every function takes and returns mono float32 samples. :func:`augment_copy` draws a chain of them for one
augmented copy from a generator seeded by the utterance id and copy number, so reruns reproduce the same
copies on any worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.signal

from ser_core.audio import resample


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Add ``colour`` (``white`` or ``pink``) noise at ``snr_db`` relative to the signal's mean power."""
    noise = rng.standard_normal(samples.size).astype(np.float32)
    if colour == "pink":
        spectrum = np.fft.rfft(noise)
        spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
        noise = np.fft.irfft(spectrum, n=samples.size).astype(np.float32)
    elif colour != "white":
        raise ValueError(f"unknown noise colour {colour!r}")
    signal_power = float(np.mean(samples**2)) or 1e-10
    noise_power = float(np.mean(noise**2)) or 1e-10
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (samples + scale * noise).astype(np.float32)


def pitch_shift(samples: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping duration (librosa's phase vocoder + soxr)."""
    return librosa.effects.pitch_shift(samples, sr=sample_rate, n_steps=semitones, res_type="soxr_hq").astype(np.float32)


def time_stretch(samples: np.ndarray, rate: float) -> np.ndarray:
    """Speed up (``rate`` > 1) or slow down without changing pitch."""
    return librosa.effects.time_stretch(samples, rate=rate).astype(np.float32)


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels, clipped to [-1, 1]."""
    return np.clip(samples * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def telephone(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """A narrowband telephone channel: 300-3400 Hz band-pass, 8 kHz, 8-bit mu-law (G.711), back to ``sample_rate``."""
    narrow = resample(samples, sample_rate, 8000)
    sos = scipy.signal.butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    narrow = scipy.signal.sosfilt(sos, narrow).astype(np.float32)
    peak = float(np.max(np.abs(narrow))) or 1.0
    coded = librosa.mu_expand(librosa.mu_compress(narrow / peak, mu=255, quantize=True), mu=255, quantize=True) * peak
    return resample(coded.astype(np.float32), 8000, sample_rate)


@dataclass(frozen=True)
class AugmentPolicy:
    """How augmented copies are drawn: each transform is applied with its probability, at least one per copy."""

    noise_p: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    pitch_p: float = 0.4
    semitones: tuple[float, float] = (-3.0, 3.0)
    stretch_p: float = 0.3
    stretch_rate: tuple[float, float] = (0.85, 1.15)
    gain_p: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)
    telephone_p: float = 0.4
    seed: int = 0


def _rng(policy: AugmentPolicy, key: str, copy: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{policy.seed}:{key}:{copy}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augment_copy(
    samples: np.ndarray, sample_rate: int, policy: AugmentPolicy, key: str, copy: int
) -> tuple[np.ndarray, str]:
    """Augmented copy number ``copy`` of the utterance ``key``: the samples and a description (``pitch+2.1|noise20``)."""
    rng = _rng(policy, key, copy)
    chosen = {
        name: rng.random() < p
        for name, p in (
            ("pitch", policy.pitch_p),
            ("stretch", policy.stretch_p),
            ("telephone", policy.telephone_p),
            ("gain", policy.gain_p),
            ("noise", policy.noise_p),
        )
    }
    if not any(chosen.values()):
        chosen[["pitch", "stretch", "telephone", "gain", "noise"][int(rng.integers(5))]] = True
    steps: list[str] = []
    y = samples
    if chosen["pitch"]:
        semitones = float(rng.uniform(*policy.semitones))
        y = pitch_shift(y, sample_rate, semitones)
        steps.append(f"pitch{semitones:+.1f}")
    if chosen["stretch"]:
        rate = float(rng.uniform(*policy.stretch_rate))
        y = time_stretch(y, rate)
        steps.append(f"stretch{rate:.2f}")
    if chosen["telephone"]:
        y = telephone(y, sample_rate)
        steps.append("telephone")
    if chosen["gain"]:
        db = float(rng.uniform(*policy.gain_db))
        y = gain(y, db)
        steps.append(f"gain{db:+.0f}")
    if chosen["noise"]:
        snr = float(rng.uniform(*policy.snr_db))
        colour = "pink" if rng.random() < 0.5 else "white"
        y = add_noise(y, snr, rng, colour)
        steps.append(f"{colour}{snr:.0f}")
    return y, "|".join(steps)
