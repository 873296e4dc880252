"""What ``ser train`` and ``ser train-head`` check and record without Ray: utterance-level evaluation and the
selection score, the data summary, the features' identity for ``--resume``, the window checks, the bundle records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_core.errors import Refused
from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS
from ser_core.models.cards import cnn_card
from ser_core.models.head import HeadConfig, head_inputs
from ser_core.training.evaluation import data_summary, selection_score, utterance_predictions, utterance_reports
from ser_core.training.records import features_record, fitted_held_out, sweep_record
from ser_core.training.runs import (
    RUN_FEATURES,
    check_resume,
    checked_windows,
    feature_spec,
    features_identity,
    record_features,
)
from ser_core.training.streaming import META_COLUMNS

SAD, HAPPY = EMOTIONS.index("sad"), EMOTIONS.index("happy")


def windows_meta(rows: list[tuple[str, str, str, str, str, int]]) -> pd.DataFrame:
    """Window metadata from ``(utterance_id, corpus, speaker, split, emotion, copy)`` rows."""
    return pd.DataFrame(rows, columns=META_COLUMNS)


def one_hot_probs(labels: list[int]) -> np.ndarray:
    probs = np.zeros((len(labels), len(EMOTIONS)), np.float32)
    probs[np.arange(len(labels)), labels] = 1.0
    return probs


def test_an_utterance_is_predicted_from_the_mean_of_its_windows():
    meta = windows_meta([("a", "ravdess", "s1", "validation", "sad", 1)] * 3 + [("b", "tess", "s2", "validation", "happy", 1)])
    rows = utterance_predictions(one_hot_probs([SAD, SAD, HAPPY, HAPPY]), meta)
    assert rows["utterance_id"].tolist() == ["a", "b"] and rows["predicted"].tolist() == ["sad", "happy"]
    assert rows["prob_sad"].tolist() == pytest.approx([2 / 3, 0.0]) and rows["corpus"].tolist() == ["ravdess", "tess"]
    reports = utterance_reports(one_hot_probs([SAD, SAD, HAPPY, HAPPY]), meta)
    assert set(reports) == {"ravdess", "tess", "overall"} and reports["overall"]["accuracy"] == 1.0


def test_the_selection_score_weighs_every_corpus_the_same_whatever_its_size():
    reports = {"ravdess": {"uar": 0.4}, "tess": {"uar": 1.0}, "overall": {"uar": 0.9}}
    assert selection_score(reports) == pytest.approx(0.7)


def test_the_data_summary_counts_original_utterances_and_every_copys_windows():
    meta = windows_meta([("a", "ravdess", "s1", "train", "sad", 0), ("a", "ravdess", "s1", "train", "sad", 0),
                         ("a", "ravdess", "s1", "train", "sad", 1), ("b", "tess", "s2", "train", "happy", 0),
                         ("c", "tess", "s3", "test", "sad", 0)])
    summary = data_summary(meta)
    assert summary["train"]["utterances"] == 2 and summary["train"]["windows_all_copies"] == 4
    assert summary["train"]["per_corpus_emotion"] == {"ravdess/sad": 1, "tess/happy": 1}
    assert summary["test"]["per_speaker"] == {"s3": 1}


def write_features(folder: Path, shards: dict[str, list[tuple]], spec: FeatureSpec = FeatureSpec()) -> str:
    """An extraction's ``metadata.json`` and shard files holding the metadata columns of the given window rows."""
    (folder / "features").mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"feature_spec": spec.to_dict(), "feature_version": spec.version,
                                                      "split_config": {"validation": 0.15, "test": 0.15, "seed": 0}}))
    for name, rows in shards.items():
        pq.write_table(pa.Table.from_pandas(windows_meta(rows), preserve_index=False), folder / "features" / name)
    return str(folder)


def test_resume_needs_the_same_features_as_the_checkpoints(tmp_path):
    features = write_features(tmp_path / "features", {"shard-00000-aaa.parquet": [("a", "ravdess", "s1", "train", "sad", 0)]})
    metadata = json.loads(Path(features, "metadata.json").read_text())
    identity = features_identity(features, metadata)
    run = str(tmp_path / "run")
    with pytest.raises(Refused, match=f"no record \\({RUN_FEATURES}\\)"):
        check_resume(run, identity)
    record_features(run, identity)
    check_resume(run, identity)
    Path(features, "features", "shard-00001-bbb.parquet").write_bytes(Path(features, "features", "shard-00000-aaa.parquet").read_bytes())
    resplit = features_identity(features, {**metadata, "split_config": {"validation": 0.2, "test": 0.15, "seed": 0}})
    with pytest.raises(Refused, match="differ from its checkpoints' in split_config, shards; start afresh"):
        check_resume(run, resplit)


def test_a_feature_spec_that_does_not_hash_to_the_recorded_version_is_refused(tmp_path):
    metadata = {"feature_spec": FeatureSpec().to_dict(), "feature_version": FeatureSpec().version}
    assert feature_spec("f", metadata) == FeatureSpec()
    with pytest.raises(Refused, match="hashes to"):
        feature_spec("f", {**metadata, "feature_version": "fs-000000000000"})


def test_the_training_windows_must_fill_a_batch_and_give_every_worker_a_shard(tmp_path):
    train = [(f"u{i}", "ravdess", "s1", "train", "sad", 0) for i in range(8)]
    features = write_features(tmp_path / "features", {"shard-00000-a.parquet": train[:4] + [("v", "ravdess", "s2", "validation", "sad", 0)],
                                                      "shard-00001-b.parquet": train[4:]})
    meta, files, n_train = checked_windows(features, batch_size=4, workers=2)
    assert n_train == 8 and len(files) == 2 and len(meta) == 9
    with pytest.raises(Refused, match="need at least 16 training windows"):
        checked_windows(features, batch_size=16, workers=2)
    with pytest.raises(Refused, match="must be a multiple of --workers 3"):
        checked_windows(features, batch_size=4, workers=3)
    with pytest.raises(Refused, match="2 shard file\\(s\\) of training windows for 4 workers"):
        checked_windows(features, batch_size=4, workers=4)


def test_a_bundle_records_corpora_by_name_never_by_the_path_typed_at_training():
    metadata = {"corpora": [["ravdess", "/home/trainer/data/ravdess"], ["tess", "../shared/corpora/tess"]], "augment_copies": 4,
                "split_config": {"validation": 0.15, "test": 0.15, "seed": 0}}
    record = features_record("/home/trainer/runs/features-v3/", metadata)
    assert record["corpora"] == ["ravdess", "tess"] and record["source"] == "features-v3"
    assert "/" not in json.dumps(record)
    info = {"created_at": "2026-01-01T00:00:00Z", "parameters": 10, "window_shape": [200, 60], "feature_version": "fs-x",
            "training": {"workers": 1, "best_epoch": 0, "history": [{}]}, "metrics": {}, "features": record, "data_summary": {}}
    assert "Features from ravdess, tess:" in cnn_card(info) and "(ravdess, tess)" in cnn_card(info)


def test_a_head_fitted_on_the_development_splits_holds_out_only_test_groups():
    originals = pd.DataFrame({"corpus": ["ravdess"] * 3, "split_group": ["a1", "a2", "a3"], "split": ["train", "validation", "test"]})
    assert fitted_held_out(originals, ("train", "validation")).to_dict() == {"validation": {"ravdess": []}, "test": {"ravdess": ["a3"]}}
    assert fitted_held_out(originals, ("train",)).to_dict()["validation"] == {"ravdess": ["a2"]}


def test_head_inputs_centre_each_speaker_and_standardise_on_the_fitted_rows():
    meta = pd.DataFrame({"corpus": ["c"] * 4, "speaker": ["s1", "s1", "s2", "s2"], "split": ["train", "train", "train", "test"],
                         "copy": [0, 0, 0, 0]})
    x = np.array([[1.0], [3.0], [10.0], [14.0]], np.float32)
    plain = head_inputs(x, meta, HeadConfig(), ("train",))
    assert plain.fit_rows.tolist() == [True, True, True, False] and plain.speaker_norm is None
    assert plain.mean == pytest.approx([14 / 3])
    centred = head_inputs(x, meta, HeadConfig(speaker_norm=True, speaker_prior_windows=0), ("train",))
    assert centred.x.ravel().tolist() == [-1.0, 1.0, -2.0, 2.0] and centred.speaker_norm["prior"] == pytest.approx([14 / 3])


def test_a_sweep_is_recorded_with_its_choice_and_another_recipe_needs_a_note():
    sweep = {"recipes": {}, "chosen": "mlp256"}
    assert sweep_record(sweep, "mlp256", 6, None)["chosen"].startswith("Shipped: `mlp256` on encoder layers 1-6, chosen by")
    with pytest.raises(Refused, match="not the sweep's choice"):
        sweep_record({**sweep, "chosen": {"layers": 3, "recipe": "mlp256"}}, "mlp256", 6, None)
    noted = sweep_record(sweep, "logreg", 6, "Smaller.")
    assert noted["chosen"].endswith("Smaller.") and sweep["chosen"] == "mlp256"
