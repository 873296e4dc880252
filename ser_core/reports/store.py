"""The report store of ``ser score``: Parquet parts under one prefix, their index, commit, recovery, and the writer lease.

Layout (a local folder or an ``s3://`` prefix)::

    OUT/segments/date=YYYY-MM-DD/part-<run_id>-<n>.parquet   one row per scored window (schema.SEGMENTS)
    OUT/turns/date=YYYY-MM-DD/part-<run_id>-<n>.parquet      one row per turn (schema.TURNS)
    OUT/calls/date=YYYY-MM-DD/part-<run_id>-<n>.parquet      one row per input file (schema.CALLS), the part's twin
    OUT/_writer_lease.json                                    who may write, and until when

State model
-----------
Identity
    An input is its ``source_uri`` (the file's path or URI); the index is keyed on it. ``call_id`` is the input's
    readable id; the job keeps it unique in the store (one ``source_uri`` per ``call_id``).
Committed
    A part is a group of calls written together: its detail files (segments, turns) first, its calls file (same
    name) last, each atomically (temporary name + rename locally, one PUT on S3). A part is committed once its calls
    file exists; a detail file without its calls twin is not (yet) committed, and a committed calls row refers to
    detail rows only of its own part. Replacing an input commits its new part first and then removes its older rows,
    so an input is in several committed parts only between those two steps, and its row with the latest
    ``(scored_at, run_id)`` is the valid one.
What recovery may remove
    Run at the start of every write session, by the lease holder only: local ``*.tmp-*`` leftovers of interrupted
    writes, detail files without a calls twin (a part whose commit never finished), and every row of an input
    but its latest (detail twins first, then calls; a part left empty is deleted). Nothing else is ever deleted.
Who may write
    Only the holder of the lease ``OUT/_writer_lease.json`` (owner run, host, pid, expiry). It is taken by a
    conditional create (S3 ``If-None-Match: *``; locally compare-and-replace under ``flock``), or by a conditional
    replace (S3 ``If-Match: <ETag>``) of a lease that expired, was released, or whose owner process on this host is
    gone. The holder renews it every third of its time to live; every change to the store checks it first, and a
    holder that lost it (or could not renew in time) stops with :class:`LeaseLost`. A second writer gets
    :class:`LeaseHeld` and changes nothing. Clocks of the writers' hosts are assumed to agree to within seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ser_core import storage
from ser_core.errors import SerError
from ser_core.reports.schema import CALLS, SEGMENTS, TURNS

log = logging.getLogger(__name__)

LEASE_FILE = "_writer_lease.json"
DETAILS = {"segments": SEGMENTS, "turns": TURNS}
"""The tables whose rows belong to a call of the same part (written before its calls file, removed with it)."""
INDEX_COLUMNS = ("call_id", "source_uri", "status", "model_version", "agent_channel", "scored_at", "run_id")


class LeaseHeld(SerError, RuntimeError):
    """Another live writer holds the report prefix."""


class LeaseLost(SerError, RuntimeError):
    """This writer no longer holds the report prefix (taken over, or not renewed in time)."""


@dataclass(frozen=True)
class IndexRow:
    """One committed calls row, as the index sees it."""

    call_id: str
    source_uri: str
    status: str
    model_version: str
    agent_channel: int | None
    scored_at: dt.datetime
    run_id: str
    part: str


def committed_files(out: str) -> dict[str, dict[str, str]]:
    """The files of the parts committed under ``out``: ``table -> {date=.../part: version}`` for ``calls`` and each
    table of :data:`DETAILS` (a detail file only with its calls twin). The same result before and after reading
    those files means the read saw one state of the store (every change replaces or removes a file)."""
    calls = storage.parquet_versions(storage.join(out, "calls"))
    files = {"calls": calls}
    for table in DETAILS:
        files[table] = {part: version for part, version in storage.parquet_versions(storage.join(out, table)).items()
                        if part in calls}
    return files


def already_scored(row: IndexRow | None, model_version: str, agent_channel: int) -> bool:
    """Whether ``row`` is a good result of this model with this agent channel (so the input needs no scoring)."""
    return row is not None and row.status == "ok" and row.model_version == model_version and row.agent_channel == agent_channel


# ------------------------------------------------------------------------------------------ the lease


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live(holder: dict | None) -> bool:
    """Whether a lease record still excludes other writers."""
    if holder is None or float(holder.get("expires_at", 0)) <= time.time():
        return False
    return holder.get("host") != socket.gethostname() or _pid_alive(int(holder.get("pid", 0)))


def _parse(data: bytes | None) -> dict | None:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None  # unreadable: as good as expired


class Lease:
    """The right to write one report prefix, held by one run at a time (see the module docstring)."""

    def __init__(self, out: str, owner: str, ttl_s: float = 120.0):
        self.uri = storage.join(out, LEASE_FILE)
        self.owner, self.ttl_s = owner, ttl_s
        self._version: str | None = None
        self._expires_at = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseHeld`; then keep renewing it in a background thread."""
        data, version = storage.read_versioned(self.uri)
        holder = _parse(data)
        if _live(holder):
            until = dt.datetime.fromtimestamp(float(holder["expires_at"]), dt.timezone.utc).isoformat(timespec="seconds")
            raise LeaseHeld(f"{self.uri} is held by run {holder.get('owner')} (host {holder.get('host')}, "
                            f"pid {holder.get('pid')}) until {until} unless renewed")
        if not self._write(version, time.time() + self.ttl_s):
            raise LeaseHeld(f"{self.uri} was taken by another writer at the same moment")
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="ser-lease", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this writer still holds the lease with time to spare."""
        if self._lost:
            raise LeaseLost(f"{self.uri}: {self._lost}")
        if time.time() > self._expires_at - self.ttl_s / 10:
            raise LeaseLost(f"{self.uri}: not renewed in time")

    def release(self) -> None:
        """Stop renewing and mark the lease free (a no-op when it was lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._lost and self._version is not None:
            self._write(self._version, 0.0)
        self._version = None

    def _write(self, version: str | None, expires_at: float) -> bool:
        record = {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "expires_at": expires_at}
        new = storage.write_if(self.uri, json.dumps(record).encode(), version)
        if new is None:
            return False
        self._version, self._expires_at = new, expires_at
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self._write(self._version, time.time() + self.ttl_s):
                    self._lost = "replaced by another writer"
                    return
            except OSError as err:  # transient: check() stops the writer once the lease runs out
                log.warning("could not renew %s: %s", self.uri, err)


# ------------------------------------------------------------------------------------------ the store


class ReportStore:
    """Index, commit, replacement and recovery of the parts under ``out``; every change checks ``lease``."""

    def __init__(self, out: str, lease: Lease):
        self.out, self.lease = out, lease
        self.calls_dir = storage.join(out, "calls")
        self.detail_dirs = {name: storage.join(out, name) for name in DETAILS}
        self.latest: dict[str, IndexRow] = {}

    def index(self) -> dict[str, list[IndexRow]]:
        """Every committed calls row, ``source_uri -> rows`` (several only after an interrupted replacement)."""
        rows: dict[str, list[IndexRow]] = {}
        for part in sorted(storage.parquet_files(self.calls_dir)):
            for row in self._read_index(part):
                rows.setdefault(row.source_uri, []).append(row)
        return rows

    def recover(self) -> dict[str, IndexRow]:
        """Repair what an interrupted writer left (see the module docstring); return each input's valid row."""
        self.lease.check()
        for folder in (self.calls_dir, *self.detail_dirs.values()):
            for leftover in storage.remove_temporaries(folder):
                log.warning("removed %s (an interrupted write)", leftover)
        committed = storage.parquet_files(self.calls_dir)
        for name, folder in self.detail_dirs.items():
            for orphan in sorted(storage.parquet_files(folder) - committed):
                log.warning("removing %s %s: its calls file was never written (interrupted run)", name, orphan)
                self.lease.check()
                storage.remove(storage.join(folder, orphan))
        self.latest = {}
        stale: dict[str, set[str]] = {}
        for source_uri, rows in self.index().items():
            rows = sorted(rows, key=lambda r: (r.scored_at, r.run_id))
            self.latest[source_uri] = rows[-1]
            for row in rows[:-1]:
                stale.setdefault(row.part, set()).add(source_uri)
        for part, uris in sorted(stale.items()):
            log.warning("removing %d superseded calls from %s (interrupted replacement)", len(uris), part)
            self._remove(part, uris)
        return dict(self.latest)

    def call_id_owners(self) -> dict[str, str]:
        """``call_id -> source_uri`` of the valid rows (after :meth:`recover`)."""
        return {row.call_id: row.source_uri for row in self.latest.values()}

    def commit(self, name: str, details: dict[str, pa.Table], calls: pa.Table) -> int:
        """Write the part ``name`` (each table of :data:`DETAILS`, then calls), then remove the older rows of its
        inputs; return how many."""
        for table, schema in DETAILS.items():
            self.lease.check()
            storage.write_parquet_atomic(details[table].cast(schema), storage.join(self.detail_dirs[table], name))
        self.lease.check()
        storage.write_parquet_atomic(calls.cast(CALLS), storage.join(self.calls_dir, name))
        stale: dict[str, set[str]] = {}
        for row in _index_rows(calls, name):
            old = self.latest.get(row.source_uri)
            if old is not None and old.part != name:
                stale.setdefault(old.part, set()).add(row.source_uri)
            self.latest[row.source_uri] = row
        for part, uris in sorted(stale.items()):
            self._remove(part, uris)
        return sum(len(uris) for uris in stale.values())

    def _read_index(self, part: str) -> list[IndexRow]:
        fs, path = storage.filesystem(storage.join(self.calls_dir, part))
        parquet = pq.ParquetFile(path, filesystem=fs)
        present = [c for c in INDEX_COLUMNS if c in parquet.schema_arrow.names]
        return _index_rows(parquet.read(columns=present), part)

    def _remove(self, part: str, source_uris: Iterable[str]) -> None:
        """Rewrite one part without ``source_uris``: detail tables first, then calls; delete the part if nothing is left."""
        calls_uri = storage.join(self.calls_dir, part)
        detail_uris = {name: storage.join(folder, part) for name, folder in self.detail_dirs.items()}
        if not storage.exists(calls_uri):
            return
        calls = storage.read_parquet(calls_uri)
        going = pc.is_in(calls.column("source_uri"), pa.array(sorted(source_uris), pa.string()))
        call_ids = calls.filter(going).column("call_id").combine_chunks()
        remaining = calls.filter(pc.invert(going))
        self.lease.check()
        if remaining.num_rows == 0:
            for uri in detail_uris.values():
                storage.remove(uri)
            storage.remove(calls_uri)
            return
        for name, uri in detail_uris.items():
            if storage.exists(uri):  # parts written before the table existed have none
                rows = storage.read_parquet(uri)
                kept = rows.filter(pc.invert(pc.is_in(rows.column("call_id"), call_ids)))
                if kept.num_rows != rows.num_rows:
                    storage.write_parquet_atomic(kept.cast(rows.schema), uri)
        self.lease.check()
        storage.write_parquet_atomic(remaining.cast(calls.schema), calls_uri)


def _index_rows(table: pa.Table, part: str) -> list[IndexRow]:
    """Index rows of a calls table (older parts may lack ``agent_channel``: it reads as null)."""
    columns = {name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
               for name in INDEX_COLUMNS}
    return [IndexRow(*values, part=part) for values in zip(*(columns[name] for name in INDEX_COLUMNS))]
