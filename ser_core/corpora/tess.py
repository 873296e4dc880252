"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller 2010): ``<SPEAKER>_<word>_<emotion>.wav``.

Two female speakers, OAF (older) and YAF (younger), 200 target words, seven emotions. Folder names vary in
case (``OAF_Fear``, ``YAF_pleasant_surprised``) and are not used; the label comes from the file name. One
file is named ``OA_bite_neutral``. With two speakers, splits are made by word.
"""

from __future__ import annotations

from ser_core.corpora.common import UnparsableName, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance

CORPUS = "tess"
EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprise",
    "sad": "sad",
}
SPEAKER_ALIASES = {"OA": "OAF", "OAF": "OAF", "YAF": "YAF", "YA": "YAF"}


def parse(uri: str) -> Utterance:
    """One TESS file name to an :class:`Utterance`."""
    name = stem(uri)
    parts = name.split("_")
    if len(parts) < 3:
        raise UnparsableName(f"not a TESS name (expected SPEAKER_word_emotion): {name}")
    speaker_token, word, raw = parts[0].upper(), "_".join(parts[1:-1]).lower(), parts[-1].lower()
    if speaker_token not in SPEAKER_ALIASES:
        raise UnparsableName(f"unknown TESS speaker {parts[0]!r}: {name}")
    if raw not in EMOTIONS:
        raise UnparsableName(f"unknown TESS emotion {parts[-1]!r}: {name}")
    speaker = SPEAKER_ALIASES[speaker_token]
    return Utterance(
        utterance_id=f"{CORPUS}/{speaker}_{word}_{raw}",
        uri=uri,
        corpus=CORPUS,
        speaker=speaker,
        emotion=EMOTIONS[raw],
        raw_label=raw,
        gender="female",
        text=word,
        split_group=f"{CORPUS}/word:{word}",
    )


def scan(root: str) -> CorpusScan:
    """All TESS files under ``root``."""
    return scan_files(root, CORPUS, parse)
