"""One scored call, in one process: per-window labels and the per-call summary.

Where the speech is and how it is windowed is :mod:`ser_core.audio.segmentation`; this module turns a model's window
probabilities into labels (emotion, confidence, valence, arousal) and the call's row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np

from ser_core.audio.decoding import MAX_SECONDS
from ser_core.audio.segmentation import NonFiniteError
from ser_core.labels import EMOTIONS, NEGATIVE_EMOTIONS, VALENCE_AROUSAL
from ser_core.reports.schema import SPEAKER_ROLES
from ser_core.scoring import call_metrics
from ser_core.storage import READ_TIMEOUT_S

_VALENCE_AROUSAL = np.array([VALENCE_AROUSAL[e] for e in EMOTIONS], dtype=np.float32)  # (emotions, 2)
_NEGATIVE = np.array([e in NEGATIVE_EMOTIONS for e in EMOTIONS])


@dataclass(frozen=True)
class ScoringConfig:
    """How a call is read and summarised (how it is segmented is the model bundle's :class:`~ser_core.audio.segmentation.Segmentation`)."""

    agent_channel: int = 0
    escalation_min_segments: int = 6
    escalation_rise: float = 0.3
    max_seconds: float = MAX_SECONDS
    read_timeout_s: float = READ_TIMEOUT_S


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


@dataclass(frozen=True)
class Windows:
    """Scored windows: per window its channel, start and end (s), level (dBFS) and probabilities in
    :data:`EMOTIONS` order."""

    channel: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    rms_db: np.ndarray
    probs: np.ndarray

    @classmethod
    def none(cls) -> Windows:
        """No windows."""
        return cls(np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0, np.float32),
                   np.zeros((0, len(EMOTIONS)), np.float32))

    @classmethod
    def joined(cls, parts: Sequence[Windows]) -> Windows:
        """``parts`` one after the other."""
        if not parts:
            return cls.none()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def __len__(self) -> int:
        return len(self.probs)

    def take(self, index: np.ndarray) -> Windows:
        """The windows at ``index`` (a mask or positions), in its order."""
        return Windows(*(getattr(self, f.name)[index] for f in fields(self)))


@dataclass
class CallResult:
    """What scoring knows of one call: the file's facts and its scored windows."""

    call_id: str
    source_uri: str
    status: str
    error: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    talk: list[np.ndarray] = field(default_factory=list)  # per scored channel, ``(n, 2)`` talk intervals in seconds
    windows: Windows = field(default_factory=Windows.none)

    @property
    def scored_channels(self) -> int:
        """Channels scored: one per ``talk`` entry (1 for mono and dual-mono audio)."""
        return len(self.talk)


@dataclass
class RoleView:
    """A scored call seen by speaker role: each role's talk and channel, and the windows in time order."""

    talk: dict[str, np.ndarray]
    channel: dict[str, int]  # the role's (first) channel
    roles: np.ndarray  # per window
    start_s: np.ndarray
    end_s: np.ndarray
    probs: np.ndarray


def by_role(result: CallResult, config: ScoringConfig) -> RoleView:
    """``result`` by role (dual-mono stereo is one ``mono`` channel), roles in :data:`SPEAKER_ROLES` order."""
    roles = [speaker_role(c, result.scored_channels, config.agent_channel) for c in range(result.scored_channels)]
    windows = result.windows.take(np.argsort(result.windows.start_s, kind="stable"))
    channel = {role: roles.index(role) for role in SPEAKER_ROLES if role in roles}
    talk = {role: call_metrics.merged(np.concatenate([np.reshape(t, (-1, 2)) for t, r in zip(result.talk, roles) if r == role]))
            for role in channel}
    return RoleView(talk, channel,
                    np.array(roles, dtype=object)[windows.channel] if len(windows) else np.zeros(0, dtype=object),
                    windows.start_s, windows.end_s, windows.probs)


def _role_summary(role: str, view: RoleView, duration_s: float) -> dict:
    mine = view.roles == role
    probs = view.probs[mine]
    labels = window_labels(probs)
    counts = np.bincount(labels["emotion"], minlength=len(EMOTIONS))
    summary = {f"{role}_segments": int(len(probs))}
    if len(probs):
        shares = counts / counts.sum()
        summary[f"{role}_dominant_emotion"] = EMOTIONS[int(counts.argmax())]
        summary.update({f"{role}_share_{e}": float(s) for e, s in zip(EMOTIONS, shares)})
        summary[f"{role}_valence"] = float(labels["valence"].mean())
        summary[f"{role}_arousal"] = float(labels["arousal"].mean())
        sentiment = call_metrics.sentiment_start_end(view.start_s[mine], view.end_s[mine], labels["valence"], duration_s)
        summary.update({f"{role}_{name}": value for name, value in sentiment.items()})
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
    """The call's row for :data:`ser_core.reports.schema.CALLS` (without the run and contact columns).

    Roles follow the scored channels (dual-mono stereo is one ``mono`` channel). Per role present in the call: talk
    seconds, scored windows, dominant emotion (most windows), share of windows per emotion, mean valence and
    arousal, mean valence over the first and last quarter of the call; the call's non-talk, overtalk and
    interruptions (:func:`ser_core.scoring.call_metrics.talk_metrics`); for the customer of a stereo call, the escalation
    figures.
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
    view = by_role(result, config)
    row.update(call_metrics.talk_metrics(view.talk, result.duration_s or 0.0))
    for role in view.talk:
        row.update(_role_summary(role, view, result.duration_s or 0.0))
        if role == "customer":
            row.update(escalation(view.probs[view.roles == role], config))
    return row


def turn_rows(result: CallResult, config: ScoringConfig) -> dict[str, list]:
    """The call's rows of :data:`ser_core.reports.schema.TURNS` (without the run columns): each turn's times and the
    probabilities of the windows over it, averaged by overlap, with their labels (null without a window)."""
    view = by_role(result, config)
    table = call_metrics.turn_table(view.talk, view.channel, view.start_s, view.end_s, view.roles, view.probs)
    probs = np.array([np.full(len(EMOTIONS), np.nan) if p is None else p for p in table.pop("probs")], np.float32)
    probs = probs.reshape(-1, len(EMOTIONS))
    scored = ~np.isnan(probs).any(axis=1)
    labels = window_labels(np.nan_to_num(probs))

    def where_scored(values) -> list:
        return [v if ok else None for v, ok in zip(values, scored)]

    table["call_id"] = [result.call_id] * len(probs)
    table["emotion"] = where_scored([EMOTIONS[int(i)] for i in labels["emotion"]])
    for key in ("confidence", "valence", "arousal"):
        table[key] = where_scored(labels[key].tolist())
    for i, emotion in enumerate(EMOTIONS):
        table[f"prob_{emotion}"] = where_scored(probs[:, i].tolist())
    return table
