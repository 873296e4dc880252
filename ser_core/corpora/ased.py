"""ASED v1 (Retta et al. 2023), Amharic acted speech: ``<NN><Emotion>/xn-yy-aa-gg-bb.wav``.

Fields: emotion letter and folder number (``n1`` neutral, ``f2`` fearful, ``h3`` happy, ``s4`` sad, ``a5``
angry; case varies), sentence ``yy``, repetition ``aa``, gender ``gg`` (01 female, 02 male), speaker ``bb``
(01-65). A few files are byte-identical copies under two repetition numbers; the scan keeps the first and
rejects the others as duplicates.
"""

from __future__ import annotations

from ser_core.corpora.common import UnparsableName, reject_identical_files, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance
from ser_core.labels import ASED_LABELS

CORPUS = "ased"
GENDERS = {"01": "female", "02": "male"}


def parse(uri: str) -> Utterance:
    """One ASED file name to an :class:`Utterance`."""
    name = stem(uri)
    fields = name.lower().split("-")
    if len(fields) != 5 or not all(len(f) == 2 for f in fields) or not all(f.isdigit() for f in fields[1:]):
        raise UnparsableName(f"not an ASED name (expected xn-yy-aa-gg-bb, e.g. n1-01-01-01-01): {name}")
    emotion_code, sentence, repetition, gender, speaker = fields
    if emotion_code not in ASED_LABELS:
        raise UnparsableName(f"unknown ASED emotion code {fields[0]!r} (known: {', '.join(ASED_LABELS)}): {name}")
    if gender not in GENDERS:
        raise UnparsableName(f"unknown ASED gender code {gender} (01 female, 02 male): {name}")
    return Utterance(
        utterance_id=f"{CORPUS}/{emotion_code}-{sentence}-{repetition}-{gender}-{speaker}",
        uri=uri,
        corpus=CORPUS,
        speaker=f"speaker{speaker}",
        emotion=ASED_LABELS[emotion_code],
        raw_label=emotion_code,
        gender=GENDERS[gender],
        text=f"sentence{sentence}",
    )


def scan(root: str) -> CorpusScan:
    """All ASED files under ``root``, byte-identical copies rejected."""
    return reject_identical_files(scan_files(root, CORPUS, parse))
