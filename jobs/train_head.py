"""``ser train-head``: pooled Whisper-encoder windows (``ser embed``) to a ``whisper-head`` model bundle, with Ray Train.

The recipe (head size, epochs, copies) was fixed on validation and leave-one-corpus-out figures by
``bench/encoder_sweep.py``; this job does no selection of its own. ``--fit-on train`` fits on the train split
(to measure: validation and test figures are then on unseen speakers); ``--fit-on development`` fits on the
train and validation splits, for the model that ships. Test-split figures are reported either way and are
never used to choose anything. The pooled windows are small (about 4 KB each), so each worker reads its
Ray Data shard into memory; TensorflowTrainer runs ``MultiWorkerMirroredStrategy`` over the workers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd

from jobs import options
from ser_core import storage
from ser_core.frontends.embeddings import EmbeddingSpec, read_embeddings
from ser_core.models.head import RECIPES, HeadConfig, head_inputs
from ser_core.training.records import HeadRun, head_info, sweep_record

FIT_SPLITS = {"train": ("train",), "development": ("train", "validation")}
WEIGHTS_FILE = "head.weights.npz"


@dataclass(frozen=True)
class TrainHeadJobConfig:
    """Everything ``ser train-head`` needs."""

    embeddings: str
    out: str
    recipe: str = "mlp256"
    epochs: int | None = None  # default: the recipe's
    seed: int = 0
    fit_on: str = "development"
    workers: int = 1
    experiments: str | None = None  # bench/encoder_sweep.py output, recorded in the bundle and its card
    choice_note: str | None = None  # why the recipe differs from the sweep's choice, when it does
    ray_address: str | None = None


def train_loop_per_worker(loop_config: dict) -> None:
    """One Ray Train worker: its shard of the standardised windows, a head fitted under the strategy, rank 0 saves."""
    import ray.train
    import tensorflow as tf

    from ser_core.models.head import fit_head

    shard = ray.train.get_dataset_shard("train")
    batches = list(shard.iter_batches(batch_size=4096, batch_format="numpy"))
    x = np.concatenate([b["x"] for b in batches]).astype(np.float32)
    meta = pd.DataFrame({"corpus": np.concatenate([b["corpus"] for b in batches]), "emotion": np.concatenate([b["emotion"] for b in batches])})
    config = HeadConfig(**{**loop_config["head"], "hidden": tuple(loop_config["head"]["hidden"]), "copies": tuple(loop_config["head"]["copies"])})
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = fit_head(x, meta, config)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            np.savez(os.path.join(folder, WEIGHTS_FILE), *model.get_weights())
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"windows": len(x)}, checkpoint=checkpoint)


def run_train_head(config: TrainHeadJobConfig) -> dict:
    """Fit the head with Ray Train and write the bundle to ``config.out``; return the bundle's info."""
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from jobs.ray_runtime import ensure_ray
    from ser_core.frontends.features import FeatureSpec
    from ser_core.models.bundle import publish_bundle, stage_bundle
    from ser_core.models.head import build_head
    from ser_core.models.kinds import WHISPER_HEAD
    from ser_core.models.whisper_head import manifest_fields
    from ser_core.training.evaluation import evaluate_embeddings
    from ser_core.training.figures import head_bundle_figures

    started = time.time()
    head = dataclasses.replace(RECIPES[config.recipe], seed=config.seed, **({"epochs": config.epochs} if config.epochs else {}))
    x, meta, metadata = read_embeddings(config.embeddings)
    spec = EmbeddingSpec.from_dict(metadata["embedding_spec"])
    experiments = sweep_record(json.loads(storage.read_bytes(config.experiments)), config.recipe, spec.layers,
                               config.choice_note) if config.experiments else None
    inputs = head_inputs(x, meta, head, FIT_SPLITS[config.fit_on])
    rows = inputs.fit_rows
    ensure_ray(config.ray_address)
    train = ray.data.from_items([{"x": v, "corpus": c, "emotion": e} for v, c, e in
                                 zip((inputs.x[rows] - inputs.mean) / inputs.std, meta["corpus"][rows], meta["emotion"][rows])])
    with tempfile.TemporaryDirectory(prefix="ser-head-run-") as run_dir:
        result = TensorflowTrainer(
            train_loop_per_worker=train_loop_per_worker,
            train_loop_config={"head": dataclasses.asdict(head)},
            scaling_config=ScalingConfig(num_workers=config.workers),
            datasets={"train": train},
            run_config=RunConfig(name="train-head", storage_path=run_dir),
        ).fit()
        with result.checkpoint.as_directory() as folder, np.load(Path(folder, WEIGHTS_FILE)) as stored:
            weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    model = build_head(spec.dim, head)
    model.set_weights(weights)
    run = HeadRun(recipe=config.recipe, head=head, fit_on=config.fit_on, fit_splits=FIT_SPLITS[config.fit_on],
                  windows=int(rows.sum()), workers=config.workers, wall_seconds=time.time() - started,
                  speaker_norm=inputs.speaker_norm)
    info = head_info(model, spec, config.embeddings, metadata, meta, run,
                     evaluate_embeddings(model, inputs.x, meta, inputs.mean, inputs.std))
    if experiments:
        info["experiments"] = experiments
    with tempfile.TemporaryDirectory(prefix="ser-bundle-") as folder:
        stage_bundle(model, FeatureSpec(sample_rate=spec.sample_rate), inputs.mean, inputs.std, folder, info, WHISPER_HEAD.card(info),
                     kind=WHISPER_HEAD.name, manifest=manifest_fields(spec))
        head_bundle_figures(folder, info)
        publish_bundle(folder, config.out)
    return info


@click.command("train-head")
@click.option("--embeddings", required=True, help="Output folder (or s3:// prefix) of `ser embed`.")
@click.option("--out", required=True, help="Model bundle folder (or s3:// prefix) to write.")
@click.option("--fit-on", type=click.Choice(sorted(FIT_SPLITS)), default="development", show_default=True,
              help="train: the train split only (to measure); development: train + validation (the shipped model).")
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), default="mlp256", show_default=True,
              help="Head recipe (see ser_core.models.head.RECIPES and bench/encoder_sweep.py).")
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs.")
@click.option("--seed", default=0, show_default=True)
@click.option("--experiments", default=None, metavar="JSON", help="bench/encoder_sweep.py results to record in the bundle and card.")
@click.option("--choice-note", default=None, metavar="TEXT", help="Why --recipe is not the sweep's choice (recorded in the card).")
@click.option("--workers", default=1, show_default=True, help="Ray Train workers.")
@options.ray_address
@options.refusals
def cli(embeddings, out, fit_on, recipe, epochs, seed, experiments, choice_note, workers, ray_address) -> None:
    """Train the classifier head over frozen Whisper-base windows and write a whisper-head bundle."""
    info = run_train_head(TrainHeadJobConfig(embeddings=embeddings, out=out, recipe=recipe, fit_on=fit_on, epochs=epochs,
                                             seed=seed, workers=workers, experiments=experiments, choice_note=choice_note,
                                             ray_address=ray_address))
    click.echo(f"trained the head on {info['training']['windows']} windows ({fit_on}) in {info['training']['wall_seconds']:.0f} s; bundle in {out}")
    for split, reports in info["metrics"].items():
        for corpus, r in reports.items():
            click.echo(f"  {split:<20} {corpus:<8} n={r['n']:<5} UAR {r['uar']:.3f}  accuracy {r['accuracy']:.3f}")
