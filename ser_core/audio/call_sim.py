"""The call channel: utterances placed as turns of a two-party call, as a contact centre records them.

One module serves the three places that need calls with known truth: training examples (a labelled utterance
becomes the customer turn of a short call, so the model learns from what scoring sees), the synthetic archives of
``ser make-archive``, and the voice-activity benchmark. A call is rendered at 8 kHz (or ``rate``) per party:

* each turn at its own level, spread uniformly ``±level_spread_db`` around the party's level (people speak up
  and drop their voice; a quiet turn is still speech),
* the telephone band (300-3400 Hz) on every turn,
* the other party's voice leaking ``leak_db`` into each channel (echo, crosstalk), over a noise floor of
  ``noise_db`` dBFS,
* G.711 mu-law at the channel's absolute scale (quiet speech is quantised more coarsely, as on a real line).

Truth is per turn: the span of the utterance's speech in the telephone band (its own silences trimmed), in seconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.signal

RATE = 8000


@dataclass(frozen=True)
class CallConditions:
    """Ranges the call channel draws from (uniformly) for each call, and for each turn its level."""

    level_db: tuple[float, float] = (-26.0, -16.0)  # a party's nominal speech RMS, dBFS
    level_spread_db: float = 15.0  # each turn within ± this of its party's level
    noise_db: tuple[float, float] = (-60.0, -40.0)  # the line's noise floor, dBFS RMS
    leak_db: tuple[float, float] = (-40.0, -20.0)  # the other party in this channel, relative to their level
    pause_s: tuple[float, float] = (0.3, 1.2)
    mu_law: bool = True


@dataclass(frozen=True)
class Turn:
    """One utterance of a call: which party, where it starts, its samples at the call's rate, and its speech span."""

    party: int
    start_s: float
    samples: np.ndarray
    speech: tuple[float, float]  # [start, end) of the utterance's speech, in seconds from the utterance's start

    @property
    def end_s(self) -> float:
        return self.start_s + self.samples.size / RATE

    @property
    def speech_span(self) -> tuple[float, float]:
        """The turn's speech in call time, seconds."""
        return self.start_s + self.speech[0], self.start_s + self.speech[1]


def speech_span(samples: np.ndarray, rate: int = RATE, top_db: float = 30.0) -> tuple[float, float]:
    """``[start, end)`` in seconds of an utterance's speech: its leading and trailing silence (``top_db`` below its
    peak, 25 ms frames) trimmed. Examples: a tone between two silences.

    >>> x = np.zeros(8000, np.float32); x[2000:6000] = np.sin(np.arange(4000) * 0.3)
    >>> [round(float(v), 2) for v in speech_span(x)]
    [0.24, 0.77]
    """
    hop = rate // 100
    _, (a, b) = librosa.effects.trim(samples, top_db=top_db, frame_length=int(0.025 * rate), hop_length=hop)
    return (a / rate, b / rate) if b > a else (0.0, samples.size / rate)


@functools.lru_cache(maxsize=4)
def _band(rate: int) -> np.ndarray:
    return scipy.signal.butter(4, [300, min(3400, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")


def telephone_band(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """300-3400 Hz band-pass at ``rate``."""
    return scipy.signal.sosfilt(_band(rate), samples).astype(np.float32)


def mu_law(samples: np.ndarray, mu: int = 255) -> np.ndarray:
    """G.711 mu-law (8 bits) at the signal's absolute scale, decoded back to float (librosa's ``mu_compress`` /
    ``mu_expand`` with ``quantize=True``, in closed form).

    >>> x = np.array([-0.7, -0.01, 0.0, 0.0003, 0.5])
    >>> bool(np.allclose(mu_law(x), librosa.mu_expand(librosa.mu_compress(x, quantize=True), quantize=True), rtol=1e-6))
    True
    """
    x = np.clip(samples, -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    code = np.ceil((compressed + 1) * mu / 2) - (mu + 1) // 2  # librosa's bins: edges at -1 + 2k / mu
    y = code * 2 / (mu + 1)
    return (np.sign(y) / mu * np.expm1(np.abs(y) * np.log1p(mu))).astype(np.float32)


def arrange(utterances: list[tuple[int, np.ndarray]], conditions: CallConditions, rng: np.random.Generator) -> list[Turn]:
    """Turns one after another with pauses between them (and before the first): ``(party, samples at RATE)``, each
    trimmed to its speech in the telephone band (a recording's own silences, room noise and rumble below 300 Hz,
    which never reach the line, are not part of a turn)."""
    turns, clock = [], float(rng.uniform(*conditions.pause_s))
    for party, samples in utterances:
        a, b = speech_span(telephone_band(samples))
        speech = samples[int(a * RATE) : int(b * RATE)]
        turns.append(Turn(party, clock, speech, (0.0, speech.size / RATE)))
        clock = turns[-1].end_s + float(rng.uniform(*conditions.pause_s))
    return turns


def render(turns: list[Turn], conditions: CallConditions, rng: np.random.Generator, tail_s: float | None = None) -> np.ndarray:
    """The call ``(2, frames)`` at :data:`RATE` (channel = party): levels, band, leak, noise floor, G.711."""
    tail = conditions.pause_s[1] if tail_s is None else tail_s
    frames = int((max(t.end_s for t in turns) + tail) * RATE)
    voices = np.zeros((2, frames), np.float32)
    party_db = rng.uniform(*conditions.level_db, size=2)
    for turn in turns:
        span = turn.samples[int(turn.speech[0] * RATE) : int(turn.speech[1] * RATE) + 1]
        rms = float(np.sqrt(np.mean(np.square(span, dtype=np.float64)))) or 1.0
        level = party_db[turn.party] + rng.uniform(-conditions.level_spread_db, conditions.level_spread_db)
        start = int(turn.start_s * RATE)
        piece = telephone_band(turn.samples) * (10 ** (level / 20) / rms)
        voices[turn.party, start : start + piece.size] += piece[: frames - start]
    leak = 10 ** (rng.uniform(*conditions.leak_db, size=2) / 20)
    noise = 10 ** (rng.uniform(*conditions.noise_db, size=2) / 20)
    line = voices + leak[:, None] * voices[::-1] + noise[:, None] * rng.standard_normal(voices.shape).astype(np.float32)
    return mu_law(line) if conditions.mu_law else np.clip(line, -1.0, 1.0)


def one_turn_call(samples: np.ndarray, other: np.ndarray, conditions: CallConditions,
                  rng: np.random.Generator) -> tuple[np.ndarray, Turn]:
    """A labelled utterance as the customer turn of a short call whose agent says ``other`` first (both mono at
    :data:`RATE`); returns the call ``(2, frames)`` and the customer's turn."""
    turns = arrange([(0, other), (1, samples)], conditions, rng)
    return render(turns, conditions, rng), turns[1]
