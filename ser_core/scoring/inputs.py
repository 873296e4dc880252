"""What ``ser score`` reads: every audio file under an archive, with its call id.

A call id is the file's path relative to the id root, without extension (see :func:`id_root`), so the same file
keeps its id across days and runs.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import Counter
from dataclasses import dataclass

from ser_core import storage
from ser_core.errors import Refused

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au", ".aif", ".aiff")
DAY_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class CallInput:
    """One recording to score."""

    call_id: str
    uri: str


def id_root(archive: str, explicit: str | None = None) -> str:
    """The folder call ids are relative to: ``explicit``, else the archive's parent when the archive is a day
    folder (``.../2026-11-20/``, so the day is part of every id), else the archive itself.

    >>> id_root("s3://calls/2026-11-20/"), id_root("s3://calls/q1"), id_root("s3://calls/q1", "s3://calls")
    ('s3://calls', 's3://calls/q1', 's3://calls')
    """
    if explicit is not None:
        return explicit
    trimmed = archive.rstrip("/") if storage.is_remote(archive) else os.path.abspath(archive)
    parent, name = posixpath.split(trimmed)
    return parent if DAY_FOLDER.fullmatch(name) else archive


def list_calls(archive: str, root: str | None = None) -> list[CallInput]:
    """Every audio file under ``archive`` with its call id: its path relative to :func:`id_root`, without extension
    (an archive that is one file: the id root of its folder, so ``.../q/c-1.wav`` is ``c-1``).

    Two files that differ only by extension (``c-1.wav``, ``c-1.flac``) keep their extensions in their ids.
    Raises ``FileNotFoundError`` for a missing archive and :class:`~ser_core.errors.Refused` when ``root`` does
    not contain it.
    """
    if not storage.exists(archive):
        raise FileNotFoundError(f"archive {archive} does not exist")
    fs, path = storage.filesystem(archive)
    base = id_root((posixpath.dirname(archive) or ".") if root is None and not fs.isdir(path) else archive, root)
    uris = storage.list_files(archive, AUDIO_EXTENSIONS)
    relative = [storage.relative_to(uri, base) for uri in uris]
    outside = [rel for rel in relative if rel.startswith("../")]
    if outside:
        raise Refused(f"--id-root {base} does not contain the archive (e.g. {outside[0]})")
    stems = [posixpath.splitext(rel)[0] for rel in relative]
    taken = Counter(stems)
    return [CallInput(stem if taken[stem] == 1 else rel, uri) for uri, rel, stem in zip(uris, relative, stems)]


def call_id_conflicts(calls: list[CallInput], owners: dict[str, str]) -> list[str]:
    """Messages for inputs whose call id already names another file (``owners``: call id -> its file).

    >>> call_id_conflicts([CallInput("q/c-1", "/a/q/c-1.wav")], {"q/c-1": "/b/q/c-1.wav"})
    ['q/c-1: /a/q/c-1.wav vs /b/q/c-1.wav']
    """
    return [f"{c.call_id}: {c.uri} vs {owners[c.call_id]}" for c in calls if owners.get(c.call_id, c.uri) != c.uri]
