"""Users' own labelled data: a CSV with ``path,emotion,speaker`` and optional ``corpus,gender,text``.

Relative paths are resolved against the CSV's folder, and by default a row must stay inside it: an absolute
path, a URL (``s3://``, ``http://``, any fsspec protocol) or a path that climbs out with ``..`` becomes a reject
with its reason, so a manifest cannot make a job read files its author chose elsewhere. ``allow_outside_root``
lifts that for manifests the user trusts. Emotions may use common spellings (``fearful``,
``surprised``, ``ps``, ``anger``, ...); labels outside the canonical set become rejects with a reason.
"""

from __future__ import annotations

import io
import os
import posixpath
import re

import pandas as pd

from ser_core import storage
from ser_core.corpora.manifest import CorpusScan, Rejected, Utterance
from ser_core.labels import EMOTIONS

CORPUS = "manifest"
REQUIRED = ("path", "emotion", "speaker")
ALIASES = {
    "fearful": "fear",
    "scared": "fear",
    "surprised": "surprise",
    "ps": "surprise",
    "anger": "angry",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "disgusted": "disgust",
}


def canonical_emotion(label: str) -> str | None:
    """The canonical emotion for a user's ``label``, or ``None`` when it has none."""
    key = label.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in EMOTIONS else None


def outside_root(path: str) -> str | None:
    """Why a row's ``path`` leaves the manifest's folder (``None`` when it stays inside)."""
    posix = path.replace("\\", "/")
    if re.match(r"^[A-Za-z]:", posix) or posixpath.isabs(posix):
        return "an absolute path"
    if "::" in posix or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", posix):
        return "a URL"
    if posixpath.normpath(posix).split("/")[0] == "..":
        return "a path that climbs out with '..'"
    return None


def _resolve(path: str, base: str) -> str:
    if storage.is_remote(path) or posixpath.isabs(path):
        return path
    return storage.join(base, path)


def scan(csv_uri: str, allow_outside_root: bool = False) -> CorpusScan:
    """Rows of the CSV manifest at ``csv_uri``; rows outside its folder are rejected unless ``allow_outside_root``."""
    table = pd.read_csv(io.BytesIO(storage.read_bytes(csv_uri)), dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_uri}: manifest lacks column(s) {', '.join(missing)}; needs {', '.join(REQUIRED)}")
    base = posixpath.dirname(csv_uri) if storage.is_remote(csv_uri) else os.path.dirname(os.path.abspath(csv_uri))
    scan_result = CorpusScan()
    for row in table.to_dict("records"):
        corpus = row.get("corpus") or CORPUS
        outside = None if allow_outside_root else outside_root(row["path"])
        if outside:
            reason = f"path is {outside}, outside the manifest's folder (allowed only with allow_outside_root)"
            scan_result.rejected.append(Rejected(uri=row["path"], corpus=corpus, stage="manifest", reason=reason))
            continue
        uri = _resolve(row["path"], base)
        emotion = canonical_emotion(row["emotion"])
        if emotion is None:
            scan_result.rejected.append(
                Rejected(uri=uri, corpus=corpus, stage="manifest", reason=f"unknown emotion label {row['emotion']!r}")
            )
            continue
        if not row["speaker"]:
            scan_result.rejected.append(Rejected(uri=uri, corpus=corpus, stage="manifest", reason="empty speaker"))
            continue
        name = posixpath.splitext(row["path"].replace("\\", "/"))[0]
        scan_result.utterances.append(
            Utterance(
                utterance_id=f"{corpus}/{name}",
                uri=uri,
                corpus=corpus,
                speaker=row["speaker"],
                emotion=emotion,
                raw_label=row["emotion"],
                gender=row.get("gender") or None,
                text=row.get("text") or None,
            )
        )
    return scan_result
