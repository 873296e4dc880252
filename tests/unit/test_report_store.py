"""The report store without Ray: commit, replacement, recovery and the writer lease, locally and on S3 (moto)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from ser_core import storage
from ser_core.reports.schema import CALLS, SEGMENTS, TURNS
from ser_core.reports.store import LEASE_FILE, Lease, LeaseHeld, LeaseLost, ReportStore, already_scored

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)


def calls_table(inputs: dict[str, str], run_id: str, at: dt.datetime, status: str = "ok", agent_channel: int = 0) -> pa.Table:
    """Calls rows for ``call_id -> source_uri``."""
    n = len(inputs)
    return pa.table({"call_id": list(inputs), "source_uri": list(inputs.values()), "status": [status] * n,
                     "channels": [2] * n, "agent_channel": [agent_channel] * n, "model_version": ["m1"] * n,
                     "run_id": [run_id] * n, "scored_at": [at] * n}).cast(
        pa.schema([CALLS.field(name) for name in ("call_id", "source_uri", "status", "channels", "agent_channel",
                                                   "model_version", "run_id", "scored_at")]))


def segments_table(call_ids: list[str], run_id: str, at: dt.datetime, per_call: int = 3) -> pa.Table:
    ids = [c for c in call_ids for _ in range(per_call)]
    n = len(ids)
    return pa.table({"call_id": ids, "channel": [0] * n, "start_s": [float(i % per_call) for i in range(n)],
                     "run_id": [run_id] * n, "scored_at": [at] * n}).cast(
        pa.schema([SEGMENTS.field(name) for name in ("call_id", "channel", "start_s", "run_id", "scored_at")]))


def turns_table(call_ids: list[str], run_id: str, at: dt.datetime) -> pa.Table:
    n = len(call_ids)
    return full(pa.table({"call_id": call_ids, "turn": list(range(n)), "run_id": [run_id] * n, "scored_at": [at] * n}), TURNS)


def full(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the missing columns of ``schema`` as nulls."""
    return pa.table({f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                     for f in schema}, schema=schema)


def commit(store: ReportStore, name: str, inputs: dict[str, str], run_id: str, at: dt.datetime, **kwargs) -> int:
    details = {"segments": full(segments_table(list(inputs), run_id, at), SEGMENTS), "turns": turns_table(list(inputs), run_id, at)}
    return store.commit(name, details, full(calls_table(inputs, run_id, at, **kwargs), CALLS))


def rows(out: str, table: str) -> list[dict]:
    schema = {"calls": CALLS, "segments": SEGMENTS, "turns": TURNS}[table]
    return storage.read_parquet_parts(storage.join(out, table), schema).to_pylist()


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "reports")
    return request.getfixturevalue("s3_bucket") + "/reports"


def test_a_replacement_leaves_one_row_per_source_uri(out):
    day1 = {"2026-11-20/q/c-1": "s3://a/2026-11-20/q/c-1.wav", "2026-11-20/q/c-2": "s3://a/2026-11-20/q/c-2.wav"}
    day2 = {"2026-11-21/q/c-1": "s3://a/2026-11-21/q/c-1.wav"}  # the same file name on another day: another input
    with Lease(out, "run-a") as lease:
        store = ReportStore(out, lease)
        assert store.recover() == {}
        assert commit(store, "date=2026-11-20/part-a-0.parquet", day1, "run-a", T0) == 0
        assert commit(store, "date=2026-11-21/part-a-1.parquet", day2, "run-a", T0) == 0
        again = {"2026-11-20/q/c-1": day1["2026-11-20/q/c-1"]}
        assert commit(store, "date=2026-11-22/part-b-0.parquet", again, "run-b", T0 + dt.timedelta(hours=1)) == 1
    calls = rows(out, "calls")
    assert sorted((r["source_uri"], r["run_id"]) for r in calls) == sorted(
        [(day1["2026-11-20/q/c-1"], "run-b"), (day1["2026-11-20/q/c-2"], "run-a"), (day2["2026-11-21/q/c-1"], "run-a")])
    segments = rows(out, "segments")
    assert sorted({(r["call_id"], r["run_id"]) for r in segments}) == sorted({(r["call_id"], r["run_id"]) for r in calls})
    assert len(segments) == 3 * len(calls)


def test_recovery_removes_only_what_never_committed_or_was_superseded(tmp_path):
    out = str(tmp_path / "reports")
    first = {"d/c-1": "/a/d/c-1.wav", "d/c-2": "/a/d/c-2.wav"}
    with Lease(out, "run-a") as lease:
        store = ReportStore(out, lease)
        store.recover()
        commit(store, "date=d/part-a-0.parquet", first, "run-a", T0)
    part = Path(out, "calls", "date=d", "part-a-0.parquet")
    # a crashed run: its segments file without calls, a temporary file, and a replacement whose old rows remain
    Path(out, "segments", "date=d", "part-c-0.parquet").write_bytes(Path(out, "segments", "date=d", "part-a-0.parquet").read_bytes())
    Path(out, "turns", "date=d", "part-c-0.parquet").write_bytes(Path(out, "turns", "date=d", "part-a-0.parquet").read_bytes())
    Path(out, "calls", "date=d", "part-c-1.parquet.tmp-0123").write_bytes(part.read_bytes())
    newer = {"d/c-1": first["d/c-1"]}
    storage.write_parquet_atomic(full(segments_table(list(newer), "run-b", T0), SEGMENTS), str(Path(out, "segments", "date=d", "part-b-0.parquet")))
    storage.write_parquet_atomic(turns_table(list(newer), "run-b", T0), str(Path(out, "turns", "date=d", "part-b-0.parquet")))
    storage.write_parquet_atomic(full(calls_table(newer, "run-b", T0 + dt.timedelta(hours=1)), CALLS), str(Path(out, "calls", "date=d", "part-b-0.parquet")))

    with Lease(out, "run-d") as lease:
        latest = ReportStore(out, lease).recover()
    assert {uri: row.run_id for uri, row in latest.items()} == {first["d/c-1"]: "run-b", first["d/c-2"]: "run-a"}
    assert sorted(p.name for p in Path(out).rglob("*.parquet*")) == ["part-a-0.parquet"] * 3 + ["part-b-0.parquet"] * 3
    assert sorted((r["call_id"], r["run_id"]) for r in rows(out, "calls")) == [("d/c-1", "run-b"), ("d/c-2", "run-a")]
    for table in ("segments", "turns"):
        assert sorted({(r["call_id"], r["run_id"]) for r in rows(out, table)}) == [("d/c-1", "run-b"), ("d/c-2", "run-a")]


def test_parts_written_before_the_agent_channel_column_read_as_unknown(tmp_path):
    out = str(tmp_path / "reports")
    old = calls_table({"d/c-1": "/a/d/c-1.wav"}, "run-a", T0).drop_columns(["agent_channel"])
    storage.write_parquet_atomic(old, str(Path(out, "calls", "date=d", "part-a-0.parquet")))
    storage.write_parquet_atomic(segments_table(["d/c-1"], "run-a", T0), str(Path(out, "segments", "date=d", "part-a-0.parquet")))
    with Lease(out, "run-b") as lease:
        (row,) = ReportStore(out, lease).recover().values()
    assert row.agent_channel is None and not already_scored(row, "m1", 0)


def test_already_scored_needs_ok_same_model_and_agent_channel(tmp_path):
    out = str(tmp_path / "reports")
    with Lease(out, "run-a") as lease:
        store = ReportStore(out, lease)
        store.recover()
        commit(store, "date=d/part-a-0.parquet", {"d/ok": "/a/ok.wav"}, "run-a", T0, agent_channel=1)
        commit(store, "date=d/part-a-1.parquet", {"d/bad": "/a/bad.wav"}, "run-a", T0, status="error")
        latest = store.latest
    assert already_scored(latest["/a/ok.wav"], "m1", 1)
    assert not already_scored(latest["/a/ok.wav"], "m1", 0)  # another --agent-channel
    assert not already_scored(latest["/a/ok.wav"], "m2", 1)  # another model
    assert not already_scored(latest["/a/bad.wav"], "m1", 0)
    assert not already_scored(None, "m1", 0)


def test_one_writer_at_a_time(out):
    first = Lease(out, "run-a", ttl_s=30)
    first.acquire()
    with pytest.raises(LeaseHeld, match="run-a"):
        Lease(out, "run-b", ttl_s=30).acquire()
    first.check()
    first.release()
    with Lease(out, "run-b", ttl_s=30) as second:
        second.check()


def test_an_expired_or_orphaned_lease_is_taken_over(out):
    lease_uri = storage.join(out, LEASE_FILE)
    storage.write_bytes_atomic(lease_uri, json.dumps({"owner": "gone", "host": "elsewhere", "pid": 1, "expires_at": time.time() - 1}).encode())
    with Lease(out, "run-b") as lease:
        lease.check()
    dead_pid = 2**22 + 12345  # above Linux's pid_max: no such process on this host
    import socket

    storage.write_bytes_atomic(lease_uri, json.dumps({"owner": "killed", "host": socket.gethostname(), "pid": dead_pid,
                                                      "expires_at": time.time() + 3600}).encode())
    with Lease(out, "run-c") as lease:
        lease.check()


def test_a_writer_that_lost_its_lease_stops(out):
    lease = Lease(out, "run-a", ttl_s=0.6)
    lease.acquire()
    store = ReportStore(out, lease)
    store.recover()
    lease_uri = storage.join(out, LEASE_FILE)
    storage.write_bytes_atomic(lease_uri, json.dumps({"owner": "intruder", "host": "elsewhere", "pid": 1,
                                                      "expires_at": time.time() + 3600}).encode())
    time.sleep(0.5)  # the heartbeat (every ttl / 3) finds the lease replaced
    with pytest.raises(LeaseLost):
        commit(store, "date=d/part-a-0.parquet", {"d/c": "/a/c.wav"}, "run-a", T0)
    lease.release()
    assert not storage.parquet_files(storage.join(out, "calls"))
    assert json.loads(storage.read_bytes(lease_uri))["owner"] == "intruder"  # release never touches a lost lease


def test_a_lease_write_that_fails_leaves_no_temporary_and_names_the_file(tmp_path):
    """A real failed write: the process may write files of at most 16 bytes (as a full disk, it fails midway)."""
    out = tmp_path / "out"
    script = ("import resource, signal, sys\n"
              "from ser_core.reports.store import Lease\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.RLIM_INFINITY))\n"
              "try:\n"
              "    Lease(sys.argv[1], owner='run-1').acquire()\n"
              "except OSError as err:\n"
              "    sys.exit(f'{type(err).__name__}|{err.filename}|{err.strerror}')\n")
    failed = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"OSError|{out / LEASE_FILE}|File too large"
    assert sorted(p.name for p in out.iterdir()) == [LEASE_FILE + ".lock"]  # no *.tmp-* left behind
