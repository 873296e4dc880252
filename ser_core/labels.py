"""The canonical emotion label set, shared by every corpus, the model and the reports."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
"""Canonical labels, in the order of the model's outputs and the reports' ``prob_*`` columns."""

NEGATIVE_EMOTIONS: frozenset[str] = frozenset({"sad", "angry", "fear", "disgust"})

# Circumplex coordinates (valence, arousal) in [-1, 1], after Russell (1980) and the placements
# used by dimensional SER corpora (e.g. MSP-Podcast); a window's valence/arousal is the
# probability-weighted mean of these.
VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.5),
    "angry": (-0.6, 0.8),
    "fear": (-0.6, 0.6),
    "disgust": (-0.7, 0.2),
    "surprise": (0.3, 0.8),
}

# Each corpus's own emotion codes mapped to :data:`EMOTIONS`. A corpus without some classes simply lacks them.
EMOVO_LABELS: dict[str, str] = {
    "neu": "neutral",
    "gio": "happy",  # gioia, joy
    "tri": "sad",  # tristezza
    "rab": "angry",  # rabbia
    "pau": "fear",  # paura
    "dis": "disgust",  # disgusto
    "sor": "surprise",  # sorpresa
}
ASED_LABELS: dict[str, str] = {"n1": "neutral", "f2": "fear", "h3": "happy", "s4": "sad", "a5": "angry"}
TUREV_LABELS: dict[str, str] = {"sk": "neutral", "mt": "happy", "hl": "sad", "kz": "angry"}  # sk is "calm"
TUREV_FOLDERS: dict[str, str] = {"calm": "sk", "happy": "mt", "sad": "hl", "angry": "kz"}
NEMO_LABELS: dict[str, str] = {
    "neutral": "neutral",
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "fear": "fear",
    "surprised": "surprise",
}
NEMO_GENDERS: dict[str, str] = {  # nEMO's nine speakers, as its data.tsv gives them
    "EB0": "female", "IC0": "female", "KD0": "female", "MK0": "female",
    "KS0": "male", "MP0": "male", "SM0": "male", "TP0": "male", "WR0": "male",
}
