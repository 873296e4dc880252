"""The whisper-head model kind end to end: ``ser embed`` → ``ser train-head`` (Ray Train) → a verified bundle that
``ser evaluate`` and ``ser predict`` run; and its loading refuses what it must."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

pytest.importorskip("ctranslate2")

from jobs.cli import main  # noqa: E402
from ser_core.frontends.embeddings import EmbeddingSpec  # noqa: E402
from ser_core.frontends.features import FeatureSpec  # noqa: E402
from ser_core.frontends.windows import EncoderFrontend  # noqa: E402
from ser_core.models.bundle import BundleError, load_bundle, publish_bundle, stage_bundle  # noqa: E402  # noqa: E402
from ser_core.models.head import HeadConfig, build_head  # noqa: E402
from ser_core.models.whisper_head import WHISPER_KIND, manifest_fields  # noqa: E402
from tests.integration.test_train import write_fake_ravdess  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, fresh_ray) -> Path:
    root = tmp_path_factory.mktemp("whisper")
    corpus = write_fake_ravdess(root / "ravdess", actors=range(1, 9), seconds=1.0)
    result = CliRunner().invoke(main, ["embed", "--corpus", f"ravdess={corpus}", "--out", str(root / "emb"), "--no-progress"])
    assert result.exit_code == 0, result.output
    return root


def test_embed_writes_a_clip_and_a_call_copy_per_utterance(embedded):
    table = pq.read_table(embedded / "emb" / "embeddings").to_pandas()
    assert len(table.drop_duplicates("utterance_id")) == len(list((embedded / "ravdess").rglob("*.wav")))
    assert set(table["copy"]) == {0, 1} and set(table["augmentation"]) == {"none", "call"}
    assert table["embedding"].map(len).eq(1024).all()
    assert set(table["split"]) == {"train", "validation", "test"}
    rerun = CliRunner().invoke(main, ["embed", "--corpus", f"ravdess={embedded / 'ravdess'}", "--out", str(embedded / "emb"), "--no-progress"])
    assert "2/2 shards already done" in rerun.output


def test_train_head_bundle_evaluates_and_predicts(embedded):
    out = embedded / "model"
    sweep = {"results": {"3": {"logreg": {"validation_uar": {"ravdess/call": 0.5}, "loco_uar": {}}}}, "chosen": {"layers": 3, "recipe": "logreg"}}
    (embedded / "sweep.json").write_text(json.dumps(sweep))
    train_head = ["train-head", "--embeddings", str(embedded / "emb"), "--out", str(out), "--fit-on", "train", "--epochs", "2",
                  "--recipe", "logreg", "--experiments", str(embedded / "sweep.json")]
    refused = CliRunner().invoke(main, train_head)  # full-depth embeddings, the sweep chose 3 layers
    assert refused.exit_code != 0 and "not the sweep's choice" in refused.output and not out.exists()
    result = CliRunner().invoke(main, [*train_head, "--choice-note", "Full depth for this test."])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "bundle.json").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    assert "layers 1-6 of the 6" in card and "| layers 3, logreg | 0.500 | - |" in card and "Full depth for this test." in card
    assert info["model_kind"] == "whisper-head" and info["model_version"].startswith("ser-whisper-head-")
    assert set(info["files"]) >= {"model.keras"} and info["training"]["fit_on"] == "train"
    assert info["embeddings"]["corpora"] == ["ravdess"]
    assert info["held_out_groups"]["test"]["ravdess"] and info["held_out_groups"]["validation"]["ravdess"]
    assert {"validation/call", "test/clean"} <= set(info["metrics"])
    bundle = load_bundle(out)
    assert isinstance(bundle.frontend, EncoderFrontend)
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(out), "--corpus", f"ravdess={embedded / 'ravdess'}", "--json", str(embedded / "e.json")])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((embedded / "e.json").read_text())
    test_actors = len(info["held_out_groups"]["test"]["ravdess"])
    per_actor = len(list((embedded / "ravdess" / "Actor_01").glob("*.wav")))
    assert report["split_recorded_in_bundle"] and report["utterances_scored"] == per_actor * test_actors
    clip = next((embedded / "ravdess").rglob("*.wav"))
    predicted = CliRunner().invoke(main, ["predict", "--model", str(out), str(clip)])
    assert predicted.exit_code == 0 and clip.name in predicted.output


@pytest.fixture(scope="module")
def shipped(embedded) -> Path:
    """A head fitted on the development splits with speaker normalisation, as the shipped model is (1 epoch)."""
    out = embedded / "shipped"
    result = CliRunner().invoke(main, ["train-head", "--embeddings", str(embedded / "emb"), "--out", str(out), "--epochs", "1",
                                       "--recipe", "mlp256_speaker_norm"])
    assert result.exit_code == 0, result.output
    return out


def test_development_fit_with_speaker_normalisation(shipped):
    out = shipped
    info = json.loads((out / "bundle.json").read_text())
    assert info["held_out_groups"]["validation"]["ravdess"] == [] and info["held_out_groups"]["test"]["ravdess"]
    assert info["speaker_norm"]["prior_windows"] == 10 and len(info["speaker_norm"]["prior"]) == 1024
    frontend = load_bundle(out).frontend
    windows = np.random.default_rng(0).normal(size=(30, 1024)).astype(np.float32) + 5.0
    centred = frontend.speaker_centre(windows)
    prior = np.asarray(info["speaker_norm"]["prior"], np.float32)
    np.testing.assert_allclose(centred, windows - (windows.sum(0) + 10 * prior) / 40, rtol=1e-5, atol=1e-4)
    shifted = frontend.speaker_centre(windows + 3.0)  # a speaker's constant offset is removed but for the prior's share
    np.testing.assert_allclose(shifted - centred, 3.0 * 10 / 40, atol=1e-4)
    assert (out / "MODEL_CARD.md").read_text().startswith("# Model card: ser whisper-head")


def test_head_trained_on_other_encoder_weights_is_refused(tmp_path):
    spec = EmbeddingSpec(weights_sha256="0" * 64)
    stage_bundle(build_head(spec.dim, HeadConfig(hidden=(4,))), FeatureSpec(sample_rate=spec.sample_rate), np.zeros(spec.dim), np.ones(spec.dim),
                 tmp_path / "staged", {}, kind=WHISPER_KIND, manifest=manifest_fields(spec))
    publish_bundle(tmp_path / "staged", str(tmp_path / "m"))
    with pytest.raises(BundleError, match="encoder weights"):
        load_bundle(tmp_path / "m")


def test_score_runs_a_whisper_head_bundle(shipped, tmp_path):
    archive = tmp_path / "archive"
    made = CliRunner().invoke(main, ["make-archive", "--calls", "2", "--out", str(archive), "--date", "2026-11-20"])
    assert made.exit_code == 0, made.output
    scored = CliRunner().invoke(main, ["score", "--archive", str(archive / "audio"), "--out", str(tmp_path / "out"),
                                       "--model", str(shipped), "--workers", "1", "--no-progress"])
    assert scored.exit_code == 0, scored.output
    segments = pq.read_table(tmp_path / "out" / "segments").to_pandas()
    calls = pq.read_table(tmp_path / "out" / "calls").to_pandas()
    assert (calls["status"] == "ok").all() and len(calls) == 2
    assert set(segments["speaker_role"]) == {"agent", "customer"} and len(segments) > 4
    assert segments["model_version"].str.startswith("ser-whisper-head-").all()
    assert ((segments["end_s"] - segments["start_s"]) <= 2.5 + 1e-6).all()
    probs = segments[[c for c in segments.columns if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
