"""TurEV-DB (Canpolat et al. 2020), Turkish acted single words: ``<Emotion>/<speaker>_<emo>_<word>.wav``.

Four classes in folders ``Angry Calm Happy Sad``; the code in the name (``kz`` angry, ``sk`` calm, ``mt``
happy, ``hl`` sad) must agree with the folder when the folder is one of those. Calm, the corpus's
neutral-like state, is mapped to ``neutral``. Six speakers, gender not given in the names.
"""

from __future__ import annotations

import posixpath

from ser_core.corpora.common import UnparsableName, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance
from ser_core.labels import TUREV_FOLDERS, TUREV_LABELS

CORPUS = "turev"


def parse(uri: str) -> Utterance:
    """One TurEV-DB file to an :class:`Utterance` (label from the name, checked against the folder)."""
    name = stem(uri)
    parts = name.split("_")
    if len(parts) < 3 or not parts[0].isdigit():
        raise UnparsableName(f"not a TurEV-DB name (expected speaker_emo_word, e.g. 1157_kz_acik): {name}")
    speaker, code, word = parts[0], parts[1].lower(), "_".join(parts[2:]).lower()
    if code not in TUREV_LABELS:
        raise UnparsableName(f"unknown TurEV-DB emotion code {parts[1]!r} (known: {', '.join(TUREV_LABELS)}): {name}")
    folder = posixpath.basename(posixpath.dirname(uri.replace("\\", "/"))).lower()
    if folder in TUREV_FOLDERS and TUREV_FOLDERS[folder] != code:
        raise UnparsableName(f"code {code!r} in the name disagrees with the folder {folder!r}: {name}")
    return Utterance(
        utterance_id=f"{CORPUS}/{speaker}_{code}_{word}",
        uri=uri,
        corpus=CORPUS,
        speaker=speaker,
        emotion=TUREV_LABELS[code],
        raw_label=code,
        text=word,
    )


def scan(root: str) -> CorpusScan:
    """All TurEV-DB files under ``root``."""
    return scan_files(root, CORPUS, parse)
