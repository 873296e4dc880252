"""``ser extract``: labelled corpora to feature Parquet shards, one Ray task per manifest shard (what it writes and
how a rerun resumes: :mod:`ser_core.training.extraction`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import click

from jobs import options
from jobs.ray_runtime import ensure_ray, run_shard_tasks
from ser_core import storage
from ser_core.audio.augment import AugmentPolicy
from ser_core.corpora import scan_all
from ser_core.corpora.splits import SplitConfig, assign_splits
from ser_core.frontends.featurize import ExtractConfig
from ser_core.training.extraction import ExtractSummary, featurize_shard, finish_extraction, start_extraction
from ser_core.training.shards import plan_shards, unfinished_shards


@dataclass(frozen=True)
class ExtractJobConfig:
    """Everything ``ser extract`` needs."""

    corpora: tuple[tuple[str, str], ...]
    out: str
    extract: ExtractConfig = ExtractConfig()
    splits: SplitConfig = SplitConfig()
    shard_size: int = 40
    cpus_per_task: float = 1.0
    ray_address: str | None = None
    local_cpus: int | None = None
    progress: bool = True


def run_extract(config: ExtractJobConfig) -> ExtractSummary:
    """Run the extraction job and return its summary."""
    started = time.time()
    scan = scan_all(config.corpora)
    splits = assign_splits(scan.utterances, config.splits)
    start_extraction(config.out, scan.utterances, splits)
    planned = plan_shards(scan.utterances, splits, config.shard_size, config.extract)
    folders = storage.join(config.out, "features"), storage.join(config.out, "errors")
    todo = unfinished_shards(planned, *folders)
    summary = ExtractSummary(shards_total=len(planned), shards_skipped=len(planned) - len(todo))
    if todo:
        ensure_ray(config.ray_address, config.local_cpus)
        summary.audio_seconds = run_shard_tasks(featurize_shard, todo, splits, config.extract, folders, desc="extract",
                                                progress=config.progress, num_cpus=config.cpus_per_task, max_retries=3)
    summary.wall_seconds = time.time() - started
    finish_extraction(config.out, config.corpora, config.splits, config.extract, scan, summary)
    return summary


@click.command("extract")
@options.corpus("NAME=DIR (ravdess, tess, emovo, ased, turev, nemo, cremad) or manifest=CSV; local or s3://. Repeatable.")
@click.option("--out", required=True, help="Output folder or s3:// prefix.")
@click.option("--augment", default=0, show_default=True, help="Augmented copies per training utterance.")
@click.option("--augment-seed", default=0, show_default=True)
@click.option("--validation-fraction", default=0.15, show_default=True, help="Share of speakers (TESS: words) for validation.")
@click.option("--test-fraction", default=0.15, show_default=True, help="Share of speakers (TESS: words) for test.")
@click.option("--split-seed", default=0, show_default=True)
@click.option("--shard-size", default=40, show_default=True, help="Utterances per Ray task and Parquet shard.")
@click.option("--cpus-per-task", default=1.0, show_default=True)
@click.option("--local-cpus", "--workers", "workers", type=int, default=None, help="CPUs of the local in-process Ray (default: all; ignored with --ray-address).")
@options.ray_address
@options.no_progress
def cli(corpora, out, augment, augment_seed, validation_fraction, test_fraction, split_seed, shard_size,
            cpus_per_task, workers, ray_address, no_progress) -> None:
    """Extract features from labelled corpora into Parquet shards."""
    config = ExtractJobConfig(
        corpora=options.corpus_options(corpora),
        out=out,
        extract=ExtractConfig(augment_copies=augment, policy=AugmentPolicy(seed=augment_seed)),
        splits=SplitConfig(validation=validation_fraction, test=test_fraction, seed=split_seed),
        shard_size=shard_size,
        cpus_per_task=cpus_per_task,
        ray_address=ray_address,
        local_cpus=workers,
        progress=not no_progress,
    )
    summary = run_extract(config)
    click.echo(
        f"extracted {summary.utterances} utterances into {summary.windows} windows; {summary.errors} files rejected "
        f"(see {out}/errors.parquet); {summary.shards_skipped}/{summary.shards_total} shards already done; "
        f"{summary.wall_seconds:.1f} s"
    )
    for corpus, counts in summary.per_corpus.items():
        click.echo(f"  {corpus}: {json.dumps(counts)}")
