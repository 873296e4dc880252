"""``ser score`` over many nights: call identity across day prefixes, what makes a call "already scored", inputs
that must become error rows (or mono), the model's label order, and two writers on one report prefix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ser_core.labels import EMOTIONS
from tests.audio_factory import speech_like, write_audio, write_speech
from tests.integration.test_score import (  # noqa: F401
    DATE,
    bundle,
    check_complete,
    connect,
    descendants_named,
    long_archive,
    rows,
    score,
    snapshot,
    turn_taking_call,
)
from tests.unit.test_audio import declare_huge

DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")


@pytest.fixture(scope="module")
def three_days(tmp_path_factory) -> tuple[Path, set[str]]:
    """Three ``ser make-archive`` outputs, one day each, with the same queue and call names every day."""
    from ser_core.audio.call_archive import ArchiveConfig, make_archive

    root = tmp_path_factory.mktemp("days")
    truth = set()
    for seed, day in enumerate(DAYS):
        make_archive(ArchiveConfig(out=str(root / day), calls=2, customer_turns=2, date=day, seed=seed))
        truth |= set(pq.read_table(root / day / "ground_truth.parquet").column("call_id").to_pylist())
    return root, truth


def test_day_prefixes_scored_into_one_out_give_every_input_one_row(three_days, bundle, tmp_path, local_ray):
    root, truth = three_days
    out = tmp_path / "reports"
    nights = [score(root / day / "audio" / day, out, bundle, date=day) for day in DAYS]
    assert [(s.ok, s.error, s.skipped, s.replaced) for s in nights] == [(2, 0, 0, 0)] * 3
    calls = rows(connect(str(out)), "SELECT call_id, source_uri, CAST(date AS VARCHAR) AS date FROM calls")
    assert len(calls) == 6 and len({r["source_uri"] for r in calls}) == 6
    assert {r["call_id"] for r in calls} == truth  # the day is part of the id, as in make-archive's ground truth
    assert all(r["call_id"].startswith(r["date"] + "/") for r in calls)
    segments = rows(connect(str(out)), "SELECT DISTINCT call_id FROM segments")
    assert {r["call_id"] for r in segments} == truth

    before = snapshot(out)
    reruns = [score(root / day / "audio" / day, out, bundle, date=day) for day in DAYS]
    backfill = score(root / DAYS[1] / "audio", out, bundle, date=DAYS[1])  # the archive root: the same ids
    assert [(s.ok, s.skipped) for s in [*reruns, backfill]] == [(0, 2)] * 4
    assert snapshot(out) == before  # no good row rewritten


def test_an_id_that_names_another_file_is_refused_before_any_work(three_days, bundle, tmp_path, local_ray):
    from ser_core.errors import Refused

    root, _ = three_days
    out = tmp_path / "reports"
    score(root / DAYS[0] / "audio" / DAYS[0], out, bundle)
    elsewhere = tmp_path / "copy" / DAYS[0]
    shutil.copytree(root / DAYS[0] / "audio" / DAYS[0], elsewhere)  # the same ids under another root
    before = snapshot(out)
    with pytest.raises(Refused, match="already name other files"):
        score(elsewhere, out, bundle)
    assert snapshot(out) == before
    assert score(elsewhere, out, bundle, id_root=str(tmp_path)).ok == 2  # ids relative to another root: copy/...


def test_a_changed_agent_channel_rescores_the_call(bundle, tmp_path, local_ray):
    archive, out = tmp_path / DATE, tmp_path / "reports"
    write_audio(archive / "q" / "c-1.wav", turn_taking_call(8000), 8000)
    from ser_core.scoring.calls import ScoringConfig

    assert score(archive, out, bundle).ok == 1
    assert score(archive, out, bundle).skipped == 1
    flipped = score(archive, out, bundle, scoring=ScoringConfig(agent_channel=1))
    assert (flipped.ok, flipped.skipped, flipped.replaced) == (1, 0, 1)
    (call,) = rows(connect(str(out)), "SELECT agent_channel, agent_speech_s, customer_speech_s FROM calls")
    assert call["agent_channel"] == 1  # channel 1 (the second speaker, 7-13 s) is now the agent
    assert (call["agent_speech_s"], call["customer_speech_s"]) == pytest.approx((6.0, 5.5), abs=0.5)


def test_an_edited_bundle_is_another_model_and_rescores(bundle, tmp_path, local_ray):
    archive, out = tmp_path / DATE, tmp_path / "reports"
    write_audio(archive / "q" / "c-1.wav", turn_taking_call(8000), 8000)
    first = score(archive, out, bundle)
    swapped = Path(shutil.copytree(bundle, tmp_path / "swapped"))
    info = json.loads((swapped / "bundle.json").read_text())
    info["labels"][:2] = info["labels"][1::-1]  # the same weights: every answer changes
    (swapped / "bundle.json").write_text(json.dumps(info))
    again = score(archive, out, swapped)
    assert again.model_version != first.model_version
    assert (again.ok, again.skipped, again.replaced) == (1, 0, 1)


@pytest.fixture(scope="module")
def odd_archive(tmp_path_factory) -> Path:
    """Dual-mono and near-dual-mono stereo, a true stereo call, float audio with huge samples, a lying header."""
    root = tmp_path_factory.mktemp("odd") / DATE
    voice = speech_like(12.0, 8000, f0=150.0)
    write_audio(root / "dual-mono.wav", np.stack([voice, voice], axis=1), 8000)
    hiss = 10 ** (-45 / 20) * 0.1 * np.random.default_rng(0).standard_normal(voice.size).astype(np.float32)
    write_audio(root / "near-dual-mono.flac", np.stack([voice, voice + hiss], axis=1), 8000)
    write_audio(root / "stereo.wav", turn_taking_call(8000), 8000)
    write_audio(root / "huge-samples.wav", voice * np.float32(1e30), 8000, subtype="FLOAT")  # levels overflow
    write_audio(root / "large-samples.wav", voice * np.float32(1e18), 8000, subtype="FLOAT")  # features overflow
    declare_huge(write_speech(root / "lying-header.flac", seconds=2.0, sample_rate=16000))
    return root


@pytest.fixture(scope="module")
def odd_scored(odd_archive, bundle, tmp_path_factory, local_ray) -> Path:
    out = tmp_path_factory.mktemp("odd-out") / "reports"
    score(odd_archive, out, bundle)
    return out


def test_dual_mono_is_scored_as_mono_and_bad_numbers_are_error_rows(odd_scored):
    calls = {r["call_id"].rsplit("/", 1)[1]: r for r in rows(connect(str(odd_scored)), "SELECT * FROM calls")}
    for name in ("dual-mono", "near-dual-mono"):
        call = calls[name]
        assert (call["status"], call["channels"]) == ("ok", 2)
        assert call["mono_segments"] > 0 and call["agent_speech_s"] is None and call["escalated"] is None
    assert calls["stereo"]["agent_segments"] > 0 and calls["stereo"]["customer_segments"] > 0
    for name in ("huge-samples", "large-samples"):
        assert calls[name]["status"] == "error" and "not finite" in calls[name]["error"], calls[name]
    assert calls["lying-header"]["status"] == "error" and "header declares" in calls["lying-header"]["error"]
    roles = dict(connect(str(odd_scored)).sql(
        "SELECT split_part(call_id, '/', 2), list(DISTINCT speaker_role) FROM segments GROUP BY ALL").fetchall())
    assert roles["dual-mono"] == ["mono"] and roles["near-dual-mono"] == ["mono"]
    assert "huge-samples" not in roles and "large-samples" not in roles


def test_probabilities_follow_the_bundles_label_order(odd_archive, odd_scored, bundle, tmp_path, local_ray):
    reordered = tmp_path / "reordered"
    shutil.copytree(bundle, reordered)
    info = json.loads((reordered / "bundle.json").read_text())
    info["labels"] = list(reversed(info["labels"]))  # the same weights, output columns named in another order
    (reordered / "bundle.json").write_text(json.dumps(info))
    out = tmp_path / "reports"
    score(odd_archive, out, reordered)
    query = "SELECT call_id, channel, start_s, {} FROM segments ORDER BY ALL".format(", ".join(f"prob_{e}" for e in EMOTIONS))
    original, mapped = (np.array([list(r.values())[3:] for r in rows(connect(str(o)), query)]) for o in (odd_scored, out))
    assert original.shape == mapped.shape and len(original)
    np.testing.assert_allclose(mapped, original[:, ::-1], atol=1e-6)


@pytest.mark.slow
def test_two_writers_on_the_same_out_one_is_refused(bundle, tmp_path, local_ray):
    root, out = tmp_path / "archive", tmp_path / "reports"
    expected = long_archive(root, calls=6, seconds=70)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "jobs.cli", "score", "--archive", str(root), "--out", str(out), "--date", DATE,
               "--model", str(bundle), "--workers", "1", "--calls-per-part", "1", "--no-progress"]
    # started together, they reach the lease within a second or two; the winner then starts Ray and its actors
    jobs = [subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        outputs = [job.communicate(timeout=600) for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    codes = sorted(job.returncode for job in jobs)
    refused = [err for job, (_, err) in zip(jobs, outputs) if job.returncode != 0]
    assert codes[0] == 0 and len(refused) == 1 and "another ser score is writing" in refused[0], outputs
    check_complete(out, root, expected)


@pytest.mark.slow
def test_a_file_that_keeps_killing_its_worker_is_given_up_and_a_good_row_kept(bundle, tmp_path, local_ray):
    root, out = tmp_path / "archive", tmp_path / "reports"
    (call_id,) = long_archive(root, calls=1, seconds=700)
    stop, killed = threading.Event(), []

    def kill_every_busy_scorer() -> None:  # a worker dies whenever it works on this call, as on a poisonous file
        while not stop.is_set():
            for pid in set(descendants_named("CallScorer)).submit")) - set(killed):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    def poisoned(**changes):
        stop.clear()
        killer = threading.Thread(target=kill_every_busy_scorer)
        killer.start()
        try:
            return score(root, out, bundle, task_retries=1, **changes)
        finally:
            stop.set()
            killer.join()

    first = poisoned()
    assert (first.ok, first.error, first.pipeline_error) == (0, 1, None) and len(killed) >= 2
    assert cpus_come_back(local_ray), "a restarted scoring actor outlived the run"
    (row,) = rows(connect(str(out)), "SELECT call_id, status, error FROM calls")
    assert row == {"call_id": call_id, "status": "error", "error": "the scoring worker died on this file 2 times"}

    good = score(root, out, bundle)
    assert good.ok == 1
    before = snapshot(out)
    forced = poisoned(force=True)
    assert (forced.ok, forced.error, forced.kept) == (0, 0, 1)
    assert snapshot(out) == before  # the good row stays
    assert cpus_come_back(local_ray), "a restarted scoring actor outlived the run"


def cpus_come_back(ray, timeout_s: float = 30.0) -> bool:
    """Whether every CPU of the session's Ray is free again within ``timeout_s``."""
    deadline = time.time() + timeout_s
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
        if time.time() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_ser_report_reads_committed_parts_while_force_replaces_them(three_days, bundle, tmp_path, local_ray):
    """``ser report --json`` run again and again beside ``ser score --force`` (one call a part, so every part is replaced
    while the reports run) never fails and sees every call exactly once."""
    root, _ = three_days
    archive, out, rules = root / DAYS[0] / "audio" / DAYS[0], tmp_path / "reports", tmp_path / "all.yaml"
    expected = sorted(pq.read_table(root / DAYS[0] / "ground_truth.parquet").column("call_id").unique().to_pylist())
    assert score(archive, out, bundle, date=DAYS[0], calls_per_part=1).ok == len(expected)
    rules.write_text("every call: true\n")
    ser, log = str(Path(sys.executable).parent / "ser"), tmp_path / "force.log"
    force = subprocess.Popen([ser, "score", "--archive", str(archive), "--out", str(out), "--date", DAYS[0], "--model", str(bundle),
                              "--force", "--workers", "1", "--calls-per-part", "1", "--no-progress"],
                             stdout=log.open("w"), stderr=subprocess.STDOUT)
    seen = []
    while force.poll() is None or not seen:
        report = subprocess.run([ser, "report", "--reports", str(out), "--json", "--categories", str(rules)],
                                capture_output=True, text=True, timeout=300)
        assert report.returncode == 0, report.stderr
        figures = json.loads(report.stdout)
        seen.append(sorted(row["call_id"] for row in figures["tables"]["category_calls"]))
        assert seen[-1] == expected and figures["totals"]["calls"] == len(expected)
    assert force.wait(timeout=600) == 0 and f"{len(expected)} older rows replaced" in log.read_text(), log.read_text()
