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
continues an interrupted run from its run folder (checked by :mod:`ser_core.training.runs`). The driver finally
loads the best weights, scores the validation and test splits (:mod:`ser_core.training.evaluation`) and publishes
the bundle (:mod:`ser_core.models.bundle`; its record of the run: :mod:`ser_core.training.records`), with the
held-out validation and test groups of every corpus so that ``evaluate``/``make-archive --split test`` use exactly
what training held out.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from jobs import options
from jobs.ray_runtime import ensure_ray
from ser_core import storage
from ser_core.frontends.features import FeatureSpec
from ser_core.models.bundle import publish_bundle, stage_bundle
from ser_core.models.cnn import ModelConfig, TrainConfig
from ser_core.models.kinds import CNN
from ser_core.training.evaluation import evaluate_splits, predict_windows, selection_score, utterance_reports
from ser_core.training.records import CnnRun, cnn_info
from ser_core.training.runs import (
    check_resume,
    checked_windows,
    feature_spec,
    features_identity,
    read_feature_metadata,
    record_features,
)
from ser_core.training.streaming import (
    batches_per_worker_epoch,
    cell_weights,
    read_split,
    shard_moments,
    shuffled_batches,
    split_files,
    train_stream,
)

log = logging.getLogger(__name__)

TRAIN_STATE = "state.json"
BEST_WEIGHTS = "best.weights.npz"
TF_CHECKPOINT = "train"
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


def feature_normalisation(files: list[str], spec: FeatureSpec, tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of the training windows: ``tasks`` Ray tasks, each streaming over its
    share of the shard files and sending back sums; each task's process exits after it, so its memory goes back."""
    import ray

    from ser_core.models.cnn import normalisation_stats

    task = ray.remote(num_cpus=1, max_calls=1)(shard_moments)
    parts = ray.get([task.remote(files[i::tasks], spec) for i in range(min(tasks, len(files)))])
    return normalisation_stats(np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0), sum(p[2] for p in parts))


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
            state, best_weights = read_checkpoint(folder)
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
        reports = utterance_reports(predict_windows(model, x_val), meta_val)
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


def read_checkpoint(folder: str) -> tuple[dict, list[np.ndarray]]:
    """A run checkpoint's training state and best weights so far (as rank 0 wrote them)."""
    state = json.loads(Path(folder, TRAIN_STATE).read_text())
    with np.load(os.path.join(folder, BEST_WEIGHTS)) as stored:
        return state, [stored[f"w{i}"] for i in range(len(stored.files))]


def run_train(config: TrainJobConfig) -> dict:
    """Run distributed training and write the bundle to ``config.out``; returns the bundle's info."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from ser_core.models.cnn import build_model
    from ser_core.training.figures import cnn_bundle_figures

    started = time.time()
    notes = json.loads(storage.read_bytes(config.notes)) if config.notes else None
    metadata = read_feature_metadata(config.features)
    spec = feature_spec(config.features, metadata)
    identity = features_identity(config.features, metadata)
    if config.resume:
        check_resume(config.run_storage, identity)
    if config.ray_address is None:
        for name, value in LOCAL_RAY_MALLOC_ENV.items():
            os.environ.setdefault(name, value)  # inherited by the Ray processes started next
    ensure_ray(config.ray_address)

    meta, train_files, n_train = checked_windows(config.features, config.train.batch_size, config.workers)
    mean, std = feature_normalisation(train_files, spec, tasks=max(1, config.workers))

    run_storage = config.run_storage
    run_name = "train"
    if not config.resume:
        fs, path = storage.filesystem(storage.join(run_storage, run_name))
        if fs.exists(path):
            log.info("removing the previous run %s (pass --resume to continue it)", path)
            fs.rm(path, recursive=True)
        record_features(run_storage, identity)
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
        state, best_weights = read_checkpoint(folder)
    model = build_model(spec, config.model)
    model.set_weights(best_weights)
    info = cnn_info(model, spec, config.features, metadata, meta, CnnRun(config.model, config.train, config.workers, state, train_seconds))
    info["metrics"] = evaluate_splits(model, meta, spec, mean, std)
    if notes:
        info["experiments"] = notes
    with tempfile.TemporaryDirectory() as folder:
        stage_bundle(model, spec, mean, std, folder, info=info, card=CNN.card(info))
        cnn_bundle_figures(folder, info)
        publish_bundle(folder, config.out)
    return info


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
