"""CREMA-D (Cao et al. 2014): ``AudioWAV/AAAA_SSS_EEE_LL.wav`` with ``VideoDemographics.csv`` beside it.

Actor 1001-1091, one of twelve sentences, emotion ANG DIS FEA HAP NEU SAD, level LO MD HI or XX
(unspecified). Sex and age come from ``VideoDemographics.csv`` when it is found in the root or its parent.
"""

from __future__ import annotations

import io
import posixpath

import pandas as pd

from ser_core import storage
from ser_core.corpora.common import UnparsableName, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance

CORPUS = "cremad"
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": None}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
DEMOGRAPHICS_FILE = "VideoDemographics.csv"


def load_demographics(root: str) -> dict[str, str]:
    """Actor id to ``male``/``female`` from ``VideoDemographics.csv`` in ``root`` or its parent (empty if absent)."""
    base = root.rstrip("/")
    for folder in (base, posixpath.dirname(base)):
        candidate = storage.join(folder, DEMOGRAPHICS_FILE)
        if folder and storage.exists(candidate):
            table = pd.read_csv(io.BytesIO(storage.read_bytes(candidate)))
            return {str(a): str(s).lower() for a, s in zip(table["ActorID"], table["Sex"])}
    return {}


def parse(uri: str, genders: dict[str, str] | None = None) -> Utterance:
    """One CREMA-D file name to an :class:`Utterance`."""
    name = stem(uri)
    parts = name.split("_")
    if len(parts) != 4:
        raise UnparsableName(f"not a CREMA-D name (expected AAAA_SSS_EEE_LL): {name}")
    actor, sentence, emotion_code, level = parts
    if not (actor.isdigit() and len(actor) == 4):
        raise UnparsableName(f"CREMA-D actor {actor!r} is not a 4-digit id: {name}")
    if emotion_code not in EMOTIONS:
        raise UnparsableName(f"unknown CREMA-D emotion {emotion_code!r}: {name}")
    if level not in LEVELS:
        raise UnparsableName(f"unknown CREMA-D level {level!r}: {name}")
    return Utterance(
        utterance_id=f"{CORPUS}/{name}",
        uri=uri,
        corpus=CORPUS,
        speaker=actor,
        emotion=EMOTIONS[emotion_code],
        raw_label=emotion_code,
        gender=(genders or {}).get(actor),
        intensity=LEVELS[level],
        text=SENTENCES.get(sentence),
    )


def scan(root: str) -> CorpusScan:
    """All CREMA-D clips under ``root`` (the corpus folder or its ``AudioWAV/``)."""
    genders = load_demographics(root)
    return scan_files(root, CORPUS, lambda uri: parse(uri, genders))
