"""``ser train`` on a tiny synthetic feature set: the workers' window streams, two Ray Train workers, checkpoints, reload,
recovery from a crash."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.extract import ExtractJobConfig, run_extract
from jobs.train import BEST_WEIGHTS, TrainJobConfig, run_train
from ser_core.corpora.splits import SplitConfig
from ser_core.errors import Refused
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.featurize import ExtractConfig
from ser_core.models.bundle import load_bundle
from ser_core.models.cnn import ModelConfig, TrainConfig, build_model
from ser_core.training.streaming import (
    cell_weights,
    cycle_chunks,
    read_shard,
    read_split,
    scan_windows,
    shuffled_batches,
    split_files,
    worker_files,
)
from tests.audio_factory import write_speech

RAVDESS_EMOTION_CODES = ("01", "03", "04", "05", "06", "07", "08")  # neutral happy sad angry fear disgust surprise
TINY_MODEL = ModelConfig(filters=(8, 8), kernel_size=3, dense_units=8)


def write_fake_ravdess(folder: Path, actors: range = range(1, 9), seconds: float = 1.2) -> Path:
    """One short file per actor and emotion in RAVDESS naming; the pitch depends on the emotion."""
    for actor in actors:
        for index, code in enumerate(RAVDESS_EMOTION_CODES):
            name = f"03-01-{code}-01-01-01-{actor:02d}.wav"
            write_speech(folder / f"Actor_{actor:02d}" / name, seconds=seconds, f0=110 + 30 * index + 3 * actor, seed=actor * 10 + index)
    return folder


def extract_tiny(corpus: Path, out: Path, splits: SplitConfig = SplitConfig()) -> str:
    """Features with one augmented copy per training file, in shards of 8 utterances (7 shard files)."""
    config = ExtractJobConfig(corpora=(("ravdess", str(corpus)),), out=str(out), extract=ExtractConfig(augment_copies=1),
                              splits=splits, shard_size=8, progress=False)
    run_extract(config)
    return str(out)


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory, fresh_ray) -> str:
    """Features of 8 fake actors (2 train, 1 validation, 1 test per gender), one augmented copy per training file."""
    root = tmp_path_factory.mktemp("tiny")
    return extract_tiny(write_fake_ravdess(root / "ravdess"), root / "features")


def tiny_config(features: str, out: Path, **changes) -> TrainJobConfig:
    train = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, patience=5)
    return TrainJobConfig(features=features, out=str(out), workers=2, cpus_per_worker=1.0, model=TINY_MODEL, train=train, **changes)


def stream_inputs(features: str) -> tuple[list[str], FeatureSpec, tuple[np.ndarray, np.ndarray], dict]:
    """Training shard files, spec, a normalisation and the corpus/class weights, as the driver hands them to workers."""
    meta = scan_windows(features)
    norm = (np.full(FeatureSpec().n_features, 1.0, np.float32), np.full(FeatureSpec().n_features, 2.0, np.float32))
    weights = {(c, e): w for c, e, w in cell_weights(meta, "corpus_class")}
    return split_files(meta, "train"), FeatureSpec(), norm, weights


def test_in_each_pass_the_workers_streams_read_every_training_window_once(tiny_features):
    files, spec, norm, weights = stream_inputs(tiny_features)
    expected = np.concatenate([read_shard(uri, spec, "train")[0] for uri in files])
    streamed, labels, sample_weights = [], [], []
    for rank in range(2):
        mine = worker_files(files, rank, 2, seed=0, cycle=0)
        for x, y, w in cycle_chunks(mine, spec, norm, weights, np.random.default_rng(rank), open_shards=2, chunk_windows=3):
            assert len(x) <= 3
            streamed.append(x)
            labels.append(y)
            sample_weights.append(w)
    streamed, labels, sample_weights = np.concatenate(streamed), np.concatenate(labels), np.concatenate(sample_weights)
    assert len(streamed) == len(expected)
    row_sums = np.sort(streamed.sum(axis=(1, 2), dtype=np.float64))
    np.testing.assert_allclose(row_sums, np.sort(((expected - norm[0]) / norm[1]).sum(axis=(1, 2), dtype=np.float64)), rtol=1e-5)
    assert set(worker_files(files, 0, 2, seed=0, cycle=0)).isdisjoint(worker_files(files, 1, 2, seed=0, cycle=0))
    assert worker_files(files, 0, 2, seed=0, cycle=0) != worker_files(files, 0, 2, seed=0, cycle=1)
    per_class = [sample_weights[labels[:, k] == 1].sum() for k in range(labels.shape[1]) if (labels[:, k] == 1).any()]
    np.testing.assert_allclose(per_class, per_class[0], rtol=1e-5)  # every (corpus, emotion) cell weighs the same
    assert sample_weights.mean() == pytest.approx(1.0, rel=1e-5)


def test_the_shuffle_buffer_sends_each_window_out_once_and_out_of_order():
    ids = np.arange(200, dtype=np.float32)
    chunks = ((ids[i : i + 7, None], ids[i : i + 7, None] * 2, ids[i : i + 7]) for i in range(0, 200, 7))
    batches = list(shuffled_batches(chunks, batch_size=16, buffer_windows=50, rng=np.random.default_rng(0)))
    out = np.concatenate([w for _, _, w in batches])
    assert all(len(w) == 16 for _, _, w in batches) and len(out) == (200 - 50) // 16 * 16
    assert len(set(out.tolist())) == len(out)  # no window twice
    assert all(np.array_equal(x[:, 0], w) and np.array_equal(y[:, 0], 2 * w) for x, y, w in batches)  # rows stay together
    assert not np.array_equal(out, np.sort(out)) and np.ptp(out[:16]) > 16  # the first batch spans the buffer


STREAM_PEAK = """
import sys, tracemalloc
import numpy as np
from ser_core.training.streaming import cycle_chunks
from tests.integration.test_train import stream_inputs

files, spec, norm, weights = stream_inputs(sys.argv[1])
tracemalloc.start()
chunks = cycle_chunks(files, spec, norm, weights, np.random.default_rng(0), open_shards=1, chunk_windows=2)
streamed = sum(len(x) for x, _, _ in chunks)
print(streamed, tracemalloc.get_traced_memory()[1])
"""


def test_a_workers_stream_holds_one_loaded_shard_not_the_training_set(tiny_features):
    files, spec, _, _ = stream_inputs(tiny_features)
    shard_bytes = [read_shard(uri, spec, "train")[0].nbytes for uri in files]
    # A fresh process: tracemalloc counts every thread's allocations, and this one runs Ray's.
    run = subprocess.run([sys.executable, "-c", STREAM_PEAK, tiny_features], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    streamed, peak = map(int, run.stdout.split())
    assert streamed * np.prod(spec.window_shape) * 4 == sum(shard_bytes)  # the whole training set went through
    assert peak < 2 * max(shard_bytes) < sum(shard_bytes)  # numpy memory at any time: one shard and a few chunks


def checkpoint_folders(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.rglob(BEST_WEIGHTS))


@pytest.mark.slow
def test_two_workers_write_checkpoints_and_the_bundle_reloads_to_the_same_predictions(tiny_features, tmp_path):
    out = tmp_path / "bundle"
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"changes": ["- Previous model: validation UAR 0.1."]}))
    info = run_train(tiny_config(tiny_features, out, notes=str(notes)))

    assert [h["epoch"] for h in info["training"]["history"]] == [0, 1]
    assert info["training"]["restored_from_epoch"] is None
    checkpoints = checkpoint_folders(out / "ray_run")
    assert len(checkpoints) == 2  # one per epoch (num_to_keep=2)
    bundle_info = json.loads((out / "bundle.json").read_text())
    assert set(bundle_info["metrics"]) == {"validation", "test", "validation_call", "test_call"}
    assert bundle_info["data_summary"]["train"]["utterances"] == 28
    assert bundle_info["features"]["corpora"] == ["ravdess"]  # by name: the corpus path given to extract is not recorded
    manifest = pd.read_parquet(Path(tiny_features) / "manifest.parquet")
    for split in ("validation", "test"):
        assert bundle_info["held_out_groups"][split] == {"ravdess": sorted(set(manifest[manifest["split"] == split]["split_group"]))}
    figures = {"learning_curves.png", *(f"confusion_{key}.png" for key in bundle_info["metrics"])}
    assert set(bundle_info["files"]) == {"model.keras", "MODEL_CARD.md", *(f"figures/{name}" for name in figures)}
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card") and "## What changed from the previous model\n\n- Previous model: validation UAR 0.1." in card
    assert {p.name for p in (out / "figures").glob("*.png")} == figures

    spec = FeatureSpec()
    bundle = load_bundle(out, expected_spec=spec)
    parts, _ = read_split(split_files(scan_windows(tiny_features), "validation"), spec, "validation")
    x = np.concatenate(parts)
    from_bundle = bundle.predict(x)
    latest = max(checkpoints, key=lambda p: json.loads((p / "state.json").read_text())["epoch"])
    with np.load(latest / BEST_WEIGHTS) as stored:
        weights = [stored[f"w{i}"] for i in range(len(stored.files))]
    model = build_model(spec, TINY_MODEL)
    model.set_weights(weights)
    from_checkpoint = model(bundle.normalise(x), training=False).numpy()
    np.testing.assert_allclose(from_bundle, from_checkpoint, rtol=0, atol=1e-6)
    np.testing.assert_allclose(from_bundle.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_a_crashed_worker_resumes_from_the_last_checkpoint(tiny_features, tmp_path):
    out = tmp_path / "bundle"
    info = run_train(tiny_config(tiny_features, out, fail_once_after_epoch=0, max_failures=1))

    drill = (out / "ray_run" / "fault-drill.txt").read_text()
    assert "exited after epoch 0" in drill
    training = info["training"]
    assert training["restored_from_epoch"] == 1  # the restarted group started at epoch 1, not 0
    assert [h["epoch"] for h in training["history"]] == [0, 1]
    assert os.path.exists(out / "model.keras")


@pytest.mark.slow
def test_resume_continues_the_same_features_and_refuses_others(tiny_features, tmp_path):
    out = tmp_path / "bundle"
    one_epoch = tiny_config(tiny_features, out)
    run_train(dataclasses.replace(one_epoch, train=dataclasses.replace(one_epoch.train, epochs=1)))

    resplit = extract_tiny(Path(tiny_features).parent / "ravdess", tmp_path / "resplit", SplitConfig(seed=1))
    with pytest.raises(Refused, match="differ from its checkpoints' in split_config, shards"):
        run_train(tiny_config(resplit, out, resume=True))
    with pytest.raises(Refused, match="no record"):
        run_train(tiny_config(tiny_features, tmp_path / "never-trained", resume=True))
    info = run_train(tiny_config(tiny_features, out, resume=True))
    assert info["training"]["restored_from_epoch"] == 1 and [h["epoch"] for h in info["training"]["history"]] == [0, 1]
