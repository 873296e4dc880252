"""EMOVO (Costantini et al. 2014), Italian acted speech: ``<speaker>/<emo>-<speaker>-<sentence>.wav``.

Six actors (``f1 f2 f3``, ``m1 m2 m3``), 14 sentences, seven emotions coded in Italian (see
:data:`ser_core.labels.EMOVO_LABELS`). Speaker and gender come from the name; the folder is not used.
"""

from __future__ import annotations

import re

from ser_core.corpora.common import UnparsableName, scan_files, stem
from ser_core.corpora.manifest import CorpusScan, Utterance
from ser_core.labels import EMOVO_LABELS

CORPUS = "emovo"
_NAME = re.compile(r"^(?P<emo>[a-z]{3})-(?P<speaker>[fm][1-9])-(?P<sentence>[a-z][0-9])$")


def parse(uri: str) -> Utterance:
    """One EMOVO file name to an :class:`Utterance`."""
    name = stem(uri)
    match = _NAME.match(name.lower())
    if match is None:
        raise UnparsableName(f"not an EMOVO name (expected emo-speaker-sentence, e.g. dis-f1-b1): {name}")
    emo, speaker, sentence = match["emo"], match["speaker"], match["sentence"]
    if emo not in EMOVO_LABELS:
        raise UnparsableName(f"unknown EMOVO emotion {emo!r} (known: {', '.join(EMOVO_LABELS)}): {name}")
    return Utterance(
        utterance_id=f"{CORPUS}/{emo}-{speaker}-{sentence}",
        uri=uri,
        corpus=CORPUS,
        speaker=speaker,
        emotion=EMOVO_LABELS[emo],
        raw_label=emo,
        gender="female" if speaker[0] == "f" else "male",
        text=sentence,
    )


def scan(root: str) -> CorpusScan:
    """All EMOVO files under ``root`` (``.wav`` or ``.flac``)."""
    return scan_files(root, CORPUS, parse)
