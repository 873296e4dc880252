"""nEMO (Christop 2024), Polish acted sentences: ``samples/<speaker>_<emotion>_<n>.wav``.

Six classes spelt out in English (``anger fear happiness neutral sadness surprised``; no disgust). Nine speakers
(``EB0 IC0 KD0 MK0`` female, ``KS0 MP0 SM0 TP0 WR0`` male, as the corpus's ``data.tsv`` gives them; the gender of
any other speaker is unknown). The clip number ``n`` names the sentence: every speaker reads the same sentences
in every emotion.
"""

from __future__ import annotations

import re

from ser_core.corpora.common import UnparsableName, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance
from ser_core.labels import NEMO_GENDERS, NEMO_LABELS

CORPUS = "nemo"
_NAME = re.compile(r"^(?P<speaker>[A-Za-z]+[0-9]+)_(?P<emotion>[A-Za-z]+)_(?P<n>[0-9]+)$")


def parse(uri: str) -> Utterance:
    """One nEMO file name to an :class:`Utterance`."""
    name = stem(uri)
    match = _NAME.match(name)
    if match is None:
        raise UnparsableName(f"not a nEMO name (expected speaker_emotion_n, e.g. EB0_anger_10): {name}")
    speaker, emotion, n = match["speaker"].upper(), match["emotion"].lower(), int(match["n"])
    if emotion not in NEMO_LABELS:
        raise UnparsableName(f"unknown nEMO emotion {match['emotion']!r} (known: {', '.join(NEMO_LABELS)}): {name}")
    return Utterance(
        utterance_id=f"{CORPUS}/{speaker}_{emotion}_{n}",
        uri=uri,
        corpus=CORPUS,
        speaker=speaker,
        emotion=NEMO_LABELS[emotion],
        raw_label=emotion,
        gender=NEMO_GENDERS.get(speaker),
        text=f"sentence{n}",
    )


def scan(root: str) -> CorpusScan:
    """All nEMO files under ``root`` (``.wav`` or ``.flac``)."""
    return scan_files(root, CORPUS, parse)
