"""The CNN, its training helpers, metrics and the model bundle (save, safe-mode load, version checks, the shipped bundle)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS
from ser_core.models.bundle import BUNDLED_MODEL_DIR, BundleError, load_bundle, save_bundle
from ser_core.models.cnn import ModelConfig, TrainConfig, build_model, custom_layers, sample_weights, streamed_train_dataset
from ser_core.training.metrics import classification_report, utterance_probabilities

SPEC = FeatureSpec()
TINY = ModelConfig(filters=(8, 8), kernel_size=3, dense_units=8, window_mean_norm=True)


def random_windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SPEC.window_shape)).astype(np.float32)


def test_classification_report_matches_a_hand_count():
    truth = ["sad", "sad", "sad", "happy", "angry"]
    guess = ["sad", "sad", "happy", "happy", "sad"]
    report = classification_report(truth, guess)
    assert report["accuracy"] == pytest.approx(3 / 5, abs=1e-4)
    assert report["uar"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=1e-4)  # absent classes are left out
    assert report["per_class"]["neutral"]["recall"] is None
    sad, happy = EMOTIONS.index("sad"), EMOTIONS.index("happy")
    assert report["confusion"][sad][happy] == 1 and np.sum(report["confusion"]) == 5


def test_utterance_probabilities_average_windows_per_utterance():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8]], np.float32)
    ids, mean = utterance_probabilities(["b", "b", "a"], probs)
    assert ids == ["b", "a"]
    np.testing.assert_allclose(mean, [[0.5, 0.5], [0.2, 0.8]])


def test_corpus_class_weights_give_every_cell_the_same_total_weight():
    corpus = np.array(["tess"] * 6 + ["ravdess"] * 3)
    emotion = np.array(["sad"] * 4 + ["happy"] * 2 + ["sad"] * 2 + ["happy"])
    weights = sample_weights(corpus, emotion, "corpus_class")
    cells = {(c, e): weights[(corpus == c) & (emotion == e)].sum() for c, e in set(zip(corpus, emotion))}
    assert np.allclose(list(cells.values()), next(iter(cells.values())))
    assert weights.mean() == pytest.approx(1.0)


def test_spec_augment_masks_only_in_training():
    layer = custom_layers()["SpecAugment"](time_masks=2, time_mask_frames=40, feature_masks=2, feature_mask_bins=10)
    x = np.ones((4, *SPEC.window_shape), np.float32)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    masked = layer(x, training=True).numpy()
    assert (masked == 0).any() and (masked == 1).any()


def test_mixup_batches_blend_labels_and_keep_them_distributions():
    x = random_windows(16)
    y = np.eye(len(EMOTIONS), dtype=np.float32)[np.arange(16) % len(EMOTIONS)]
    dataset = streamed_train_dataset(lambda: iter([(x[:8], y[:8], np.ones(8, np.float32))]), SPEC, TrainConfig(mixup_alpha=0.4))
    batch = next(iter(dataset))
    labels = batch[1].numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert ((labels > 0) & (labels < 1)).any()  # at least one blended label


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(conv2d_filters=(8, 16), filters=(32, 32))], ids=["conv1d", "conv2d-front"])
def test_model_is_small_and_outputs_probabilities(config):
    model = build_model(SPEC, config)
    assert model.count_params() < 2_000_000
    probs = model(random_windows(3), training=False).numpy()
    assert probs.shape == (3, len(EMOTIONS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_bundle_round_trip_gives_identical_predictions(tmp_path):
    model = build_model(SPEC, TINY)
    mean, std = np.full(SPEC.n_features, 0.5, np.float32), np.full(SPEC.n_features, 2.0, np.float32)
    save_bundle(model, SPEC, mean, std, tmp_path / "b", info={"note": "test"}, card="# card\n")
    bundle = load_bundle(tmp_path / "b", expected_spec=SPEC)
    x = random_windows(5)
    np.testing.assert_allclose(bundle.predict(x), model((x - mean) / std, training=False).numpy(), atol=1e-6)
    assert bundle.version.startswith("ser-cnn-") and bundle.info["note"] == "test"


def test_a_bundle_from_another_feature_version_is_refused(tmp_path):
    save_bundle(build_model(SPEC, TINY), SPEC, np.zeros(SPEC.n_features), np.ones(SPEC.n_features), tmp_path / "b")
    other = dataclasses.replace(SPEC, n_mfcc=13)
    with pytest.raises(BundleError, match="feature version"):
        load_bundle(tmp_path / "b", expected_spec=other)
    info = json.loads((tmp_path / "b" / "bundle.json").read_text())
    info["feature_spec"]["n_mels"] = 64  # spec edited by hand: no longer hashes to the stored version
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="hashes to"):
        load_bundle(tmp_path / "b")


def test_the_shipped_bundle_loads_in_safe_mode_and_describes_itself():
    bundle = load_bundle("cnn", expected_spec=SPEC)
    info = bundle.info
    assert bundle.labels == EMOTIONS
    assert bundle.model.count_params() < 2_000_000
    assert {"validation", "test"} <= set(info["metrics"]) and info["git_revision"] and info["created_at"]
    assert info["data_summary"]["train"]["per_speaker"] and info["training"]["history"]
    assert (BUNDLED_MODEL_DIR / "MODEL_CARD.md").exists()
    assert sum(p.stat().st_size for p in BUNDLED_MODEL_DIR.rglob("*") if p.is_file()) < 8 * 2**20
    probs = bundle.predict(random_windows(2))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_a_bundle_on_s3_loads_to_the_same_predictions(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem()
    for path in BUNDLED_MODEL_DIR.iterdir():
        if path.is_file():
            fs.put(str(path), f"{s3_bucket}/models/default/{path.name}")
    remote = load_bundle(f"{s3_bucket}/models/default", expected_spec=SPEC)
    local = load_bundle("cnn")
    windows = random_windows(3)
    assert remote.version == local.version and remote.path == f"{s3_bucket}/models/default"
    np.testing.assert_allclose(remote.predict(windows), local.predict(windows), atol=1e-6)
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(f"{s3_bucket}/models/missing")
