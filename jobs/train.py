"""``ser train``: feature Parquet to a model bundle, with Ray Train's TensorflowTrainer on N workers.

Data flow, streamed so that no process holds the training set: the driver reads only the metadata columns of
the feature shards (window counts per split and (corpus, emotion) cell: the sample weights, the step count) and
computes the per-feature normalisation in a few Ray tasks that stream over the shards and send back only sums.
Each worker streams training windows straight from the Parquet shards (:mod:`ser_core.training.streaming`: every pass over
the data deals the shard files out to the workers afresh; a few shards are loaded at a time, normalised as they
load, and drawn from at random through a shuffle buffer into batches, one ``tf.data`` dataset per epoch) and
runs the same number of steps per epoch as every other worker under ``MultiWorkerMirroredStrategy`` (tf.data
auto-sharding off). It holds the original copies of the validation split, scores them at utterance level after
every epoch and reports a checkpoint; model selection and early stopping use the validation score only, never
the test split. A failed worker makes Ray Train restart the group from the last checkpoint (``FailureConfig``); ``--resume``
continues an interrupted run from its run folder. The driver finally loads the best weights, scores the
validation and test splits and publishes the bundle (:mod:`ser_core.models.bundle`), with the held-out validation and
test groups of every corpus so that ``evaluate``/``make-archive --split test`` use exactly what training held out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd

from jobs import options
from jobs.ray_runtime import ensure_ray
from ser_core import storage
from ser_core.corpora.splits import HeldOutGroups
from ser_core.errors import Refused
from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS
from ser_core.models.bundle import publish_bundle, stage_bundle
from ser_core.models.cnn import ModelConfig, TrainConfig
from ser_core.models.kinds import CNN
from ser_core.models.provenance import git_revision
from ser_core.training.examples import CALL_COPY
from ser_core.training.metrics import grouped_reports, utterance_probabilities
from ser_core.training.streaming import (
    batches_per_worker_epoch,
    cell_weights,
    read_split,
    scan_windows,
    shard_moments,
    shuffled_batches,
    split_files,
    train_stream,
)

log = logging.getLogger(__name__)

TRAIN_STATE = "state.json"
BEST_WEIGHTS = "best.weights.npz"
TF_CHECKPOINT = "train"
RUN_FEATURES = "features.json"  # in the run folder: what its checkpoints were trained on
SELECTION_METRIC = "val_uar"
SHUFFLE_WINDOWS = 1024  # a worker's shuffle buffer (84 MB of windows)
# glibc settings for the processes of a local Ray: few malloc arenas, and large arrays (shards, batches) always
# mmapped so that freeing them returns the memory (the dynamic threshold would move them onto fragmenting heaps).
LOCAL_RAY_MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


@dataclass(frozen=True)
class TrainJobConfig:
    """Everything ``ser train`` needs."""

    features: str
    out: str
    workers: int = 2
    cpus_per_worker: float = 1.0
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    run_dir: str | None = None  # Ray Train storage (checkpoints); default OUT/ray_run
    resume: bool = False
    max_failures: int = 2
    ray_address: str | None = None
    fail_once_after_epoch: int | None = None  # fault drill: the last worker exits once after this epoch's checkpoint
    notes: str | None = None  # JSON recorded in the bundle and card: {"runs": [...], "summary", "commands", "changes": [...]}

    @property
    def run_storage(self) -> str:
        path = self.run_dir or storage.join(self.out, "ray_run")
        return path if storage.is_remote(path) else os.path.abspath(path)


def read_feature_metadata(features: str) -> dict:
    """The extraction's ``metadata.json`` (feature spec, augmentation, splits)."""
    return json.loads(storage.read_bytes(storage.join(features, "metadata.json")))


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


def feature_normalisation(files: list[str], spec: FeatureSpec, tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of the training windows: ``tasks`` Ray tasks, each streaming over its
    share of the shard files and sending back sums; each task's process exits after it, so its memory goes back."""
    import ray

    from ser_core.models.cnn import normalisation_stats

    task = ray.remote(num_cpus=1, max_calls=1)(shard_moments)
    parts = ray.get([task.remote(files[i::tasks], spec) for i in range(min(tasks, len(files)))])
    return normalisation_stats(np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0), sum(p[2] for p in parts))


def utterance_predictions(window_probs: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    """One row per utterance: its metadata, mean window probabilities (``prob_<label>``) and ``predicted``."""
    ids, probs = utterance_probabilities(meta["utterance_id"], window_probs)
    rows = meta.drop_duplicates("utterance_id").set_index("utterance_id").loc[ids].reset_index()
    for i, label in enumerate(EMOTIONS):
        rows[f"prob_{label}"] = probs[:, i]
    rows["predicted"] = [EMOTIONS[i] for i in probs.argmax(axis=1)]
    return rows


def selection_score(reports: dict) -> float:
    """Model-selection score: the mean over corpora of the utterance-level UAR (each corpus counts the same)."""
    return float(np.mean([r["uar"] for name, r in reports.items() if name != "overall"]))


def _predict(model, parts: list[np.ndarray], batch_size: int = 512) -> np.ndarray:
    return np.concatenate([model(x[i : i + batch_size].astype(np.float32), training=False).numpy()
                           for x in parts for i in range(0, len(x), batch_size)])


def train_loop_per_worker(loop_config: dict) -> None:
    """One Ray Train worker: MultiWorkerMirroredStrategy over this worker's shard, a checkpoint every epoch."""
    import ray.train
    import tensorflow as tf
    from ray.train.collective import broadcast_from_rank_zero

    from ser_core.models import cnn as ser_model

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    spec = FeatureSpec.from_dict(loop_config["spec"])
    model_config = ModelConfig(**loop_config["model"])
    train_config = TrainConfig(**loop_config["train"])
    mean, std = np.asarray(loop_config["mean"], np.float32), np.asarray(loop_config["std"], np.float32)

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    weights = {(corpus, emotion): weight for corpus, emotion, weight in loop_config["weights"]}
    # Held for every epoch's scoring, in float16 (half the memory; normalised values lose nothing that matters).
    x_val, meta_val = read_split(loop_config["validation_files"], spec, "validation", (mean, std), np.float16)
    steps = loop_config["steps_per_epoch"]

    tf.random.set_seed(train_config.seed + rank)
    with strategy.scope():
        model = ser_model.build_model(spec, model_config)
        ser_model.compile_model(model, train_config, steps)
    tf_checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)

    state = {"epoch": 0, "best_score": -1.0, "best_epoch": -1, "history": [], "restored_from_epoch": None}
    best_weights = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            tf_checkpoint.read(os.path.join(folder, TF_CHECKPOINT)).expect_partial()
            state = json.loads(Path(folder, TRAIN_STATE).read_text())
            with np.load(os.path.join(folder, BEST_WEIGHTS)) as stored:
                best_weights = [stored[f"w{i}"] for i in range(len(stored.files))]
        state["restored_from_epoch"] = state["epoch"]

    stream = train_stream(loop_config["train_files"], spec, (mean, std), weights, rank, world, train_config.seed, state["epoch"])
    rng = np.random.default_rng([train_config.seed, state["epoch"], rank])
    batches = shuffled_batches(stream, train_config.batch_size, SHUFFLE_WINDOWS, rng)
    per_epoch = batches_per_worker_epoch(steps, world)
    stop = state["epoch"] >= train_config.epochs
    while not stop:
        epoch = state["epoch"]
        started = time.time()
        # A finite dataset per epoch: its generator has ended before fit() drops the iterator, since a generator
        # call still running when an iterator is destroyed can hang the worker.
        dataset = ser_model.streamed_train_dataset(lambda: itertools.islice(batches, per_epoch), spec, train_config)
        fitted = model.fit(dataset, steps_per_epoch=steps, initial_epoch=epoch, epochs=epoch + 1, verbose=0)
        reports = grouped_reports(utterance_predictions(_predict(model, x_val), meta_val))
        score = selection_score(reports)
        metrics = {
            "epoch": epoch,
            "loss": float(fitted.history["loss"][0]),
            SELECTION_METRIC: score,
            **{f"val_uar_{name}": r["uar"] for name, r in reports.items()},
            "seconds": time.time() - started,
        }
        # Every worker scores the same validation windows with the same weights; rank 0 alone decides, so all stop together.
        improved = broadcast_from_rank_zero(score > state["best_score"] if rank == 0 else None)
        if improved:
            best_weights = model.get_weights()
            state.update(best_score=score, best_epoch=epoch)
        state["history"].append(metrics)
        state["epoch"] = epoch + 1
        stop = state["epoch"] >= train_config.epochs or state["epoch"] - 1 - state["best_epoch"] >= train_config.patience
        metrics.update(best_epoch=state["best_epoch"], best_val_uar=state["best_score"], restored_from_epoch=state["restored_from_epoch"])
        with tempfile.TemporaryDirectory() as folder:
            tf_checkpoint.write(os.path.join(folder, TF_CHECKPOINT))  # on every worker: may run collectives
            if rank == 0:
                Path(folder, TRAIN_STATE).write_text(json.dumps(state))
                np.savez(os.path.join(folder, BEST_WEIGHTS), **{f"w{i}": w for i, w in enumerate(best_weights)})
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)
        _maybe_fail(loop_config, epoch, rank, world)


def _maybe_fail(loop_config: dict, epoch: int, rank: int, world: int) -> None:
    """Fault drill: the last worker exits hard, once per run, after the configured epoch's checkpoint."""
    marker = loop_config.get("fail_marker")
    if loop_config.get("fail_once_after_epoch") != epoch or rank != world - 1 or marker is None or storage.exists(marker):
        return
    import ray.train

    ray.train.get_all_reported_checkpoints()  # wait until Ray Train has registered this epoch's checkpoint
    storage.write_bytes_atomic(marker, f"worker {rank} exited after epoch {epoch}\n".encode())
    os._exit(1)


def data_summary(meta: pd.DataFrame) -> dict:
    """Utterance counts per split, corpus, speaker and emotion (original copies) and window counts (all copies)."""
    originals = meta[meta["copy"] == 0].drop_duplicates("utterance_id")
    summary = {}
    for split, part in originals.groupby("split"):
        summary[split] = {
            "utterances": int(len(part)),
            "windows_all_copies": int((meta["split"] == split).sum()),
            "per_corpus": {k: int(v) for k, v in Counter(part["corpus"]).items()},
            "per_emotion": {k: int(v) for k, v in Counter(part["emotion"]).items()},
            "per_corpus_emotion": {f"{c}/{e}": int(n) for (c, e), n in part.groupby(["corpus", "emotion"]).size().items()},
            "per_speaker": {k: int(v) for k, v in Counter(part["speaker"]).items()},
        }
    return summary


def write_bundle_figures(folder: str, info: dict) -> list:
    """Learning curves and the overall validation/test confusion matrices as PNGs in the local ``folder/figures``."""
    from ser_core.training import plots

    figures = os.path.join(folder, "figures")
    written = [plots.learning_curves(info["training"]["history"], os.path.join(figures, "learning_curves.png"), info["training"]["best_epoch"])]
    for key, reports in info["metrics"].items():
        r = reports["overall"]
        split, _, channel = key.partition("_")
        written.append(plots.confusion(r, os.path.join(figures, f"confusion_{key}.png"),
                                       f"all corpora, {split} split, {channel or 'clip'}: UAR {r['uar']:.3f}, n={r['n']}"))
    return written


def evaluate_splits(model, meta: pd.DataFrame, spec: FeatureSpec, mean: np.ndarray, std: np.ndarray) -> dict:
    """Utterance-level reports per corpus and overall of the ``validation`` and ``test`` splits: the clips (keys
    ``validation``, ``test``) and the clips through the call channel (``validation_call``, ``test_call``)."""
    metrics = {}
    for split in ("validation", "test"):
        for copy, key in ((0, split), (CALL_COPY, f"{split}_call")):
            parts, split_meta = read_split(split_files(meta, split), spec, split, (mean, std), copy=copy)
            if parts:
                metrics[key] = grouped_reports(utterance_predictions(_predict(model, parts), split_meta))
    return metrics


def checked_windows(config: TrainJobConfig, spec: FeatureSpec) -> tuple[pd.DataFrame, list[str], int]:
    """The windows' metadata, the training shard files and the training window count; refuses a set too small for
    the batch, the workers or without a validation split."""
    meta = scan_windows(config.features)  # metadata columns only: the training windows are never loaded here
    n_train = int((meta["split"] == "train").sum())
    train_files = split_files(meta, "train")
    if n_train < config.train.batch_size or not (meta["split"] == "validation").any():
        raise Refused(f"{config.features}: need at least {config.train.batch_size} training windows and a validation split")
    if config.train.batch_size % config.workers:
        raise Refused(f"--batch-size {config.train.batch_size} must be a multiple of --workers {config.workers}")
    if len(train_files) < config.workers:
        raise Refused(f"{config.features}: {len(train_files)} shard file(s) of training windows for {config.workers} "
                      "workers; extract with a smaller --shard-size or train with fewer workers")
    return meta, train_files, n_train


def run_train(config: TrainJobConfig) -> dict:
    """Run distributed training and write the bundle to ``config.out``; returns the bundle's info."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from ser_core.models.cnn import build_model

    started = time.time()
    notes = json.loads(storage.read_bytes(config.notes)) if config.notes else None
    metadata = read_feature_metadata(config.features)
    spec = FeatureSpec.from_dict(metadata["feature_spec"])
    if spec.version != metadata["feature_version"]:
        raise Refused(f"{config.features}: metadata feature spec hashes to {spec.version}, not {metadata['feature_version']}")
    identity = features_identity(config.features, metadata)
    if config.resume:
        check_resume(config.run_storage, identity)
    if config.ray_address is None:
        for name, value in LOCAL_RAY_MALLOC_ENV.items():
            os.environ.setdefault(name, value)  # inherited by the Ray processes started next
    ensure_ray(config.ray_address)

    meta, train_files, n_train = checked_windows(config, spec)
    mean, std = feature_normalisation(train_files, spec, tasks=max(1, config.workers))

    run_storage = config.run_storage
    run_name = "train"
    if not config.resume:
        fs, path = storage.filesystem(storage.join(run_storage, run_name))
        if fs.exists(path):
            log.info("removing the previous run %s (pass --resume to continue it)", path)
            fs.rm(path, recursive=True)
        storage.write_bytes_atomic(storage.join(run_storage, RUN_FEATURES), json.dumps(identity, indent=2).encode())
    loop_config = {
        "spec": spec.to_dict(),
        "model": dataclasses.asdict(config.model),
        "train": dataclasses.asdict(config.train),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "steps_per_epoch": max(1, n_train // config.train.batch_size),
        "train_files": train_files,
        "validation_files": split_files(meta, "validation"),
        "weights": cell_weights(meta, config.train.balance),
        "fail_once_after_epoch": config.fail_once_after_epoch,
        "fail_marker": storage.join(run_storage, "fault-drill.txt") if config.fail_once_after_epoch is not None else None,
    }
    trainer = TensorflowTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=config.workers, resources_per_worker={"CPU": config.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name,
            storage_path=run_storage,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    train_seconds = time.time() - started

    with result.checkpoint.as_directory() as folder:
        state = json.loads(Path(folder, TRAIN_STATE).read_text())
        with np.load(os.path.join(folder, BEST_WEIGHTS)) as stored:
            best_weights = [stored[f"w{i}"] for i in range(len(stored.files))]
    model = build_model(spec, config.model)
    model.set_weights(best_weights)
    info = bundle_info(config, model, metadata, meta, spec, state, train_seconds)
    info["metrics"] = evaluate_splits(model, meta, spec, mean, std)
    if notes:
        info["experiments"] = notes
    with tempfile.TemporaryDirectory() as folder:
        stage_bundle(model, spec, mean, std, folder, info=info, card=CNN.card(info))
        write_bundle_figures(folder, info)
        publish_bundle(folder, config.out)
    return info


def bundle_info(config: TrainJobConfig, model, metadata: dict, meta: pd.DataFrame, spec: FeatureSpec, state: dict,
                train_seconds: float) -> dict:
    """What ``bundle.json`` records of the training run (metrics and experiments are added by the caller)."""
    from ser_core.models.cnn import _keras

    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_revision": git_revision(),
        "parameters": int(model.count_params()),
        "window_shape": list(spec.window_shape),
        "feature_version": spec.version,
        "segmentation": metadata.get("segmentation"),
        "keras": f"tf_keras {_keras().__version__}",
        "model_config": dataclasses.asdict(config.model),
        "train_config": dataclasses.asdict(config.train),
        "features": {
            "source": config.features.rstrip("/").split("/")[-1],  # the folder name: no path of the training machine
            "augment_copies": metadata.get("augment_copies"),
            "augment_policy": metadata.get("augment_policy"),
            "split_config": metadata.get("split_config"),
            "corpora": metadata.get("corpora"),
        },
        "held_out_groups": features_held_out(config.features).to_dict(),
        "data_summary": data_summary(meta),
        "training": {
            "workers": config.workers,
            "best_epoch": state["best_epoch"],
            "best_val_score": state["best_score"],
            "selection": "mean over corpora of utterance-level UAR on the validation split, through the call channel",
            "history": state["history"],
            "restored_from_epoch": state["restored_from_epoch"],
            "wall_seconds": round(train_seconds, 1),
        },
    }


@click.command("train")
@click.option("--features", required=True, help="Output folder (or s3:// prefix) of `ser extract`.")
@click.option("--out", required=True, help="Model bundle folder to write.")
@click.option("--workers", default=2, show_default=True, help="Ray Train workers (MultiWorkerMirroredStrategy replicas).")
@click.option("--cpus-per-worker", default=1.0, show_default=True)
@click.option("--epochs", default=TrainConfig.epochs, show_default=True)
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True, help="Global batch (split across workers).")
@click.option("--learning-rate", default=TrainConfig.learning_rate, show_default=True)
@click.option("--patience", default=TrainConfig.patience, show_default=True, help="Early stopping on the validation score.")
@click.option("--seed", default=TrainConfig.seed, show_default=True)
@click.option("--run-dir", default=None, help="Ray Train checkpoints and run state (default: OUT/ray_run).")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option("--max-failures", default=2, show_default=True, help="Worker failures to recover from (from the last checkpoint).")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Join this Ray cluster instead of starting one.")
@click.option("--notes", default=None, metavar="JSON", help="Selection runs and changes to record in the bundle and its card.")
@options.refusals
def cli(features, out, workers, cpus_per_worker, epochs, batch_size, learning_rate, patience, seed, run_dir, resume,
        max_failures, ray_address, notes) -> None:
    """Train the emotion CNN with Ray Train and write a model bundle."""
    config = TrainJobConfig(
        features=features,
        out=out,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        train=dataclasses.replace(TrainConfig(), epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                  patience=patience, seed=seed),
        run_dir=run_dir,
        resume=resume,
        max_failures=max_failures,
        ray_address=ray_address,
        notes=notes,
    )
    info = run_train(config)
    training = info["training"]
    click.echo(f"trained {len(training['history'])} epochs on {workers} worker(s) in {training['wall_seconds']:.0f} s; "
               f"best epoch {training['best_epoch']} (validation score {training['best_val_score']:.3f}); bundle in {out}")
    for split, reports in info["metrics"].items():
        for corpus, r in reports.items():
            click.echo(f"  {split:<10} {corpus:<8} n={r['n']:<5} accuracy {r['accuracy']:.3f}  UAR {r['uar']:.3f}  macro-F1 {r['macro_f1']:.3f}")
