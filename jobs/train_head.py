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
from ser_core.corpora.splits import HeldOutGroups
from ser_core.errors import Refused
from ser_core.frontends.embeddings import EmbeddingSpec, read_embeddings
from ser_core.labels import EMOTIONS
from ser_core.models.head import RECIPES, HeadConfig, centre_by_group, speaker_groups
from ser_core.training.examples import CALL_COPY
from ser_core.training.metrics import grouped_reports, utterance_probabilities

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


def evaluate(model, x: np.ndarray, meta: pd.DataFrame, mean: np.ndarray, std: np.ndarray) -> dict:
    """Utterance-level reports per split, through the call channel (``/call``) and as recorded (``/clean``), per corpus."""
    reports = {}
    for split in ("train", "validation", "test"):
        for copy, name in ((0, "clean"), (CALL_COPY, "call")):
            rows = ((meta["split"] == split) & (meta["copy"] == copy)).to_numpy()
            if not rows.any():
                continue
            probs = model.predict((x[rows] - mean) / std, batch_size=2048, verbose=0)
            ids, utt = utterance_probabilities(meta["utterance_id"][rows].tolist(), probs)
            truth = meta[rows].drop_duplicates("utterance_id").set_index("utterance_id").loc[ids].reset_index()
            truth["predicted"] = np.asarray(EMOTIONS)[utt.argmax(1)]
            reports[f"{split}/{name}"] = grouped_reports(truth)
    return reports


def recorded_sweep(config: TrainHeadJobConfig, spec: EmbeddingSpec) -> dict | None:
    """The ``--experiments`` sweep with a sentence on the shipped choice; refuses a recipe or depth other than the
    sweep's choice unless ``--choice-note`` says why."""
    if not config.experiments:
        return None
    sweep = json.loads(storage.read_bytes(config.experiments))
    rule = "the sweep's rule (best sum of mean validation and mean LOCO UAR, call channel)"
    shipped = {"recipe": config.recipe, "layers": spec.layers}
    picked = sweep.get("chosen")  # encoder_sweep: a recipe; layer_sweep: {"layers": K, "recipe": name}
    picked = picked if isinstance(picked, dict) else {"recipe": picked, "layers": spec.layers}
    if shipped == {"recipe": picked["recipe"], "layers": int(picked["layers"])}:
        chosen = f"Shipped: `{config.recipe}` on encoder layers 1-{spec.layers}, chosen by {rule}."
    elif config.choice_note:
        chosen = f"Shipped: `{config.recipe}` on encoder layers 1-{spec.layers}; {rule} picks {picked}. {config.choice_note}"
    else:
        raise Refused(f"--recipe {config.recipe} on {spec.layers} layers is not the sweep's choice {picked}: say why with --choice-note")
    return {**sweep, "chosen": chosen}


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
    from ser_core.models.provenance import git_revision
    from ser_core.models.whisper_head import manifest_fields

    started = time.time()
    head = dataclasses.replace(RECIPES[config.recipe], seed=config.seed, **({"epochs": config.epochs} if config.epochs else {}))
    x, meta, metadata = read_embeddings(config.embeddings)
    spec = EmbeddingSpec.from_dict(metadata["embedding_spec"])
    experiments = recorded_sweep(config, spec)
    fit_rows = (meta["split"].isin(FIT_SPLITS[config.fit_on]) & meta["copy"].isin(head.copies)).to_numpy()
    speaker_norm = None
    if head.speaker_norm:
        prior = x[fit_rows].mean(0)
        x = centre_by_group(x, speaker_groups(meta), prior, head.speaker_prior_windows)
        speaker_norm = {"prior": prior.tolist(), "prior_windows": head.speaker_prior_windows}
    mean, std = x[fit_rows].mean(0), x[fit_rows].std(0) + 1e-3
    ensure_ray(config.ray_address)
    train = ray.data.from_items([{"x": v, "corpus": c, "emotion": e}
                                 for v, c, e in zip((x[fit_rows] - mean) / std, meta["corpus"][fit_rows], meta["emotion"][fit_rows])])
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
    originals = meta[meta["copy"] == 0].drop_duplicates("utterance_id")
    fitted_as = originals["split"].where(~originals["split"].isin(FIT_SPLITS[config.fit_on]), "train")
    groups = HeldOutGroups.from_rows(zip(originals["corpus"], originals["split_group"], fitted_as))
    info = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_revision": git_revision(),
        "parameters": int(model.count_params()),
        "head_recipe": config.recipe,
        "segmentation": metadata.get("segmentation"),
        "speaker_norm": speaker_norm,
        "head_config": dataclasses.asdict(head),
        "held_out_groups": groups.to_dict(),
        "embeddings": {"source": config.embeddings.rstrip("/").split("/")[-1], "split_config": metadata["split_config"],
                       "corpora": [name for name, _ in metadata["corpora"]], "augment_copies": metadata["augment_copies"],
                       "encoder_layers": spec.layers},
        "training": {"fit_on": config.fit_on, "fit_splits": list(FIT_SPLITS[config.fit_on]), "copies": list(head.copies),
                     "windows": int(fit_rows.sum()), "workers": config.workers, "wall_seconds": round(time.time() - started, 1)},
        "data_summary": {"utterances": {split: {c: int(n) for c, n in g["corpus"].value_counts().items()}
                                        for split, g in originals.groupby("split")}},
        "metrics": evaluate(model, x, meta, mean, std),
    }
    if experiments:
        info["experiments"] = experiments
    with tempfile.TemporaryDirectory(prefix="ser-bundle-") as folder:
        stage_bundle(model, FeatureSpec(sample_rate=spec.sample_rate), mean, std, folder, info, WHISPER_HEAD.card(info),
                     kind=WHISPER_HEAD.name, manifest=manifest_fields(spec))
        write_figures(Path(folder, "figures"), info)
        publish_bundle(folder, config.out)
    return info


def write_figures(folder: Path, info: dict) -> list:
    """Confusion matrices of the test split (call channel): all corpora, then each corpus."""
    from ser_core.training import plots

    folder.mkdir(parents=True, exist_ok=True)
    reports = info["metrics"].get("test/call", {})
    return [plots.confusion(r, folder / f"confusion_test_{'call' if name == 'overall' else name}.png",
                            f"{name}, test split, call channel: UAR {r['uar']:.3f}, n={r['n']}")
            for name, r in reports.items()]


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
