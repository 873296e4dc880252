"""RAVDESS (Livingstone & Russo 2018), audio-only speech: ``Actor_AA/03-01-EE-II-SS-RR-AA.wav``.

Fields: modality (03 audio-only), vocal channel (01 speech), emotion, intensity (01 normal, 02 strong),
statement, repetition, actor (odd male, even female).
"""

from __future__ import annotations

from ser_core.corpora.common import UnparsableName, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance

CORPUS = "ravdess"
EMOTION_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
INTENSITY_CODES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def parse(uri: str, calm_as: str = "neutral") -> Utterance:
    """One RAVDESS file name to an :class:`Utterance`; ``calm`` is mapped to ``calm_as``."""
    name = stem(uri)
    fields = name.split("-")
    if len(fields) != 7 or not all(len(f) == 2 and f.isdigit() for f in fields):
        raise UnparsableName(f"not a RAVDESS name (expected 03-01-EE-II-SS-RR-AA): {name}")
    modality, channel, emotion_code, intensity, statement, _repetition, actor = fields
    if modality != "03":
        raise UnparsableName(f"modality {modality} is not audio-only (03): {name}")
    if channel != "01":
        raise UnparsableName(f"vocal channel {channel} is song, not speech (01): {name}")
    if emotion_code not in EMOTION_CODES:
        raise UnparsableName(f"unknown RAVDESS emotion code {emotion_code}: {name}")
    if intensity not in INTENSITY_CODES:
        raise UnparsableName(f"unknown RAVDESS intensity code {intensity}: {name}")
    raw = EMOTION_CODES[emotion_code]
    return Utterance(
        utterance_id=f"{CORPUS}/{name}",
        uri=uri,
        corpus=CORPUS,
        speaker=f"actor{actor}",
        emotion=calm_as if raw == "calm" else raw,
        raw_label=raw,
        gender="male" if int(actor) % 2 else "female",
        intensity=INTENSITY_CODES[intensity],
        text=STATEMENTS.get(statement),
    )


def scan(root: str) -> CorpusScan:
    """All RAVDESS speech files under ``root`` (``.wav`` or ``.flac``, any folder layout)."""
    return scan_files(root, CORPUS, parse)
