"""Model bundles as untrusted input: only the Keras v3 zip of known layers loads, every file is checked against the
manifest's hash, publishing writes the manifest last, and the held-out groups travel with the bundle."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import main
from ser_core.corpora.manifest import Utterance
from ser_core.corpora.splits import HeldOutGroups
from ser_core.frontends.features import FeatureSpec
from ser_core.models.bundle import (
    BUNDLE_FILE,
    BUNDLED_MODEL_DIR,
    MODEL_FILE,
    BundleError,
    load_bundle,
    model_kind,
    model_splits,
    publish_bundle,
    read_bundle_files,
    read_bundle_info,
    save_bundle,
    stage_bundle,
)
from ser_core.models.cnn import ModelConfig, _keras, build_model
from tests.audio_factory import write_speech

SPEC = FeatureSpec()
TINY = ModelConfig(filters=(8, 8), kernel_size=3, dense_units=8)


def tiny_bundle(out: Path, seed: int = 0) -> Path:
    """A complete bundle of an untrained tiny CNN (weights seeded, so two seeds give two models)."""
    _keras().utils.set_random_seed(seed)
    save_bundle(build_model(SPEC, TINY), SPEC, np.zeros(SPEC.n_features), np.ones(SPEC.n_features), out)
    return out


def forge(folder: Path, model_bytes: bytes) -> None:
    """Put ``model_bytes`` in the bundle as an attacker would: with a manifest whose hashes and version match."""
    (folder / MODEL_FILE).write_bytes(model_bytes)
    info = json.loads((folder / BUNDLE_FILE).read_text())
    digest = hashlib.sha256(model_bytes).hexdigest()
    info["files"][MODEL_FILE] = {"sha256": digest, "bytes": len(model_bytes)}
    info["model_version"] = f"ser-cnn-{digest[:12]}"
    (folder / BUNDLE_FILE).write_text(json.dumps(info))


def lambda_model(marker: Path):
    """A model whose Lambda layer writes ``marker`` whenever the model is built, as loading does."""
    keras = _keras()
    inputs = keras.Input(SPEC.window_shape)
    touched = keras.layers.Lambda(lambda x, path=str(marker): (open(path, "w").write("ran"), x)[1])(inputs)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling1D()(touched))
    return keras.Model(inputs, outputs)


def rezip(data: bytes, members: dict[str, bytes]) -> bytes:
    """The Keras zip ``data`` with ``members`` replaced or added."""
    sink = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(sink, "w") as target:
        for name in source.namelist():
            target.writestr(name, members.get(name, source.read(name)))
        for name in set(members) - set(source.namelist()):
            target.writestr(name, members[name])
    return sink.getvalue()


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("valid") / "bundle")


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_a_legacy_hdf5_model_with_a_lambda_is_refused_and_its_code_never_runs(valid, tmp_path):
    marker = tmp_path / "code-ran.txt"
    lambda_model(marker).save(tmp_path / "evil.h5")
    marker.unlink(missing_ok=True)  # saving traced the Lambda; only loading matters here
    bundle = copy_of(valid, tmp_path)
    forge(bundle, (tmp_path / "evil.h5").read_bytes())

    with pytest.raises(BundleError, match="legacy HDF5"):
        load_bundle(bundle)
    clip = write_speech(tmp_path / "clip.wav", seconds=1.0)
    result = CliRunner().invoke(main, ["predict", "--model", str(bundle), str(clip)])
    assert result.exit_code != 0 and "model refused" in result.output
    assert not marker.exists()


def test_a_keras_zip_naming_a_lambda_or_an_unknown_class_or_member_is_refused(valid, tmp_path):
    marker = tmp_path / "code-ran.txt"
    lambda_model(marker).save(tmp_path / "lambda.keras")
    marker.unlink(missing_ok=True)
    bundle = copy_of(valid, tmp_path)
    forge(bundle, (tmp_path / "lambda.keras").read_bytes())
    with pytest.raises(BundleError, match="'Lambda'"):
        load_bundle(bundle)

    good = (valid / MODEL_FILE).read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        config = json.loads(archive.read("config.json"))
    config["config"]["layers"][1]["module"] = "os"  # the WindowMeanNorm layer, re-homed in another module
    forge(bundle, rezip(good, {"config.json": json.dumps(config).encode()}))
    with pytest.raises(BundleError, match="'WindowMeanNorm' \\(module 'os'"):
        load_bundle(bundle)
    forge(bundle, rezip(good, {"assets/run.py": b"print('hi')"}))
    with pytest.raises(BundleError, match="expected exactly"):
        load_bundle(bundle)
    assert not marker.exists()


def test_a_model_file_that_does_not_match_the_manifest_is_refused(valid, tmp_path):
    bundle = copy_of(valid, tmp_path)
    other = tiny_bundle(tmp_path / "other", seed=1)
    shutil.copy(other / MODEL_FILE, bundle / MODEL_FILE)  # a new model under the old manifest: a torn publish
    with pytest.raises(BundleError, match="does not match the hash"):
        load_bundle(bundle)
    info = json.loads((bundle / BUNDLE_FILE).read_text())
    del info["files"]
    (bundle / BUNDLE_FILE).write_text(json.dumps(info))
    with pytest.raises(BundleError, match="records no file hashes"):
        load_bundle(bundle)


def test_a_bundle_naming_an_unknown_model_kind_is_refused(valid, tmp_path):
    bundle = copy_of(valid, tmp_path)
    info = json.loads((bundle / BUNDLE_FILE).read_text())
    assert info["model_kind"] == "cnn"
    (bundle / BUNDLE_FILE).write_text(json.dumps({**info, "model_kind": "wav2vec-head"}))
    with pytest.raises(BundleError, match="unknown model kind 'wav2vec-head'"):
        load_bundle(bundle)


def test_a_publish_that_fails_midway_leaves_the_old_bundle_whole(tmp_path):
    out = tiny_bundle(tmp_path / "out", seed=0)
    old = load_bundle(out).version
    (out / "figures").write_text("a file where the new bundle has a folder")  # makes the publish fail midway
    staged = stage_bundle(build_model(SPEC, TINY), SPEC, np.zeros(SPEC.n_features), np.ones(SPEC.n_features), tmp_path / "new")
    (staged / "figures").mkdir()
    (staged / "figures" / "learning_curves.png").write_bytes(b"png")
    with pytest.raises(OSError):
        publish_bundle(staged, str(out))
    assert load_bundle(out).version == old


def test_a_bundle_published_to_s3_loads_and_a_swapped_model_is_refused(tmp_path, s3_bucket):
    import s3fs

    local = tiny_bundle(tmp_path / "local")
    staged = tmp_path / "staged"
    shutil.copytree(local, staged)
    (staged / "figures").mkdir()
    (staged / "figures" / "learning_curves.png").write_bytes(b"png")
    info = publish_bundle(staged, f"{s3_bucket}/models/m1")
    assert set(info["files"]) == {"model.keras", "figures/learning_curves.png"}
    assert read_bundle_info(f"{s3_bucket}/models/m1")["files"] == info["files"]
    assert set(read_bundle_files(f"{s3_bucket}/models/m1")) == {BUNDLE_FILE, MODEL_FILE}
    remote = load_bundle(f"{s3_bucket}/models/m1", expected_spec=SPEC)
    assert remote.version == info["model_version"]  # what publishing records is what loading computes

    other = tiny_bundle(tmp_path / "other", seed=1)
    s3fs.S3FileSystem().pipe_file(f"{s3_bucket}/models/m1/{MODEL_FILE}", (other / MODEL_FILE).read_bytes())
    with pytest.raises(BundleError, match="does not match the hash"):
        load_bundle(f"{s3_bucket}/models/m1")


def test_the_shipped_cnn_records_its_held_out_groups_and_hashes():
    info = read_bundle_info("cnn")
    held_out = HeldOutGroups.from_dict(info["held_out_groups"])
    assert held_out.test["ravdess"] == ("ravdess/actor02", "ravdess/actor07", "ravdess/actor17", "ravdess/actor20")
    assert held_out.validation["ravdess"] == ("ravdess/actor03", "ravdess/actor06", "ravdess/actor12", "ravdess/actor15")
    words = info["data_summary"]["test"]["per_corpus"]["tess"] / 14  # 2 speakers x 7 emotions per word
    assert len(held_out.test["tess"]) == words and not set(held_out.test["tess"]) & set(held_out.validation["tess"])
    on_disk = {p.relative_to(BUNDLED_MODEL_DIR).as_posix() for p in BUNDLED_MODEL_DIR.rglob("*") if p.is_file()}
    assert set(info["files"]) == on_disk - {BUNDLE_FILE}
    for name, recorded in info["files"].items():
        assert hashlib.sha256((BUNDLED_MODEL_DIR / name).read_bytes()).hexdigest() == recorded["sha256"], name


def test_the_shipped_cards_can_be_written_again_from_their_bundles():
    for name in ("cnn", "whisper-head"):
        info = read_bundle_info(name)
        card = model_kind(info)[1].card(info)
        assert "Acted emotions only (ravdess, tess" in card or name != "cnn"
        assert "../" not in card and "/work/" not in card, name


def utterance(corpus: str, speaker: str) -> Utterance:
    return Utterance(f"{corpus}/{speaker}/1", f"{speaker}.wav", corpus, speaker, "sad", "sad", gender="female")


def test_recorded_groups_decide_the_split_whatever_subset_is_scanned():
    held_out = HeldOutGroups.from_rows([("c", "c/a", "train"), ("c", "c/b", "validation"), ("c", "c/t", "test")])
    info = {"held_out_groups": held_out.to_dict()}
    subset = [utterance("c", "a"), utterance("c", "t"), utterance("other", "x")]
    splits = model_splits(info, subset)
    assert splits.recorded and splits.assignment == {"c/a/1": "train", "c/t/1": "test", "other/x/1": None}
    assert [u.speaker for u in splits.select(subset, "test")] == ["t"]
    assert [u.corpus for u in splits.unknown(subset)] == ["other"]
    recomputed = model_splits({}, subset)
    assert not recomputed.recorded and recomputed.assignment == {"c/a/1": "train", "c/t/1": "train", "other/x/1": "train"}


def test_the_shipped_whisper_head_is_the_default_and_describes_itself():
    from ser_core.models.bundle import BUNDLED_MODELS, DEFAULT_MODEL

    assert DEFAULT_MODEL == "whisper-head"
    folder = BUNDLED_MODELS["whisper-head"]
    info = read_bundle_info()
    assert info["model_kind"] == "whisper-head" and f"`{info['head_recipe']}`" in info["experiments"]["chosen"]
    assert info["training"]["fit_splits"] == ["train", "validation"] and info["speaker_norm"] is None  # see the card
    held_out = HeldOutGroups.from_dict(info["held_out_groups"])
    assert held_out.test["ravdess"] == ("ravdess/actor02", "ravdess/actor07", "ravdess/actor17", "ravdess/actor20")
    assert all(groups == () for groups in held_out.validation.values())  # validation speakers were trained on
    assert set(held_out.test) == {"ravdess", "tess", "emovo", "ased", "turev", "nemo"}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(info["files"]) == on_disk - {BUNDLE_FILE}
    text = (folder / BUNDLE_FILE).read_text() + (folder / "MODEL_CARD.md").read_text()
    assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text


def edited(bundle: Path, folder: Path, edit) -> Path:
    """A copy of ``bundle`` in ``folder`` whose ``bundle.json`` went through ``edit`` (the model file unchanged)."""
    copy = Path(shutil.copytree(bundle, folder))
    info = json.loads((copy / BUNDLE_FILE).read_text())
    edit(info)
    (copy / BUNDLE_FILE).write_text(json.dumps(info))
    return copy


def test_the_model_version_covers_the_whole_bundle_not_only_the_weights(valid, tmp_path):
    from ser_core.audio.segmentation import Segmentation

    version = load_bundle(valid).version
    assert load_bundle(shutil.copytree(valid, tmp_path / "same")).version == version
    assert json.loads((valid / BUNDLE_FILE).read_text())["model_version"] == version  # recorded when published

    def swap_labels(info):
        info["labels"][:2] = info["labels"][1::-1]  # every answer changes; the weights do not

    def shift_normalisation(info):
        info["normalisation"]["mean"][0] += 1.0

    def cut_speech_otherwise(info):
        info["segmentation"] = {**Segmentation().to_dict(), "min_region_s": 0.5}

    # each copy's bundle.json still says the old model_version: loading does not take its word for it
    versions = [load_bundle(edited(valid, tmp_path / edit.__name__, edit)).version
                for edit in (swap_labels, shift_normalisation, cut_speech_otherwise)]
    assert len({version, *versions}) == 4, versions


def test_a_deep_or_huge_bundle_json_is_refused_in_one_line(valid, tmp_path):
    deep = Path(shutil.copytree(valid, tmp_path / "deep"))
    (deep / BUNDLE_FILE).write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BundleError, match="nested 200000 levels deep, more than the 32 allowed"):
        load_bundle(deep)
    huge = edited(valid, tmp_path / "huge", lambda info: info.update(padding="x" * 5 * 2**20))
    with pytest.raises(BundleError, match="larger than 4 MB"):
        read_bundle_info(huge)
    strings = edited(valid, tmp_path / "strings", lambda info: info.update(note="[[[[{{{{" * 10))
    assert read_bundle_info(strings)["note"].startswith("[[[[")  # brackets inside strings are text, not depth

    clip = write_speech(tmp_path / "clip.wav", seconds=1.0)
    result = CliRunner().invoke(main, ["predict", "--model", str(deep), str(clip)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: model refused: ") and "more than the 32 allowed" in result.output
