"""``ser score`` end to end on generated archives: local and S3 (moto), reruns, --force, a crash and a killed worker.

The model is an untrained bundle built here, so the checks are about the pipeline and the output contract,
read back with DuckDB; expected window counts come from the ``ser_core`` functions run directly on each file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from jobs.score import ScoreJobConfig, run_score
from jobs.score import cli as score_cli
from ser_core.audio.decoding import decode
from ser_core.audio.segmentation import Segmentation, call_regions, call_windows
from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS
from ser_core.models.bundle import load_bundle, save_bundle
from ser_core.models.cnn import ModelConfig, build_model
from ser_core.reports.schema import CALLS, SEGMENTS
from ser_core.scoring.inputs import AUDIO_EXTENSIONS
from tests.audio_factory import speech_like, write_audio, write_corrupt_files, write_speech

SPEC = FeatureSpec()
DATE = "2026-11-23"
LEAK = 10 ** (-30 / 20)
AGENT_TALKS, CUSTOMER_TALKS = (0.5, 6.0), (7.0, 13.0)


def make_bundle(folder: Path, seed: int) -> Path:
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    model = build_model(SPEC, ModelConfig(filters=(8, 8), kernel_size=3))
    return save_bundle(model, SPEC, np.zeros(SPEC.n_features), np.ones(SPEC.n_features), folder)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """An untrained bundle: real weights, loading and inference, meaningless emotions."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "model", seed=1)


def turn_taking_call(rate: int, seconds: float = 14.0) -> np.ndarray:
    """Stereo: the agent talks on channel 0, then the customer on channel 1; each leaks 30 dB down into the other."""
    agent, customer = np.zeros((2, int(seconds * rate)), np.float32)
    for track, (start, end), f0 in ((agent, AGENT_TALKS, 120.0), (customer, CUSTOMER_TALKS, 210.0)):
        track[int(start * rate) : int(start * rate) + int((end - start) * rate)] = speech_like(end - start, rate, f0=f0)
    return np.stack([agent + LEAK * customer, customer + LEAK * agent], axis=1)


def build_archive(root: Path) -> dict[str, str]:
    """Calls of every supported kind plus the bad files; returns call_id -> expected status."""
    day = root / DATE
    write_audio(day / "queue-1" / "c-stereo8k.wav", turn_taking_call(8000), 8000)
    write_speech(day / "queue-1" / "c-mono16k.flac", seconds=8.0, sample_rate=16000)
    write_speech(day / "queue-2" / "c-stereo16k.flac", seconds=10.0, sample_rate=16000, channels=2)
    write_speech(day / "queue-2" / "c-mulaw.wav", seconds=6.0, sample_rate=8000, subtype="ULAW")
    write_speech(day / "queue-3" / "c-vorbis.ogg", seconds=6.0, sample_rate=44100, channels=2, subtype="VORBIS")
    write_speech(day / "queue-3" / "c-mpeg.mp3", seconds=6.0, sample_rate=48000)
    write_audio(day / "queue-2" / "c-silence.wav", np.zeros(5 * 8000, np.float32), 8000)
    write_audio(root / "2026-11-24" / "quiet" / "c-hiss.flac", (1e-4 * np.random.default_rng(0).standard_normal(5 * 16000)).astype(np.float32), 16000)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not an input: not an audio extension")
    expected = {p.relative_to(root).with_suffix("").as_posix(): "ok" for p in root.rglob("*") if p.suffix in AUDIO_EXTENSIONS}
    for path in write_corrupt_files(root / "bad").values():
        expected[path.relative_to(root).with_suffix("").as_posix()] = "error"
    return expected


def expected_windows(uri: str, config: Segmentation = Segmentation()) -> int:
    """Windows the pipeline must score for ``uri``, computed without Ray."""
    audio = decode(uri, target_rate=SPEC.sample_rate, mono=False)
    regions = call_regions(audio.samples, SPEC, config)
    return sum(len(batch.windows) for batch in call_windows(audio.samples, regions, SPEC, config))


def connect(out: str) -> duckdb.DuckDBPyConnection:
    """DuckDB with views ``calls`` and ``segments`` over the reports (S3 through a registered s3fs)."""
    con = duckdb.connect()
    if out.startswith("s3://"):
        import s3fs

        con.register_filesystem(s3fs.S3FileSystem(skip_instance_cache=True))
    for table in ("calls", "segments"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{out}/{table}/*/*.parquet', hive_partitioning = true)")
    return con


def frame(con: duckdb.DuckDBPyConnection, sql: str):
    """A query's result as a pandas DataFrame (through Arrow)."""
    return con.sql(sql).to_arrow_table().to_pandas()


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    return con.sql(sql).to_arrow_table().to_pylist()


def score(archive, out, bundle, **changes):
    config = ScoreJobConfig(archive=str(archive), out=str(out), model=str(bundle), workers=1, progress=False, **{"date": DATE, **changes})
    return run_score(config)


def check_contract(out: str, expected: dict[str, str], archive: str, model_version: str) -> None:
    """Everything the output contract promises, for a complete run over ``build_archive``."""
    con = connect(out)
    calls = {r["call_id"]: r for r in rows(con, "SELECT * FROM calls")}
    assert con.sql("SELECT count(*) FROM calls").fetchall()[0][0] == len(expected)  # exactly one row per input file
    assert {k: r["status"] for k, r in calls.items()} == expected
    for call in calls.values():
        assert (call["error"] is None) == (call["status"] == "ok")
        assert call["source_uri"] == f"{archive}/{call['call_id']}{Path(call['source_uri']).suffix}"
    assert con.sql("SELECT DISTINCT CAST(date AS VARCHAR), model_version FROM calls").fetchall() == [(DATE, model_version)]
    assert con.sql("SELECT count(DISTINCT run_id), count(scored_at) FROM calls").fetchall()[0] == (1, len(expected))

    segments = frame(con, "SELECT * FROM segments")
    probs = segments[[f"prob_{e}" for e in EMOTIONS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (segments["emotion"] == np.array(EMOTIONS)[probs.argmax(axis=1)]).all()
    assert np.allclose(segments["confidence"], probs.max(axis=1))
    assert not segments.duplicated(["call_id", "channel", "start_s"]).any()
    durations = segments["call_id"].map({k: r["duration_s"] for k, r in calls.items()})
    assert ((segments["start_s"] >= 0) & (segments["end_s"] > segments["start_s"]) & (segments["end_s"] <= durations + 1e-6)).all()
    assert (segments["rms_db"] < 0).all() and (segments["model_version"] == model_version).all()
    assert set(segments["call_id"]) <= {k for k, v in expected.items() if v == "ok"}

    for call_id, call in calls.items():
        if call["status"] != "ok":
            continue
        mine = segments[segments["call_id"] == call_id]
        assert len(mine) == expected_windows(call["source_uri"])
        roles = ("mono",) if call["channels"] == 1 else ("agent", "customer")
        assert set(mine["speaker_role"]) <= set(roles)
        for role in roles:
            assert call[f"{role}_segments"] == (mine["speaker_role"] == role).sum()
        if call["channels"] == 2:
            assert (mine["channel"] == np.where(mine["speaker_role"] == "agent", 0, 1)).all()
            assert call["escalated"] in (True, False)

    stereo = calls[f"{DATE}/queue-1/c-stereo8k"]
    assert (stereo["sample_rate"], stereo["channels"]) == (8000, 2)
    assert stereo["agent_speech_s"] == pytest.approx(AGENT_TALKS[1] - AGENT_TALKS[0], abs=0.5)
    assert stereo["customer_speech_s"] == pytest.approx(CUSTOMER_TALKS[1] - CUSTOMER_TALKS[0], abs=0.5)
    turns = segments[segments["call_id"] == stereo["call_id"]]
    agent, customer = turns[turns["speaker_role"] == "agent"], turns[turns["speaker_role"] == "customer"]
    assert len(agent) and agent["end_s"].max() <= AGENT_TALKS[1] + 0.5  # the leak of the customer is not scored
    assert len(customer) and customer["start_s"].min() >= CUSTOMER_TALKS[0] - 0.5
    for name, rate, channels in (("queue-3/c-vorbis", 44100, 2), ("queue-3/c-mpeg", 48000, 1), ("queue-2/c-mulaw", 8000, 1)):
        assert (calls[f"{DATE}/{name}"]["sample_rate"], calls[f"{DATE}/{name}"]["channels"]) == (rate, channels)
    mono16k = calls[f"{DATE}/queue-1/c-mono16k"]
    assert (mono16k["sample_rate"], mono16k["channels"], mono16k["agent_speech_s"]) == (16000, 1, None)
    assert mono16k["mono_speech_s"] > 0 and mono16k["escalated"] is None
    for quiet in (f"{DATE}/queue-2/c-silence", "2026-11-24/quiet/c-hiss"):
        assert calls[quiet]["status"] == "ok" and calls[quiet]["mono_speech_s"] == 0 and calls[quiet]["mono_segments"] == 0
    for table, schema in (("calls", CALLS), ("segments", SEGMENTS)):
        files = sorted(Path(out, table).glob("date=*/*.parquet")) if not out.startswith("s3://") else []
        for path in files:
            assert pq.read_schema(path).remove_metadata().equals(schema)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("archive") / "calls"
    return root, build_archive(root)


@pytest.fixture(scope="module")
def scored(archive, bundle, tmp_path_factory, local_ray):
    """One complete local run, shared by the tests that start from it (each copies the output first)."""
    root, expected = archive
    out = tmp_path_factory.mktemp("scored") / "reports"
    summary = score(root, out, bundle)
    return out, summary


def test_local_run_meets_the_output_contract(archive, bundle, scored):
    root, expected = archive
    out, summary = scored
    n_ok = sum(v == "ok" for v in expected.values())
    assert (summary.files, summary.ok, summary.error, summary.skipped) == (len(expected), n_ok, len(expected) - n_ok, 0)
    assert {call_id for call_id, _ in summary.errors} == {k for k, v in expected.items() if v == "error"}
    assert all(reason for _, reason in summary.errors)
    check_contract(str(out), expected, str(root), load_bundle(bundle).version)


def test_rerun_skips_done_calls_and_force_replaces(archive, bundle, scored, tmp_path):
    root, expected = archive
    out = tmp_path / "reports"
    shutil.copytree(scored[0], out)
    before = connect(str(out)).sql("SELECT call_id, channel, start_s, emotion FROM segments ORDER BY ALL").fetchall()
    n_ok = sum(v == "ok" for v in expected.values())

    again = score(root, out, bundle)
    assert (again.ok, again.error, again.skipped) == (0, len(expected) - n_ok, n_ok)  # failed calls are retried
    assert again.replaced == len(expected) - n_ok
    con = connect(str(out))
    assert con.sql("SELECT call_id, channel, start_s, emotion FROM segments ORDER BY ALL").fetchall() == before
    assert con.sql("SELECT count(*), count(DISTINCT call_id) FROM calls").fetchall()[0] == (len(expected), len(expected))

    forced = score(root, out, bundle, force=True, date="2026-11-25")
    assert (forced.ok, forced.skipped, forced.replaced) == (n_ok, 0, len(expected))
    con = connect(str(out))
    assert con.sql("SELECT call_id, channel, start_s, emotion FROM segments ORDER BY ALL").fetchall() == before
    assert con.sql("SELECT DISTINCT run_id, CAST(date AS VARCHAR) FROM calls").fetchall() == [(forced.run_id, "2026-11-25")]
    assert con.sql("SELECT DISTINCT run_id FROM segments").fetchall() == [(forced.run_id,)]
    assert not list(Path(out, "segments", f"date={DATE}").glob("*.parquet"))  # emptied parts are removed


def test_a_new_model_version_rescores(archive, bundle, scored, tmp_path):
    root, expected = archive
    out = tmp_path / "reports"
    shutil.copytree(scored[0], out)
    other = make_bundle(tmp_path / "other-model", seed=2)
    summary = score(root, out, other)
    assert summary.skipped == 0 and summary.model_version != scored[1].model_version
    check_contract(str(out), expected, str(root), summary.model_version)


def test_s3_archive_and_reports_through_the_cli(archive, bundle, s3_bucket, local_ray):
    import s3fs

    root, expected = archive
    fs = s3fs.S3FileSystem()
    fs.put(str(root), f"{s3_bucket}/archive", recursive=True)
    fs.invalidate_cache()
    archive_uri, out = f"{s3_bucket}/archive", f"{s3_bucket}/reports"
    args = ["--archive", archive_uri, "--out", out, "--date", DATE, "--model", str(bundle), "--workers", "1", "--no-progress"]
    result = CliRunner().invoke(score_cli, [*args, "--agent-channel", "1"])
    assert result.exit_code == 0, result.output
    n_ok = sum(v == "ok" for v in expected.values())
    assert f"{len(expected)} files: {n_ok} ok, {len(expected) - n_ok} error, 0 skipped" in result.output
    con = connect(out)
    assert con.sql("SELECT count(*), count(DISTINCT call_id) FROM calls").fetchall()[0] == (len(expected), len(expected))
    assert {r["call_id"]: r["status"] for r in rows(con, "SELECT call_id, status FROM calls")} == expected
    roles = dict(con.sql("SELECT DISTINCT channel, speaker_role FROM segments WHERE speaker_role <> 'mono'").fetchall())
    assert roles == {0: "customer", 1: "agent"}  # --agent-channel 1
    stereo = rows(con, f"SELECT * FROM calls WHERE call_id = '{DATE}/queue-1/c-stereo8k'")[0]
    assert stereo["customer_speech_s"] == pytest.approx(AGENT_TALKS[1] - AGENT_TALKS[0], abs=0.5)
    assert stereo["source_uri"] == f"{archive_uri}/{DATE}/queue-1/c-stereo8k.wav"

    rerun = CliRunner().invoke(score_cli, [*args, "--agent-channel", "1"])
    assert rerun.exit_code == 0 and f"{n_ok} skipped" in rerun.output, rerun.output
    assert connect(out).sql("SELECT count(*) FROM calls").fetchall()[0][0] == len(expected)


def long_archive(root: Path, calls: int, seconds: float) -> dict[str, str]:
    for i in range(calls):
        write_audio(root / "day" / f"c-{i:02d}.wav", np.tile(turn_taking_call(8000), (int(seconds // 14), 1)), 8000)
    return {f"day/c-{i:02d}": "ok" for i in range(calls)}


def check_complete(out: Path, root: Path, expected: dict[str, str]) -> None:
    con = connect(str(out))
    assert con.sql("SELECT count(*), count(DISTINCT call_id) FROM calls").fetchall()[0] == (len(expected), len(expected))
    assert {r["call_id"]: r["status"] for r in rows(con, "SELECT call_id, status FROM calls")} == expected
    assert con.sql("SELECT count(*) FROM (SELECT call_id, channel, start_s FROM segments GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0] == 0
    counts = dict(con.sql("SELECT call_id, count(*) FROM segments GROUP BY call_id").fetchall())
    assert counts == {call_id: expected_windows(str(root / f"{call_id}.wav")) for call_id in expected}


def committed_parts(out: Path) -> list[Path]:
    return list((out / "calls").glob("date=*/*.parquet"))


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_rerun_after_the_job_is_killed_completes_without_duplicates(bundle, tmp_path, local_ray):
    root, out = tmp_path / "archive", tmp_path / "reports"
    expected = long_archive(root, calls=8, seconds=70)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "jobs.cli", "score", "--archive", str(root), "--out", str(out), "--date", DATE,
               "--model", str(bundle), "--workers", "1", "--calls-per-part", "1", "--no-progress"]
    job = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: committed_parts(out) or job.poll() is not None, timeout=240)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    done_before = len(committed_parts(out))
    assert 0 < done_before < len(expected), "the kill must land mid-job"

    summary = score(root, out, bundle)
    assert summary.skipped == done_before and summary.ok == len(expected) - done_before
    check_complete(out, root, expected)


def descendants_named(name: str) -> list[int]:
    """Processes below this one (Ray workers of the test's local Ray) whose command line contains ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            pid = int(entry.name)
            ancestor = pid
            while ancestor > 1 and ancestor != os.getpid():
                ancestor = int((Path("/proc") / str(ancestor) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ancestor == os.getpid() and name in cmdline:
            found.append(pid)
    return found


@pytest.mark.slow
def test_a_killed_worker_loses_and_duplicates_no_call(bundle, tmp_path, local_ray):
    root, out = tmp_path / "archive", tmp_path / "reports"
    expected = long_archive(root, calls=8, seconds=70)
    outcome: dict = {}

    def job():
        try:
            outcome["summary"] = score(root, out, bundle, calls_per_part=1)
        except Exception as err:  # reported by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=job)
    thread.start()
    wait_for(lambda: committed_parts(out) or not thread.is_alive(), timeout=240)
    workers = descendants_named("CallScorer")
    parts_at_kill = len(committed_parts(out))
    for pid in workers[:1]:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert workers and not thread.is_alive() and "error" not in outcome, outcome
    assert parts_at_kill < len(expected), "the kill must land mid-job"
    assert outcome["summary"].ok == len(expected) and outcome["summary"].error == 0
    check_complete(out, root, expected)


def test_segments_follow_the_turns_of_a_generated_archive(bundle, tmp_path, local_ray):
    from ser_core.audio.call_archive import ArchiveConfig, make_archive

    make_archive(ArchiveConfig(out=str(tmp_path / "demo"), calls=3, customer_turns=4, date=DATE, seed=3))
    summary = score(tmp_path / "demo" / "audio", tmp_path / "reports", bundle)
    assert (summary.ok, summary.error) == (3, 0)
    truth = pq.read_table(tmp_path / "demo" / "ground_truth.parquet").to_pandas()
    segments = frame(connect(str(tmp_path / "reports")), "SELECT * FROM segments")
    vad = Segmentation().vad  # regions reach edge_db (35 dB) below their peak, the truth 30 dB; then the padding
    slack = max(vad.pad_s, vad.hangover_s) + vad.level_smooth_s + 0.1
    for role, turns in truth.groupby("role"):
        mine = segments[segments["speaker_role"] == role]
        for segment in mine.itertuples():  # every segment lies inside one of its speaker's turns
            same_call = turns[turns["call_id"] == segment.call_id]
            assert ((same_call["start_s"] - slack <= segment.start_s) & (segment.end_s <= same_call["end_s"] + slack)).any()
        for turn in turns[turns["end_s"] - turns["start_s"] >= 0.5].itertuples():  # every turn is scored
            same_call = mine[mine["call_id"] == turn.call_id]
            assert ((same_call["start_s"] < turn.end_s) & (same_call["end_s"] > turn.start_s)).any()


def snapshot(out: Path) -> dict[str, bytes]:
    """The report files under ``out`` (temporaries included, the lease aside) with their bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.parquet*"))}


def test_force_with_a_broken_model_fails_and_keeps_the_good_rows(archive, bundle, scored, tmp_path):
    root, _ = archive
    out = tmp_path / "reports"
    shutil.copytree(scored[0], out)
    before = snapshot(out)
    broken = tmp_path / "broken-model"
    shutil.copytree(bundle, broken)
    (broken / "model.keras").write_bytes(b"not a model")  # bundle.json is fine: only loading the weights tells

    args = ["--archive", str(root), "--out", str(out), "--date", DATE, "--model", str(broken), "--workers", "1", "--no-progress"]
    result = CliRunner().invoke(score_cli, [*args, "--force"])
    assert result.exit_code != 0 and "is not usable" in result.output, result.output
    assert snapshot(out) == before
