"""The contact centre's own fields per recording (``ser score --metadata``): read, typed, matched to calls.

A metadata file is CSV or Parquet with one row per recording, keyed by a column ``path`` (the recording's path
relative to the archive) or, without it, ``call_id``. Columns of :data:`ser_core.reports.schema.CONTACT_FIELDS` and
``queue`` become typed columns of ``calls`` (``started_at``: ISO 8601, naive times taken as UTC); every other column
goes, as text, into the ``metadata`` map. Rows that match no recording and recordings without a row are counted,
never an error. Without a ``queue`` from the file, a call's queue is the folder that holds its recording.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ser_core import storage
from ser_core.errors import SerError
from ser_core.reports.schema import CONTACT_FIELDS
from ser_core.scoring.inputs import DAY_FOLDER

KEYS = ("path", "call_id")
TYPED = ("queue", *(name for name, _ in CONTACT_FIELDS))
NO_QUEUE = "(none)"


class MetadataError(SerError, ValueError):
    """A metadata file that cannot be used (unreadable, no key column, repeated keys, bad times)."""


def folder_queue(path: str) -> str:
    """The queue named by the folder holding a recording: its last folder, ``(none)`` for a day folder or none. Only
    ``/`` separates folders: a backslash is part of a name.

    >>> folder_queue("/a/2026-11-23/billing/c-1.wav"), folder_queue("/a/2026-11-23/c-1.wav"), folder_queue("c.wav")
    ('billing', '(none)', '(none)')
    """
    folder = posixpath.basename(posixpath.dirname(path))
    return NO_QUEUE if not folder or DAY_FOLDER.fullmatch(folder) else folder


def _normalised(path: str) -> str:
    return posixpath.normpath(str(path).replace("\\", "/")).lstrip("/")


@dataclass
class ContactMetadata:
    """The rows of a metadata file by key (``path`` or ``call_id``), each as the ``calls`` columns it fills."""

    key: str
    rows: dict[str, dict]
    used: set[str] = field(default_factory=set)

    def lookup(self, call_id: str, relative_path: str) -> dict | None:
        """The columns for one recording (``relative_path`` to the archive), or None when the file has no row."""
        key = _normalised(relative_path) if self.key == "path" else call_id
        found = self.rows.get(key)
        if found is not None:
            self.used.add(key)
        return found

    @property
    def unmatched(self) -> int:
        """Rows looked up by no recording so far."""
        return len(self.rows) - len(self.used)


def _read_frame(uri: str) -> pd.DataFrame:
    """The file's rows; CSV columns all as text (typing is ours, not the CSV reader's guess)."""
    fs, path = storage.filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            if uri.lower().endswith(".parquet"):
                return pq.read_table(handle).to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
            return pd.read_csv(handle, dtype="string", keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pa.ArrowInvalid) as err:
        raise MetadataError(f"cannot read metadata {uri}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _times(values: pd.Series, uri: str) -> list:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    else:
        try:
            parsed = pd.to_datetime(values, utc=True, format="ISO8601")
        except (ValueError, TypeError) as err:
            raise MetadataError(f"metadata {uri}: started_at is not an ISO 8601 time ({err})") from None
    return [None if pd.isna(v) else v.to_pydatetime() for v in parsed]


def read_metadata(uri: str) -> ContactMetadata:
    """Read and type a metadata file (see the module docstring); :class:`MetadataError` says what is wrong."""
    frame = _read_frame(uri)
    key = next((k for k in KEYS if k in frame.columns), None)
    if key is None:
        raise MetadataError(f"metadata {uri} has neither a 'path' nor a 'call_id' column (columns: {', '.join(map(str, frame.columns))})")
    keys = frame[key].astype("string")
    if keys.isna().any():
        raise MetadataError(f"metadata {uri}: {int(keys.isna().sum())} rows have no {key}")
    keys = keys.map(_normalised) if key == "path" else keys
    repeated = keys[keys.duplicated()]
    if len(repeated):
        raise MetadataError(f"metadata {uri}: {key} {repeated.iloc[0]!r} has more than one row")
    started = _times(frame["started_at"], uri) if "started_at" in frame else [None] * len(frame)
    others = [c for c in frame.columns if c not in KEYS and c not in TYPED]
    rows = {}
    for i, k in enumerate(keys):
        record = frame.iloc[i]
        row = {name: None if pd.isna(record[name]) else str(record[name]) for name in TYPED if name in frame and name != "started_at"}
        row["started_at"] = started[i]
        row["metadata"] = [(str(c), str(record[c])) for c in others if not pd.isna(record[c])]
        rows[k] = row
    return ContactMetadata(key, rows)


def contacts_by_call(calls: list[tuple[str, str]], metadata: ContactMetadata, archive: str) -> dict[str, dict]:
    """``call_id -> calls columns`` for the ``(call_id, uri)`` recordings that have a row in ``metadata`` (rows
    keyed by the path relative to ``archive`` or by call id); :attr:`ContactMetadata.unmatched` then counts the
    rows that matched none."""
    found = {call_id: metadata.lookup(call_id, storage.relative_to(uri, archive)) for call_id, uri in calls}
    return {call_id: row for call_id, row in found.items() if row is not None}
