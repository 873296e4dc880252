"""Synthetic speech-like voices for demo and throughput archives (``ser make-archive`` without corpora).

Harmonic sources with syllable envelopes and formants, whose pitch, rate and loudness follow a nominal emotion:
good for demos and benchmarks, meaningless for accuracy.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from ser_core.audio.call_sim import RATE

# nominal emotion -> (pitch factor, pitch excursion, syllables per second, gain dB)
_SYNTHETIC_STYLE = {
    "neutral": (1.00, 0.06, 4.0, 0.0),
    "happy": (1.15, 0.20, 4.8, 3.0),
    "sad": (0.88, 0.04, 3.0, -6.0),
    "angry": (1.20, 0.15, 5.2, 6.0),
    "fear": (1.25, 0.25, 5.5, -2.0),
    "disgust": (0.95, 0.10, 3.4, 0.0),
    "surprise": (1.30, 0.30, 4.5, 3.0),
}
_FORMANTS = ((700, 1200, 2500), (400, 2000, 2800), (500, 900, 2400), (300, 2300, 3000))


def synthetic_speech(rng: np.random.Generator, emotion: str, base_f0: float, seconds: float) -> np.ndarray:
    """A voiced, speech-like utterance at 8 kHz whose pitch, syllable rate and loudness follow ``emotion``."""
    pitch, excursion, syllable_rate, gain_db = _SYNTHETIC_STYLE[emotion]
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = base_f0 * pitch * (1 + excursion * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    source = sum(np.sin(k * phase) / k for k in range(1, int(3800 / f0.max()) + 1))
    voiced = np.zeros_like(t)
    for formant in _FORMANTS[rng.integers(len(_FORMANTS))]:
        b, a = scipy.signal.iirpeak(formant, Q=formant / 120.0, fs=RATE)
        voiced += scipy.signal.lfilter(b, a, source)
    envelope = np.clip(np.sin(2 * np.pi * syllable_rate * t + rng.uniform(0, np.pi)), 0, None) ** 0.6
    y = voiced * envelope + 0.02 * rng.standard_normal(t.size) * envelope
    return (y / (np.sqrt(np.mean(y**2)) + 1e-9) * 10 ** (gain_db / 20) * 0.1).astype(np.float32)
