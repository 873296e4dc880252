"""Typed manifest rows: one :class:`Utterance` per labelled audio file, one :class:`Rejected` per file that could not be used."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd

from ser_core.labels import EMOTIONS


@dataclass(frozen=True)
class Utterance:
    """One labelled recording.

    ``emotion`` is canonical (see :data:`ser_core.labels.EMOTIONS`); ``raw_label`` is the corpus's own code.
    ``split_group`` is what keeps evaluation honest: utterances sharing it always land in the same split
    (the speaker for most corpora, the word for TESS, which has only two speakers).
    """

    utterance_id: str
    uri: str
    corpus: str
    speaker: str
    emotion: str
    raw_label: str
    gender: str | None = None
    intensity: str | None = None
    text: str | None = None
    split_group: str = ""

    def __post_init__(self) -> None:
        if self.emotion not in EMOTIONS:
            raise ValueError(f"{self.uri}: emotion {self.emotion!r} is not canonical")
        if not self.split_group:
            object.__setattr__(self, "split_group", f"{self.corpus}/{self.speaker}")


@dataclass(frozen=True)
class Rejected:
    """A file that was found but not used, and why (a name that does not parse, an unknown label, a decode error)."""

    uri: str
    corpus: str
    stage: str
    reason: str


@dataclass
class CorpusScan:
    """What scanning one corpus root produced: usable utterances and explained rejects."""

    utterances: list[Utterance] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def extend(self, other: "CorpusScan") -> None:
        self.utterances.extend(other.utterances)
        self.rejected.extend(other.rejected)


MANIFEST_COLUMNS = [f.name for f in dataclasses.fields(Utterance)]
REJECTED_COLUMNS = [f.name for f in dataclasses.fields(Rejected)]


def utterances_to_frame(utterances: list[Utterance]) -> pd.DataFrame:
    """Manifest rows as a DataFrame with one column per :class:`Utterance` field."""
    return pd.DataFrame([dataclasses.asdict(u) for u in utterances], columns=MANIFEST_COLUMNS)


def rejected_to_frame(rejected: list[Rejected]) -> pd.DataFrame:
    """Rejects as a DataFrame with one column per :class:`Rejected` field."""
    return pd.DataFrame([dataclasses.asdict(r) for r in rejected], columns=REJECTED_COLUMNS)
