"""``ser train`` on a tiny synthetic feature set: two Ray Train workers, checkpoints, reload, recovery from a crash."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest

from jobs.extract import ExtractJobConfig, run_extract
from jobs.train import BEST_WEIGHTS, TrainJobConfig, materialise, run_train, split_datasets
from ser_core.features import FeatureSpec
from ser_core.featurize import ExtractConfig
from ser_core.splits import SplitConfig
from ser_core.model import ModelConfig, TrainConfig, build_model, load_bundle
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
    config = ExtractJobConfig(corpora=(("ravdess", str(corpus)),), out=str(out), extract=ExtractConfig(augment_copies=1),
                              splits=splits, progress=False)
    run_extract(config)
    return str(out)


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory, local_ray) -> str:
    """Features of 8 fake actors (2 train, 1 validation, 1 test per gender), one augmented copy per training file."""
    root = tmp_path_factory.mktemp("tiny")
    return extract_tiny(write_fake_ravdess(root / "ravdess"), root / "features")


def tiny_config(features: str, out: Path, **changes) -> TrainJobConfig:
    train = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, patience=5)
    return TrainJobConfig(features=features, out=str(out), workers=2, cpus_per_worker=1.0, model=TINY_MODEL, train=train, **changes)


def checkpoint_folders(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.rglob(BEST_WEIGHTS))


@pytest.mark.slow
def test_two_workers_write_checkpoints_and_the_bundle_reloads_to_the_same_predictions(tiny_features, tmp_path):
    out = tmp_path / "bundle"
    info = run_train(tiny_config(tiny_features, out))

    assert [h["epoch"] for h in info["training"]["history"]] == [0, 1]
    assert info["training"]["restored_from_epoch"] is None
    checkpoints = checkpoint_folders(out / "ray_run")
    assert len(checkpoints) == 2  # one per epoch (num_to_keep=2)
    bundle_info = json.loads((out / "bundle.json").read_text())
    assert set(bundle_info["metrics"]) == {"validation", "test"}
    assert bundle_info["data_summary"]["train"]["utterances"] == 28
    manifest = pd.read_parquet(Path(tiny_features) / "manifest.parquet")
    for split in ("validation", "test"):
        assert bundle_info["held_out_groups"][split] == {"ravdess": sorted(set(manifest[manifest["split"] == split]["split_group"]))}
    assert set(bundle_info["files"]) == {"model.keras", "MODEL_CARD.md", "figures/learning_curves.png",
                                         "figures/confusion_validation.png", "figures/confusion_test.png"}
    assert (out / "MODEL_CARD.md").read_text().startswith("# Model card")
    assert {p.name for p in (out / "figures").glob("*.png")} == {"learning_curves.png", "confusion_validation.png", "confusion_test.png"}

    spec = FeatureSpec()
    bundle = load_bundle(out, expected_spec=spec)
    x, _ = materialise(split_datasets(tiny_features)["validation"], spec)
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
    with pytest.raises(click.ClickException, match="differ from its checkpoints' in split_config, shards"):
        run_train(tiny_config(resplit, out, resume=True))
    with pytest.raises(click.ClickException, match="no record"):
        run_train(tiny_config(tiny_features, tmp_path / "never-trained", resume=True))
    info = run_train(tiny_config(tiny_features, out, resume=True))
    assert info["training"]["restored_from_epoch"] == 1 and [h["epoch"] for h in info["training"]["history"]] == [0, 1]
