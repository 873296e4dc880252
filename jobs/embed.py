"""``ser embed``: labelled corpora to pooled Whisper-encoder windows in Parquet, one Ray task per shard.

The same scan, split assignment and sharding as ``ser extract``; each task loads the encoder once and writes
one Parquet shard (atomically), so a rerun skips finished shards. Every utterance is embedded as scoring will see
it (:mod:`ser_core.training.examples`): the clip segmented as a one-turn call (copy 0) and as the customer turn of a
simulated call (copy 1); ``--augment N`` adds N random copies of training utterances through the call channel.

Output::

    OUT/embeddings/shard-<n>-<key>.parquet   one row per pooled window (embeddings.embeddings_schema)
    OUT/errors/shard-<n>-<key>.parquet       files that did not decode
    OUT/metadata.json                        spec, version, split configuration, counts
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

import click
import pyarrow as pa
from tqdm import tqdm

from jobs import options
from ser_core import storage
from ser_core.audio.augment import AugmentPolicy
from ser_core.audio.decoding import AudioDecodeError, decode
from ser_core.audio.segmentation import Segmentation
from ser_core.corpora import scan_all
from ser_core.corpora.manifest import Utterance
from ser_core.corpora.splits import SplitConfig, assign_splits
from ser_core.frontends.embeddings import EmbeddingSpec, embeddings_schema
from ser_core.frontends.encoder import ENCODER_LAYERS
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import EncoderFrontend
from ser_core.reports.schema import ERRORS
from ser_core.training.examples import example_copies
from ser_core.training.shards import plan_shards


@dataclass(frozen=True)
class EmbedJobConfig:
    """Everything ``ser embed`` needs."""

    corpora: tuple[tuple[str, str], ...]
    out: str
    spec: EmbeddingSpec = EmbeddingSpec()
    segmentation: Segmentation = Segmentation()
    splits: SplitConfig = SplitConfig()
    augment: int = 0
    policy: AugmentPolicy = AugmentPolicy()
    shard_size: int = 40
    ray_address: str | None = None
    local_cpus: int | None = None
    progress: bool = True


def embed_shard(utts: list[Utterance], splits: dict[str, str], config: EmbedJobConfig, out_uri: str, errors_uri: str) -> float:
    """Embed one shard; write its rows and its decode errors; return the seconds of audio decoded."""
    spec = config.spec
    frontend = EncoderFrontend(FeatureSpec(sample_rate=spec.sample_rate), spec, config.segmentation)
    rows, errors, seconds = [], [], 0.0
    for utt in utts:
        try:
            samples = decode(utt.uri, target_rate=spec.sample_rate, mono=True).samples[0]
        except AudioDecodeError as err:
            errors.append({"uri": utt.uri, "corpus": utt.corpus, "stage": "decode", "reason": err.reason})
            continue
        seconds += len(samples) / spec.sample_rate
        split = splits[utt.utterance_id]
        augment = config.augment if split == "train" else 0
        for copy, description, vectors, starts in example_copies(frontend, samples, utt.utterance_id, augment, config.policy):
            for window, (vector, start) in enumerate(zip(vectors, starts)):
                rows.append({"utterance_id": utt.utterance_id, "corpus": utt.corpus, "speaker": utt.speaker,
                             "gender": utt.gender, "split_group": utt.split_group, "split": split, "emotion": utt.emotion,
                             "copy": copy, "augmentation": description, "window": window, "start_s": float(start),
                             "embedding": vector, "embedding_version": spec.version})
    storage.write_parquet_atomic(pa.Table.from_pylist(rows, schema=embeddings_schema(spec.dim)), out_uri)
    storage.write_parquet_atomic(pa.Table.from_pylist(errors, schema=ERRORS), errors_uri)  # last: marks the shard done
    return seconds


def run_embed(config: EmbedJobConfig) -> dict:
    """Run the job; return its metadata (also written to ``OUT/metadata.json``)."""
    import ray

    from jobs.ray_runtime import ensure_ray

    started = time.time()
    scan = scan_all(config.corpora)
    splits = assign_splits(scan.utterances, config.splits)
    planned = plan_shards(scan.utterances, splits, config.shard_size, (config.spec, config.segmentation, config.augment, config.policy))
    out_dir, errors_dir = storage.join(config.out, "embeddings"), storage.join(config.out, "errors")
    for folder in (out_dir, errors_dir):
        for leftover in storage.parquet_files(folder) - set(planned):
            storage.remove(storage.join(folder, leftover))
    done = storage.parquet_files(out_dir) & storage.parquet_files(errors_dir)
    todo = {name: shard for name, shard in planned.items() if name not in done}
    seconds = 0.0
    if todo:
        ensure_ray(config.ray_address, config.local_cpus)
        task = ray.remote(embed_shard).options(num_cpus=1, max_retries=2)
        splits_ref = ray.put(splits)
        pending = {task.remote(shard, splits_ref, config, storage.join(out_dir, name), storage.join(errors_dir, name)): len(shard)
                   for name, shard in todo.items()}
        with tqdm(total=sum(pending.values()), unit="file", desc="embed", disable=not config.progress) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                seconds += ray.get(ready[0])
                bar.update(pending.pop(ready[0]))
    metadata = {
        "embedding_version": config.spec.version,
        "embedding_spec": config.spec.to_dict(),
        "segmentation": config.segmentation.to_dict(),
        "split_config": dataclasses.asdict(config.splits),
        "augment_copies": config.augment,
        "augment_policy": dataclasses.asdict(config.policy),
        "corpora": [list(c) for c in config.corpora],
        "utterances": len(scan.utterances),
        "rejected": [dataclasses.asdict(r) for r in scan.rejected],
        "shards": len(planned),
        "shards_skipped": len(planned) - len(todo),
        "audio_seconds_this_run": seconds,
        "wall_seconds": time.time() - started,
    }
    storage.write_bytes_atomic(storage.join(config.out, "metadata.json"), json.dumps(metadata, indent=2).encode())
    return metadata


@click.command("embed")
@options.corpus("A corpus recipe and its root (as for ser extract). Repeatable.")
@click.option("--out", required=True, help="Output folder or s3:// prefix.")
@click.option("--augment", default=0, show_default=True, help="Random augmented copies per training utterance.")
@click.option("--layers", type=click.IntRange(1, ENCODER_LAYERS), default=ENCODER_LAYERS, show_default=True,
              help="Encoder layers to run; below the full depth the output is that layer's, through the final layer norm.")
@click.option("--shard-size", default=40, show_default=True, help="Utterances per Ray task and Parquet shard.")
@click.option("--local-cpus", "--workers", "workers", type=int, default=None, help="CPUs of the local in-process Ray (default: all; ignored with --ray-address).")
@options.ray_address
@options.no_progress
def cli(corpora, out, augment, layers, shard_size, workers, ray_address, no_progress) -> None:
    """Embed labelled corpora with the frozen Whisper-base encoder (pooled 2.5 s windows) into Parquet."""
    config = EmbedJobConfig(corpora=options.corpus_options(corpora), out=out, spec=EmbeddingSpec(layers=layers), augment=augment, shard_size=shard_size,
                            ray_address=ray_address, local_cpus=workers, progress=not no_progress)
    metadata = run_embed(config)
    click.echo(f"embedded {metadata['utterances']} utterances ({len(metadata['rejected'])} files rejected) into {out}; "
               f"{metadata['shards_skipped']}/{metadata['shards']} shards already done; {metadata['wall_seconds']:.1f} s")
