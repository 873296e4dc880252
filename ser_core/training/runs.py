"""What a ``ser train`` run checks and keeps of the features it trains on.

The extraction's ``metadata.json`` and feature spec, the identity of its features that the run folder records
(:data:`RUN_FEATURES`) so that ``--resume`` refuses checkpoints trained on other features, the validation and test
groups it holds out, and the window counts the training needs.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from ser_core import storage
from ser_core.corpora.splits import HeldOutGroups
from ser_core.errors import Refused
from ser_core.frontends.features import FeatureSpec
from ser_core.training.streaming import scan_windows, split_files

RUN_FEATURES = "features.json"
"""In the run folder: the identity of the features its checkpoints were trained on."""


def read_feature_metadata(features: str) -> dict:
    """The extraction's ``metadata.json`` (feature spec, augmentation, splits)."""
    return json.loads(storage.read_bytes(storage.join(features, "metadata.json")))


def feature_spec(features: str, metadata: dict) -> FeatureSpec:
    """The extraction's feature spec; refuses one that does not hash to the feature version its metadata records."""
    spec = FeatureSpec.from_dict(metadata["feature_spec"])
    if spec.version != metadata["feature_version"]:
        raise Refused(f"{features}: metadata feature spec hashes to {spec.version}, not {metadata['feature_version']}")
    return spec


def features_identity(features: str, metadata: dict) -> dict:
    """What a resumed run must share with its checkpoints: feature version, split settings, augmentation, shard contents.

    Shard file names carry a hash of their utterances, splits and extraction settings, so ``shards`` changes
    whenever the extracted data does.
    """
    shards = sorted(storage.parquet_files(storage.join(features, "features")))
    return {
        "feature_version": metadata["feature_version"],
        "split_config": metadata.get("split_config"),
        "augmentation": {key: metadata.get(key) for key in ("augment_copies", "augment_policy", "augment_splits")},
        "shards": hashlib.sha256("\n".join(shards).encode()).hexdigest(),
    }


def record_features(run_storage: str, identity: dict) -> None:
    """Record in a fresh run folder the identity of the features it trains on (see :func:`check_resume`)."""
    storage.write_bytes_atomic(storage.join(run_storage, RUN_FEATURES), json.dumps(identity, indent=2).encode())


def check_resume(run_storage: str, identity: dict) -> None:
    """Refuse to resume a run whose checkpoints were trained on other features or split settings."""
    path = storage.join(run_storage, RUN_FEATURES)
    if not storage.exists(path):
        raise Refused(f"cannot --resume {run_storage}: it has no record ({RUN_FEATURES}) of the features it "
                      "was trained on; start afresh without --resume")
    recorded = json.loads(storage.read_bytes(path))
    differs = [key for key in identity if recorded.get(key) != identity[key]]
    if differs:
        raise Refused(f"cannot --resume {run_storage}: these features differ from its checkpoints' in "
                      f"{', '.join(differs)}; start afresh without --resume")


def features_held_out(features: str) -> HeldOutGroups:
    """The validation and test groups per corpus of an extraction (from its ``manifest.parquet``)."""
    rows = storage.read_parquet(storage.join(features, "manifest.parquet")).select(["corpus", "split_group", "split"]).to_pylist()
    return HeldOutGroups.from_rows((r["corpus"], r["split_group"], r["split"]) for r in rows)


def checked_windows(features: str, batch_size: int, workers: int) -> tuple[pd.DataFrame, list[str], int]:
    """The windows' metadata, the training shard files and the training window count; refuses a set too small for
    the global ``batch_size``, the ``workers`` or without a validation split."""
    meta = scan_windows(features)  # metadata columns only: the training windows are never loaded here
    n_train = int((meta["split"] == "train").sum())
    train_files = split_files(meta, "train")
    if n_train < batch_size or not (meta["split"] == "validation").any():
        raise Refused(f"{features}: need at least {batch_size} training windows and a validation split")
    if batch_size % workers:
        raise Refused(f"--batch-size {batch_size} must be a multiple of --workers {workers}")
    if len(train_files) < workers:
        raise Refused(f"{features}: {len(train_files)} shard file(s) of training windows for {workers} "
                      "workers; extract with a smaller --shard-size or train with fewer workers")
    return meta, train_files, n_train
