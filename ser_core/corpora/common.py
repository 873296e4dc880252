"""Helpers shared by the corpus recipes."""

from __future__ import annotations

import posixpath
from typing import Callable

from ser_core import storage
from ser_core.manifest import CorpusScan, Rejected, Utterance

AUDIO_EXTENSIONS = (".wav", ".flac")


class UnparsableName(ValueError):
    """A file name that does not follow its corpus's naming rules (the message says which rule)."""


def stem(uri: str) -> str:
    """File name without folder and extension."""
    return posixpath.splitext(posixpath.basename(uri.replace("\\", "/")))[0]


def scan_files(root: str, corpus: str, parse: Callable[[str], Utterance]) -> CorpusScan:
    """Apply ``parse`` to every audio file under ``root``; files it rejects become :class:`Rejected` rows.

    A missing root is an error (a typo should not look like an empty corpus).
    """
    if not storage.exists(root):
        raise FileNotFoundError(f"{corpus}: corpus root {root} does not exist")
    scan = CorpusScan()
    for uri in storage.list_files(root, AUDIO_EXTENSIONS):
        try:
            scan.utterances.append(parse(uri))
        except UnparsableName as err:
            scan.rejected.append(Rejected(uri=uri, corpus=corpus, stage="manifest", reason=str(err)))
    if not scan.utterances and not scan.rejected:
        raise FileNotFoundError(f"{corpus}: no .wav or .flac files under {root}")
    return scan
