"""What a trained model's ``bundle.json`` records of its training: provenance, the data it came from, the run.

The data are named, never located: the features or embeddings folder by its last name and the corpora by name
only, so no path typed on the training machine's command line (often an absolute one) ends up in a shipped bundle.
Metrics and experiments are added by the caller.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import pandas as pd

from ser_core.corpora.splits import HeldOutGroups
from ser_core.errors import Refused
from ser_core.frontends.embeddings import EmbeddingSpec
from ser_core.frontends.features import FeatureSpec
from ser_core.models.cards import corpus_names
from ser_core.models.cnn import ModelConfig, TrainConfig
from ser_core.models.head import HeadConfig
from ser_core.models.provenance import git_revision
from ser_core.training.evaluation import SELECTION_RULE, data_summary
from ser_core.training.runs import features_held_out


def source_name(folder: str) -> str:
    """The last name of a folder or prefix, without the path to it.

    >>> source_name("s3://bucket/runs/features/")
    'features'
    """
    return folder.rstrip("/").split("/")[-1]


def provenance(model) -> dict:
    """When and from which git revision a Keras model was trained, and its parameter count."""
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_revision": git_revision(),
        "parameters": int(model.count_params()),
    }


def features_record(features: str, metadata: dict) -> dict:
    """The CNN's training features: the folder's name, its augmentation, split settings and corpora (by name)."""
    return {
        "source": source_name(features),
        "augment_copies": metadata.get("augment_copies"),
        "augment_policy": metadata.get("augment_policy"),
        "split_config": metadata.get("split_config"),
        "corpora": corpus_names(metadata),
    }


@dataclass(frozen=True)
class CnnRun:
    """How a CNN was trained."""

    model: ModelConfig
    train: TrainConfig
    workers: int
    state: dict
    """The run's final state: ``best_epoch``, ``best_score``, ``history``, ``restored_from_epoch``."""
    wall_seconds: float


def cnn_info(model, spec: FeatureSpec, features: str, metadata: dict, meta: pd.DataFrame, run: CnnRun) -> dict:
    """What a CNN's ``bundle.json`` records of training on the extraction ``features`` (its ``metadata.json`` and
    window metadata ``meta``)."""
    import tf_keras

    return {
        **provenance(model),
        "window_shape": list(spec.window_shape),
        "feature_version": spec.version,
        "segmentation": metadata.get("segmentation"),
        "keras": f"tf_keras {tf_keras.__version__}",
        "model_config": dataclasses.asdict(run.model),
        "train_config": dataclasses.asdict(run.train),
        "features": features_record(features, metadata),
        "held_out_groups": features_held_out(features).to_dict(),
        "data_summary": data_summary(meta),
        "training": {
            "workers": run.workers,
            "best_epoch": run.state["best_epoch"],
            "best_val_score": run.state["best_score"],
            "selection": SELECTION_RULE,
            "history": run.state["history"],
            "restored_from_epoch": run.state["restored_from_epoch"],
            "wall_seconds": round(run.wall_seconds, 1),
        },
    }


@dataclass(frozen=True)
class HeadRun:
    """How a whisper head was fitted."""

    recipe: str
    head: HeadConfig
    fit_on: str
    fit_splits: tuple[str, ...]
    windows: int
    workers: int
    wall_seconds: float
    speaker_norm: dict | None
    """The speaker-normalisation prior scoring centres with, or ``None``."""


def fitted_held_out(originals: pd.DataFrame, fit_splits: tuple[str, ...]) -> HeldOutGroups:
    """The groups a head fitted on ``fit_splits`` held out: those splits count as train (one row per utterance)."""
    fitted_as = originals["split"].where(~originals["split"].isin(fit_splits), "train")
    return HeldOutGroups.from_rows(zip(originals["corpus"], originals["split_group"], fitted_as))


def head_info(model, spec: EmbeddingSpec, embeddings: str, metadata: dict, meta: pd.DataFrame, run: HeadRun,
              metrics: dict) -> dict:
    """What a whisper head's ``bundle.json`` records of fitting on the output of ``ser embed`` in ``embeddings``
    (its ``metadata.json`` and window metadata ``meta``), with its ``metrics``."""
    originals = meta[meta["copy"] == 0].drop_duplicates("utterance_id")
    return {
        **provenance(model),
        "head_recipe": run.recipe,
        "segmentation": metadata.get("segmentation"),
        "speaker_norm": run.speaker_norm,
        "head_config": dataclasses.asdict(run.head),
        "held_out_groups": fitted_held_out(originals, run.fit_splits).to_dict(),
        "embeddings": {"source": source_name(embeddings), "split_config": metadata["split_config"],
                       "corpora": corpus_names(metadata), "augment_copies": metadata["augment_copies"],
                       "encoder_layers": spec.layers},
        "training": {"fit_on": run.fit_on, "fit_splits": list(run.fit_splits), "copies": list(run.head.copies),
                     "windows": run.windows, "workers": run.workers, "wall_seconds": round(run.wall_seconds, 1)},
        "data_summary": {"utterances": {split: {c: int(n) for c, n in g["corpus"].value_counts().items()}
                                        for split, g in originals.groupby("split")}},
        "metrics": metrics,
    }


def sweep_record(sweep: dict, recipe: str, layers: int, choice_note: str | None) -> dict:
    """The recipe sweep (``bench/encoder_sweep.py``, ``bench/layer_sweep.py``) with a sentence on the shipped
    choice; refuses a recipe or depth other than the sweep's choice unless ``choice_note`` says why."""
    rule = "the sweep's rule (best sum of mean validation and mean LOCO UAR, call channel)"
    picked = sweep.get("chosen")  # encoder_sweep: a recipe; layer_sweep: {"layers": K, "recipe": name}
    picked = picked if isinstance(picked, dict) else {"recipe": picked, "layers": layers}
    if {"recipe": recipe, "layers": layers} == {"recipe": picked["recipe"], "layers": int(picked["layers"])}:
        chosen = f"Shipped: `{recipe}` on encoder layers 1-{layers}, chosen by {rule}."
    elif choice_note:
        chosen = f"Shipped: `{recipe}` on encoder layers 1-{layers}; {rule} picks {picked}. {choice_note}"
    else:
        raise Refused(f"--recipe {recipe} on {layers} layers is not the sweep's choice {picked}: say why with --choice-note")
    return {**sweep, "chosen": chosen}
