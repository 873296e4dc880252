"""``ser evaluate`` and ``ser predict`` through the real command line, on synthetic corpora and a real bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import main
from ser_core.corpora import scan_all
from ser_core.corpora.splits import HeldOutGroups, SplitConfig
from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS
from ser_core.models.bundle import load_bundle, model_splits, save_bundle, training_split_config
from ser_core.models.cnn import ModelConfig, build_model
from tests.audio_factory import write_corrupt_files, write_speech
from tests.integration.test_train import write_fake_ravdess

SPEC = FeatureSpec()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """An untrained but complete bundle (evaluation mechanics do not depend on the weights)."""
    folder = tmp_path_factory.mktemp("bundle") / "model"
    model = build_model(SPEC, ModelConfig(filters=(8, 8), kernel_size=3, dense_units=8))
    history = [{"epoch": e, "loss": 2.0 - e, "val_uar": 0.3, "val_uar_ravdess": 0.3} for e in range(2)]
    save_bundle(model, SPEC, np.zeros(SPEC.n_features), np.full(SPEC.n_features, 10.0), folder,
                info={"training": {"history": history, "best_epoch": 1}})
    return folder


@pytest.fixture(scope="module")
def recorded_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle, now recording held-out groups: RAVDESS test actors 05 06 07, not what a fresh split gives."""
    folder = tmp_path_factory.mktemp("recorded") / "model"
    rows = [("ravdess", f"ravdess/actor{a:02d}", "test" if a in (5, 6, 7) else "validation" if a == 8 else "train") for a in range(1, 9)]
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    bundle = load_bundle(tiny_bundle)
    save_bundle(bundle.model, SPEC, bundle.mean, bundle.std, folder, info={**info, "held_out_groups": HeldOutGroups.from_rows(rows).to_dict()})
    return folder


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    ravdess = write_fake_ravdess(root / "ravdess", actors=range(1, 9), seconds=1.0)
    audio = root / "mine"
    rows = ["path,emotion,speaker"]
    for i, emotion in enumerate(["angry", "sad", "boredom", "fearful"]):
        write_speech(audio / f"clip{i}.wav", seconds=1.0, f0=150 + 20 * i, seed=i)
        rows.append(f"clip{i}.wav,{emotion},spk{i % 2}")
    (audio / "labels.csv").write_text("\n".join(rows) + "\n")
    return {"ravdess": ravdess, "manifest": audio / "labels.csv"}


def test_an_older_bundle_gets_the_test_split_extraction_would_assign(corpora):
    scan = scan_all((("ravdess", str(corpora["ravdess"])),))
    splits = model_splits({}, scan.utterances)
    test = splits.select(scan.utterances, "test")
    speakers = {u.speaker for u in test}
    assert not splits.recorded
    assert len(test) == 14 and len(speakers) == 2  # one actor of each gender, all seven emotions each
    assert {int(s.removeprefix("actor")) % 2 for s in speakers} == {0, 1}
    train = {u.speaker for u in splits.select(scan.utterances, "train")}
    assert not speakers & train and len(splits.select(scan.utterances, "all")) == 56


def test_the_test_split_follows_the_split_config_the_model_was_trained_with(corpora):
    scan = scan_all((("ravdess", str(corpora["ravdess"])),))
    recorded = {"features": {"split_config": {"validation": 0.15, "test": 0.15, "seed": 7}}}
    assert training_split_config(recorded) == SplitConfig(seed=7)
    assert training_split_config({}) == SplitConfig()
    default_test = {u.speaker for u in model_splits({}, scan.utterances).select(scan.utterances, "test")}
    seeded_test = {u.speaker for u in model_splits(recorded, scan.utterances).select(scan.utterances, "test")}
    assert default_test != seeded_test


def test_evaluate_reports_per_corpus_and_overall_with_json_and_plots(corpora, tiny_bundle, tmp_path, local_ray):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_bundle), "--corpus", f"ravdess={corpora['ravdess']}",
                                       "--corpus", f"manifest={corpora['manifest']}", "--split", "all",
                                       "--json", str(out), "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["reports"]) == {"ravdess", "manifest", "overall"}
    assert report["reports"]["ravdess"]["n"] == 56 and report["reports"]["manifest"]["n"] == 3
    overall = report["reports"]["overall"]
    assert overall["n"] == 59 and 0 <= overall["uar"] <= 1 and set(overall["per_class"]) == set(EMOTIONS)
    assert np.asarray(overall["confusion"]).sum() == 59
    assert any("boredom" in reason for reason in report["rejected_files"])  # unknown label: reported, not scored
    assert "overall" in result.output and "UAR" in result.output
    pngs = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert {"class_distribution.png", "logmel_examples.png", "learning_curves.png", "confusion_overall.png"} <= pngs


def test_evaluate_test_split_is_the_bundles_recorded_held_out_groups(corpora, tiny_bundle, recorded_bundle, tmp_path, local_ray):
    def evaluate(bundle: Path) -> tuple[dict, str]:
        out = tmp_path / f"{bundle.parent.name}.json"
        result = CliRunner().invoke(main, ["evaluate", "--model", str(bundle), "--corpus", f"ravdess={corpora['ravdess']}",
                                           "--corpus", f"manifest={corpora['manifest']}", "--json", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text()), result.output

    report, output = evaluate(recorded_bundle)
    assert report["split_recorded_in_bundle"] and report["reports"]["ravdess"]["n"] == 21  # actors 05 06 07, 7 clips each
    assert report["excluded_corpora_not_trained_on"] == {"manifest": 3} and "manifest" not in report["reports"]
    assert "speaker-disjoint" in output and "not trained on" in output
    report, output = evaluate(tiny_bundle)  # records no held-out groups: recomputed, and said so
    assert not report["split_recorded_in_bundle"] and report["reports"]["ravdess"]["n"] == 14
    assert "speaker-disjoint" not in output and "NOT guaranteed" in output


def test_evaluate_and_predict_refuse_a_bundle_that_fails_its_checks(corpora, tiny_bundle, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_bundle.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.keras").write_bytes(b"not a model")
    clip = write_speech(tmp_path / "clip.wav", seconds=1.0)
    for args in (["predict", str(clip)], ["evaluate", "--corpus", f"ravdess={corpora['ravdess']}"]):
        result = CliRunner().invoke(main, [args[0], "--model", str(broken), *args[1:]])
        assert result.exit_code == 1 and "model refused" in result.output and "does not match the hash" in result.output


def test_predict_prints_one_json_line_per_file_with_windows_for_long_files(tiny_bundle, tmp_path):
    short = write_speech(tmp_path / "short.wav", seconds=1.5)
    long = write_speech(tmp_path / "long.flac", seconds=7.0, sample_rate=8000, seed=3)
    result = CliRunner().invoke(main, ["predict", "--model", str(tiny_bundle), "--json", str(short), str(long)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["path"] for r in lines] == [str(short), str(long)]
    for r in lines:
        assert r["emotion"] in EMOTIONS and set(r["probabilities"]) == set(EMOTIONS)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert len(lines[0]["windows"]) == 1 and len(lines[1]["windows"]) > 1


def test_predict_reports_undecodable_files_and_fails(tiny_bundle, tmp_path):
    bad = write_corrupt_files(tmp_path / "bad")["truncated"]
    good = write_speech(tmp_path / "good.wav", seconds=1.0)
    result = CliRunner().invoke(main, ["predict", "--model", str(tiny_bundle), str(bad), str(good)])
    assert result.exit_code == 1
    assert "truncated" in result.output and str(good) in result.output
