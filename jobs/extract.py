"""``ser extract``: labelled corpora to feature Parquet shards, one Ray task per manifest shard.

Output folder (local or ``s3://``)::

    OUT/manifest.parquet          every usable utterance with its split
    OUT/features/shard-*.parquet  feature windows (schema: ser_core.reports.schema.features_schema)
    OUT/errors/shard-*.parquet    per-shard decode failures
    OUT/errors.parquet            all rejects: unparsable names, unknown labels, decode failures
    OUT/metadata.json             feature spec and version, counts, timing

Each shard's file names carry a hash of its contents and configuration; a rerun skips shards already
written and removes shards that no longer belong to the plan. A shard commits when its errors file exists (its
features file is written first); each file is written atomically (a temporary name renamed locally, one PUT on
S3). A rerun after a kill deletes the temporaries the kill left, rewrites uncommitted shards, and reads only
``*.parquet`` files; one ``ser extract`` per OUT at a time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import click
import pyarrow as pa
import ray
from tqdm import tqdm

from jobs import options
from jobs.ray_runtime import ensure_ray
from ser_core import storage
from ser_core.audio.augment import AugmentPolicy
from ser_core.audio.decoding import AudioDecodeError
from ser_core.corpora import scan_all
from ser_core.corpora.manifest import CorpusScan, Utterance, rejected_to_frame, utterances_to_frame
from ser_core.corpora.splits import SplitConfig, assign_splits
from ser_core.frontends.featurize import ExtractConfig, featurize_utterance, rows_to_table
from ser_core.reports.schema import ERRORS, MANIFEST, features_schema
from ser_core.training.shards import plan_shards

log = logging.getLogger(__name__)


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


@dataclass
class ExtractSummary:
    """Counts and timing of one extraction run (also written to ``metadata.json``)."""

    utterances: int = 0
    windows: int = 0
    errors: int = 0
    shards_total: int = 0
    shards_skipped: int = 0
    audio_seconds: float = 0.0  # decoded in this run (skipped shards excluded)
    wall_seconds: float = 0.0
    per_corpus: dict = field(default_factory=dict)


def featurize_shard(utts: list[Utterance], splits: dict[str, str], config: ExtractConfig, features_uri: str, errors_uri: str) -> dict:
    """Featurize one shard and write its feature and error files; decode failures become error rows."""
    rows: list[dict] = []
    errors: list[dict] = []
    seconds = 0.0
    for utt in utts:
        try:
            utt_rows, utt_seconds = featurize_utterance(utt, splits[utt.utterance_id], config)
        except AudioDecodeError as err:
            errors.append({"uri": utt.uri, "corpus": utt.corpus, "stage": "decode", "reason": err.reason})
            continue
        rows.extend(utt_rows)
        seconds += utt_seconds
    storage.write_parquet_atomic(rows_to_table(rows, config.spec), features_uri)
    # The errors file is written last: its presence marks the shard as complete.
    storage.write_parquet_atomic(pa.Table.from_pylist(errors, schema=ERRORS), errors_uri)
    return {"windows": len(rows), "errors": len(errors), "audio_seconds": seconds, "utterances": len(utts) - len(errors)}


def run_extract(config: ExtractJobConfig) -> ExtractSummary:
    """Run the extraction job and return its summary."""
    started = time.time()
    scan = scan_all(config.corpora)
    splits = assign_splits(scan.utterances, config.splits)
    storage.makedirs(config.out)
    for leftover in storage.remove_temporaries(config.out):
        log.info("removed %s (left by an interrupted run)", leftover)

    manifest = utterances_to_frame(scan.utterances)
    manifest["split"] = [splits[u] for u in manifest["utterance_id"]]
    storage.write_parquet_atomic(pa.Table.from_pandas(manifest, schema=MANIFEST, preserve_index=False), storage.join(config.out, "manifest.parquet"))

    planned = plan_shards(scan.utterances, splits, config.shard_size, config.extract)
    features_dir, errors_dir = storage.join(config.out, "features"), storage.join(config.out, "errors")
    names = set(planned)
    done_features, done_errors = storage.parquet_files(features_dir), storage.parquet_files(errors_dir)
    for folder, present in ((features_dir, done_features), (errors_dir, done_errors)):
        for stale in sorted(present - names):
            log.info("removing stale shard %s from an earlier plan", stale)
            storage.remove(storage.join(folder, stale))

    todo = [(name, shard) for name, shard in planned.items() if not (name in done_features and name in done_errors)]
    summary = ExtractSummary(shards_total=len(planned), shards_skipped=len(planned) - len(todo))
    if todo:
        ensure_ray(config.ray_address, config.local_cpus)
        task = ray.remote(featurize_shard).options(num_cpus=config.cpus_per_task, max_retries=3)
        splits_ref = ray.put(splits)
        pending = {
            task.remote(shard, splits_ref, config.extract, storage.join(features_dir, name), storage.join(errors_dir, name)): len(shard)
            for name, shard in todo
        }
        with tqdm(total=sum(pending.values()), unit="file", desc="extract", disable=not config.progress) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                summary.audio_seconds += ray.get(ready[0])["audio_seconds"]
                bar.update(pending.pop(ready[0]))

    summary.wall_seconds = time.time() - started
    _finish(config, scan, summary)
    return summary


def _finish(config: ExtractJobConfig, scan: CorpusScan, summary: ExtractSummary) -> None:
    """Aggregate shard results into ``errors.parquet`` and ``metadata.json`` (counts cover skipped shards too)."""
    schema = features_schema(config.extract.spec)
    columns = pa.schema([schema.field(name) for name in ("utterance_id", "corpus", "split", "emotion", "copy")])
    features = storage.read_parquet_parts(storage.join(config.out, "features"), columns)
    shard_errors = storage.read_parquet_parts(storage.join(config.out, "errors"), ERRORS)
    all_errors = pa.concat_tables([pa.Table.from_pandas(rejected_to_frame(scan.rejected), schema=ERRORS, preserve_index=False), shard_errors])
    storage.write_parquet_atomic(all_errors, storage.join(config.out, "errors.parquet"))

    frame = features.to_pandas()
    originals = frame[frame["copy"] == 0].drop_duplicates("utterance_id")
    summary.utterances = len(originals)
    summary.windows = len(frame)
    summary.errors = all_errors.num_rows
    summary.per_corpus = {
        corpus: {
            "utterances": int(len(group)),
            "splits": {k: int(v) for k, v in Counter(group["split"]).items()},
            "emotions": {k: int(v) for k, v in Counter(group["emotion"]).items()},
        }
        for corpus, group in originals.groupby("corpus")
    }
    metadata = {
        "feature_version": config.extract.spec.version,
        "feature_spec": config.extract.spec.to_dict(),
        "feature_names": config.extract.spec.feature_names,
        "window_shape": list(config.extract.spec.window_shape),
        "segmentation": config.extract.segmentation.to_dict(),
        "augment_copies": config.extract.augment_copies,
        "augment_policy": dataclasses.asdict(config.extract.policy),
        "augment_splits": list(config.extract.augment_splits),
        "split_config": dataclasses.asdict(config.splits),
        "corpora": [list(c) for c in config.corpora],
        "files_found": len(scan.utterances) + len(scan.rejected),
        "summary": dataclasses.asdict(summary),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    storage.write_bytes_atomic(storage.join(config.out, "metadata.json"), json.dumps(metadata, indent=2).encode())


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
