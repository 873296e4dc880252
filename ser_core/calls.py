"""One call, in one process: model windows over its speech, then the per-window labels and the per-call summary.

Frame features are computed once per speech region (long regions in chunks whose windows continue the same
hop grid), and the model windows are slices of that frame matrix. A region shorter than one window is tiled to
a full window, as training tiled short utterances; regions shorter than ``min_region_s`` are speech (they
count in speech seconds) but are not scored: too little of the window would be theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from ser_core.audio import MAX_SECONDS, SpooledAudio
from ser_core.features import FeatureSpec, frame_features, windows
from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS, VALENCE_AROUSAL
from ser_core.schema import SPEAKER_ROLES
from ser_core.vad import VadConfig, channel_energies, is_dual_mono, regions_from_levels, stream_frame_levels

_VALENCE_AROUSAL = np.array([VALENCE_AROUSAL[e] for e in EMOTIONS], dtype=np.float32)  # (emotions, 2)
_NEGATIVE = np.array([e in NEGATIVE_EMOTIONS for e in EMOTIONS])


@dataclass(frozen=True)
class ScoringConfig:
    """How a call is cut into scored windows and how its summary is computed."""

    vad: VadConfig = VadConfig()
    agent_channel: int = 0
    min_region_s: float = 1.0
    max_chunk_s: float = 60.0
    escalation_min_segments: int = 6
    escalation_rise: float = 0.3
    max_seconds: float = MAX_SECONDS


class NonFiniteError(ValueError):
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
    """A call ready for windowing: the signal of each scored channel and its speech regions."""

    channels: list[ChannelSignal]
    regions: list[np.ndarray]
    dual_mono: bool


def prepare_call(audio: SpooledAudio, spec: FeatureSpec, config: ScoringConfig) -> PreparedCall:
    """Scored channels (one, the mean, for mono and dual-mono audio) and their speech regions, read in chunks.

    Raises :class:`NonFiniteError` when the frame levels overflow (float audio with huge samples).
    """
    dual = audio.channels == 2 and is_dual_mono(sum(channel_energies(c) for c in audio.chunks()), config.vad)
    signals = [ChannelSignal(audio, None)] if dual or audio.channels == 1 else [ChannelSignal(audio, c) for c in range(audio.channels)]
    levels = stream_frame_levels(lambda a, b: np.stack([s[a:b] for s in signals]), audio.frames, len(signals), spec)
    if not np.isfinite(levels).all():
        raise NonFiniteError("frame levels are not finite (samples too large?)")
    return PreparedCall(signals, regions_from_levels(levels, spec, config.vad), dual)


def label_columns(labels: Sequence[str]) -> np.ndarray:
    """The :data:`EMOTIONS` index of each of a model's output ``labels``; ``ValueError`` for unknown or repeated ones."""
    unknown = [label for label in labels if label not in EMOTIONS]
    if unknown or len(set(labels)) != len(labels):
        raise ValueError(f"model labels {list(labels)} are not distinct labels of {list(EMOTIONS)}")
    return np.array([EMOTIONS.index(label) for label in labels])


def in_emotion_order(probs: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """A model's probabilities (columns in its own label order) as ``(n, len(EMOTIONS))``; absent emotions get 0.

    Raises :class:`NonFiniteError` when any probability is not finite.
    """
    if not np.isfinite(probs).all():
        raise NonFiniteError("the model returned non-finite probabilities")
    out = np.zeros((len(probs), len(EMOTIONS)), np.float32)
    out[:, columns] = probs
    return out


def speaker_role(channel: int, channels: int, agent_channel: int) -> str:
    """``mono`` for single-channel audio, else ``agent`` for ``agent_channel`` and ``customer`` for the others."""
    if channels == 1:
        return "mono"
    return "agent" if channel == agent_channel else "customer"


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


def channel_windows(samples: np.ndarray | ChannelSignal, regions: np.ndarray, spec: FeatureSpec, config: ScoringConfig) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(start_s, end_s, rms_db, windows)`` for each scored chunk of speech of one channel's ``samples``."""
    hop, rate = spec.hop_length, spec.sample_rate
    frame_s = hop / rate
    rms_column = spec.feature_names.index("rms_db")
    max_chunk = int(config.max_chunk_s / frame_s)
    for region_start, region_end in regions:
        if (region_end - region_start) * frame_s < config.min_region_s:
            continue
        for a, b in chunk_bounds(int(region_start), int(region_end), spec, max_chunk):
            frames = frame_features(samples[a * hop : b * hop], spec)[: b - a]
            if not np.isfinite(frames).all():
                raise NonFiniteError("features are not finite (samples too large?)")
            batch, starts = windows(frames, spec)
            start_s = (a + starts) * frame_s
            end_s = start_s + min(spec.window_frames, b - a) * frame_s
            yield start_s, end_s, batch[:, :, rms_column].mean(axis=1), batch


def call_windows(samples: np.ndarray | Sequence[ChannelSignal], regions: list[np.ndarray], spec: FeatureSpec,
                 config: ScoringConfig) -> Iterator[WindowBatch]:
    """Windows over the speech of every channel of ``samples`` (``(channels, frames)`` or channel signals), one batch
    per chunk; :class:`NonFiniteError` if any feature is not finite."""
    for channel, (channel_samples, channel_regions) in enumerate(zip(samples, regions)):
        for start_s, end_s, rms_db, batch in channel_windows(channel_samples, channel_regions, spec, config):
            yield WindowBatch(channel, start_s, end_s, rms_db, batch)


def speech_seconds(regions: np.ndarray, spec: FeatureSpec) -> float:
    """Total duration of speech ``regions`` in seconds."""
    return float((regions[:, 1] - regions[:, 0]).sum() * spec.hop_length / spec.sample_rate) if len(regions) else 0.0


def window_labels(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-window ``emotion`` (index into EMOTIONS), ``confidence``, ``valence`` and ``arousal`` from probabilities.

    Valence and arousal are the probability-weighted means of :data:`ser_core.labels.VALENCE_AROUSAL`.
    """
    dims = probs @ _VALENCE_AROUSAL
    return {
        "emotion": probs.argmax(axis=1),
        "confidence": probs.max(axis=1),
        "valence": dims[:, 0],
        "arousal": dims[:, 1],
    }


@dataclass
class CallResult:
    """What the scoring pipeline knows of one call: the file's facts and its scored windows."""

    call_id: str
    source_uri: str
    status: str
    error: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    speech_s: list[float] = field(default_factory=list)
    channel: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rms_db: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, len(EMOTIONS)), np.float32))

    @property
    def scored_channels(self) -> int:
        """Channels scored: one per ``speech_s`` entry (1 for mono and dual-mono audio)."""
        return len(self.speech_s)


def _role_summary(role: str, speech_s: float, probs: np.ndarray) -> dict:
    labels = window_labels(probs)
    counts = np.bincount(labels["emotion"], minlength=len(EMOTIONS))
    summary = {f"{role}_speech_s": speech_s, f"{role}_segments": int(len(probs))}
    if len(probs):
        shares = counts / counts.sum()
        summary[f"{role}_dominant_emotion"] = EMOTIONS[int(counts.argmax())]
        summary.update({f"{role}_share_{e}": float(s) for e, s in zip(EMOTIONS, shares)})
        summary[f"{role}_valence"] = float(labels["valence"].mean())
        summary[f"{role}_arousal"] = float(labels["arousal"].mean())
    return summary


def escalation(probs: np.ndarray, config: ScoringConfig) -> dict:
    """Negative share of the first and last third of a customer's windows (in time order) and whether it rose.

    With fewer than ``config.escalation_min_segments`` windows the shares are null and the call is not escalated.
    """
    if len(probs) < config.escalation_min_segments:
        return {"escalated": False}
    negative = _NEGATIVE[probs.argmax(axis=1)]
    third = len(negative) // 3
    first, last = float(negative[:third].mean()), float(negative[-third:].mean())
    return {
        "customer_negative_first": first,
        "customer_negative_last": last,
        "customer_escalation": last - first,
        "escalated": last - first >= config.escalation_rise,
    }


def summarise_call(result: CallResult, config: ScoringConfig) -> dict:
    """The call's row for :data:`ser_core.schema.CALLS` (without the run columns).

    Roles follow the scored channels (dual-mono stereo is one ``mono`` channel). Per role present in the call: speech seconds, scored windows, dominant emotion (most windows), share of windows
    per emotion, mean valence and arousal; for the customer of a stereo call, the escalation figures.
    """
    row = {
        "call_id": result.call_id,
        "source_uri": result.source_uri,
        "status": result.status,
        "error": result.error,
        "duration_s": result.duration_s,
        "sample_rate": result.sample_rate,
        "channels": result.channels,
        "agent_channel": config.agent_channel,
    }
    if result.status != "ok":
        return row
    channel_roles = np.array([speaker_role(c, result.scored_channels, config.agent_channel) for c in range(result.scored_channels)])
    order = np.argsort(result.start_s, kind="stable")
    window_roles, probs = channel_roles[result.channel[order]], result.probs[order]
    speech_s = np.asarray(result.speech_s)
    for role in SPEAKER_ROLES:
        if role not in channel_roles:
            continue
        role_probs = probs[window_roles == role]
        row.update(_role_summary(role, float(speech_s[channel_roles == role].sum()), role_probs))
        if role == "customer":
            row.update(escalation(role_probs, config))
    return row
