"""Helpers shared by the corpus recipes."""

from __future__ import annotations

import hashlib
import posixpath
from collections import defaultdict
from typing import Callable

from ser_core import storage
from ser_core.corpora.manifest import CorpusScan, Rejected, Utterance
from ser_core.errors import SerError

AUDIO_EXTENSIONS = (".wav", ".flac")


class UnparsableName(SerError, ValueError):
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


def reject_identical_files(scan: CorpusScan) -> CorpusScan:
    """Keep the first of any utterances whose files are byte-identical; reject the others as duplicates.

    Only files of equal size are read and hashed, so a corpus without duplicates costs one listing.
    """
    by_size: dict[int, list[Utterance]] = defaultdict(list)
    for utt in scan.utterances:
        fs, path = storage.filesystem(utt.uri)
        by_size[fs.size(path)].append(utt)
    first_of: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    for same_size in (group for group in by_size.values() if len(group) > 1):
        for utt in sorted(same_size, key=lambda u: u.utterance_id):
            digest = hashlib.sha256(storage.read_bytes(utt.uri)).hexdigest()
            if digest in first_of:
                duplicates[utt.utterance_id] = first_of[digest]
            else:
                first_of[digest] = utt.utterance_id
    kept = CorpusScan(rejected=list(scan.rejected))
    for utt in scan.utterances:
        if utt.utterance_id in duplicates:
            reason = f"duplicate: byte-identical to utterance {duplicates[utt.utterance_id]}"
            kept.rejected.append(Rejected(uri=utt.uri, corpus=utt.corpus, stage="manifest", reason=reason))
        else:
            kept.utterances.append(utt)
    return kept
