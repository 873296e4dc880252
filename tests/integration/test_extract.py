"""The Ray extraction job end to end on generated corpora (local and S3) and on a slice of the shared corpora."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.extract import ExtractJobConfig, run_extract
from ser_core import storage
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.featurize import ExtractConfig, table_windows
from tests.audio_factory import write_corrupt_files, write_speech


def make_ravdess_tree(root: Path, actors=range(1, 7), emotions=(1, 3, 5), rate=16000, ext="wav") -> list[Path]:
    files = []
    for actor in actors:
        for emotion in emotions:
            name = f"03-01-{emotion:02d}-01-01-01-{actor:02d}.{ext}"
            files.append(write_speech(root / f"Actor_{actor:02d}" / name, seconds=1.2, sample_rate=rate,
                                      f0=120 + 25 * emotion, seed=actor * 10 + emotion, channels=1 + actor % 2))
    return files


@pytest.fixture
def corpus_with_bad_files(tmp_path):
    root = tmp_path / "ravdess"
    good = make_ravdess_tree(root)
    bad = write_corrupt_files(tmp_path / "bad")
    os.replace(bad["text"], root / "Actor_01" / "03-01-04-01-01-01-01.wav")  # parses, does not decode
    os.replace(bad["truncated"], root / "Actor_02" / "03-01-04-01-01-01-02.wav")
    write_speech(root / "Actor_03" / "take2.wav", seconds=0.5)  # does not parse
    return root, len(good)


def _run(root, out, shard_size: int = 5, **kwargs) -> object:
    config = ExtractJobConfig(corpora=(("ravdess", str(root)),), out=str(out), shard_size=shard_size, progress=False, **kwargs)
    return run_extract(config)


def test_every_file_accounted_for(local_ray, corpus_with_bad_files, tmp_path):
    root, n_good = corpus_with_bad_files
    out = tmp_path / "features"
    summary = _run(root, out, extract=ExtractConfig(augment_copies=2))
    assert summary.utterances == n_good and summary.errors == 3

    errors = pq.read_table(out / "errors.parquet").to_pylist()
    reasons = {Path(e["uri"]).name: (e["stage"], e["reason"]) for e in errors}
    assert reasons["take2.wav"][0] == "manifest"
    assert reasons["03-01-04-01-01-01-01.wav"][0] == "decode" and "not decodable" in reasons["03-01-04-01-01-01-01.wav"][1]
    assert "truncated" in reasons["03-01-04-01-01-01-02.wav"][1]

    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["files_found"] == n_good + 3 == metadata["summary"]["utterances"] + metadata["summary"]["errors"]
    assert metadata["feature_version"] == FeatureSpec().version

    con = duckdb.connect()
    rows = con.execute(
        f"SELECT split, copy, count(DISTINCT utterance_id), count(*) FROM '{out}/features/*.parquet' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    splits = {r[0] for r in rows}
    assert splits == {"train", "validation", "test"}
    copies = {(r[0], r[1]) for r in rows}
    # every utterance as a clip (0) and through the call channel (1); only training utterances are augmented (2, 3)
    assert copies == {(s, c) for s in ("train", "validation", "test") for c in (0, 1)} | {("train", 2), ("train", 3)}
    speakers = con.execute(f"SELECT split, list(DISTINCT speaker) FROM '{out}/features/*.parquet' GROUP BY split").fetchall()
    seen = [set(s) for _, s in speakers]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])

    table = storage.read_parquet(str(out / "features"))
    windows = table_windows(table, FeatureSpec())
    assert windows.shape[1:] == FeatureSpec().window_shape and np.isfinite(windows).all()
    originals = table.filter(table.column("copy").to_numpy() == 0)
    augmented = table.filter(table.column("copy").to_numpy() >= 2)
    assert originals.num_rows and augmented.num_rows
    assert set(augmented.column("augmentation").to_pylist()) - {"none"}


def test_rerun_skips_and_config_change_replaces(local_ray, corpus_with_bad_files, tmp_path):
    root, _ = corpus_with_bad_files
    out = tmp_path / "features"
    first = _run(root, out)
    shards = sorted((out / "features").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = _run(root, out)
    assert again.shards_skipped == again.shards_total == first.shards_total
    assert [p.stat().st_mtime_ns for p in sorted((out / "features").iterdir())] == mtimes
    changed = _run(root, out, extract=ExtractConfig(augment_copies=1))
    assert changed.shards_skipped == 0
    assert not set(sorted((out / "features").iterdir())) & set(shards)
    assert len(list((out / "features").iterdir())) == len(shards) == len(list((out / "errors").iterdir()))


def test_extract_to_and_from_s3(local_ray, s3_bucket, tmp_path):
    import s3fs

    make_ravdess_tree(tmp_path / "ravdess", actors=range(1, 5), emotions=(1, 5), ext="flac")
    fs = s3fs.S3FileSystem()
    fs.put(str(tmp_path / "ravdess"), f"{s3_bucket}/corpora/", recursive=True)
    summary = run_extract(
        ExtractJobConfig(corpora=(("ravdess", f"{s3_bucket}/corpora/ravdess"),), out=f"{s3_bucket}/features", shard_size=3, progress=False)
    )
    assert summary.utterances == 8 and summary.errors == 0
    fs.invalidate_cache()
    table = storage.read_parquet(f"{s3_bucket}/features/features")
    assert len(set(table.column("utterance_id").to_pylist())) == 8
    assert json.loads(fs.cat(f"{s3_bucket}/features/metadata.json"))["summary"]["utterances"] == 8


@pytest.mark.corpora
def test_shared_corpora_slice(local_ray, shared_corpora, tmp_path):
    corpora = (
        ("ravdess", str(shared_corpora / "ravdess" / "Actor_01")),
        ("ravdess", str(shared_corpora / "originals" / "ravdess" / "Actor_02")),
        ("tess", str(shared_corpora / "originals" / "tess")),
    )
    summary = run_extract(ExtractJobConfig(corpora=corpora, out=str(tmp_path / "f"), progress=False))
    assert summary.utterances == 60 + 1 + 2 and summary.errors == 0
    emotions = duckdb.sql(f"SELECT DISTINCT emotion FROM '{tmp_path}/f/features/*.parquet'").fetchall()
    assert {e for (e,) in emotions} == {"neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"}


def test_a_header_declaring_a_huge_length_is_an_error_row(local_ray, tmp_path):
    from tests.unit.test_audio import declare_huge

    root = tmp_path / "ravdess"
    make_ravdess_tree(root, actors=range(1, 3), emotions=(1,))
    huge = write_speech(root / "Actor_01" / "03-01-05-01-01-01-01.flac", seconds=1.0, sample_rate=16000)
    declare_huge(huge)
    summary = _run(root, tmp_path / "features")
    assert summary.utterances == 2 and summary.errors == 1
    (error,) = pq.read_table(tmp_path / "features" / "errors.parquet").to_pylist()
    assert error["uri"].endswith(huge.name) and "header declares" in error["reason"]


def test_rerun_after_a_kill_reads_every_utterance_once_and_no_temporaries(local_ray, tmp_path):
    import shutil
    import signal
    import subprocess
    import sys
    import time

    root, out = tmp_path / "ravdess", tmp_path / "features"
    make_ravdess_tree(root, actors=range(1, 9), emotions=(1, 3, 5, 7))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "jobs.cli", "extract", "--corpus", f"ravdess={root}", "--out", str(out),
               "--shard-size", "1", "--workers", "1", "--no-progress"]
    job = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not list((out / "errors").glob("*.parquet")) and job.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    committed = sorted((out / "errors").glob("*.parquet"))
    assert 0 < len(committed) < 32, "the kill must land mid-job"
    # what a kill in the middle of a write leaves: a complete-looking temporary beside a committed shard
    shard = out / "features" / committed[0].name
    shutil.copy(shard, shard.with_name(shard.name + ".tmp-0123abcd"))

    summary = _run(root, out, shard_size=1)
    assert summary.utterances == 32 and summary.errors == 0 and summary.shards_skipped >= len(committed)
    assert not list(out.rglob("*.tmp-*"))
    counts = duckdb.sql(f"SELECT utterance_id, copy, \"window\", count(*) AS n FROM '{out}/features/*.parquet' GROUP BY ALL").fetchall()
    assert len({u for u, *_ in counts}) == 32 and {n for *_, n in counts} == {1}  # no window written twice
    assert json.loads((out / "metadata.json").read_text())["summary"]["windows"] == len(counts)
