"""``ser embed``: labelled corpora to pooled Whisper-encoder windows in Parquet, one Ray task per shard (each loads
the encoder once); what it writes and how a rerun resumes: :mod:`ser_core.training.extraction`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import click

from jobs import options
from jobs.ray_runtime import ensure_ray, run_shard_tasks
from ser_core import storage
from ser_core.corpora import scan_all
from ser_core.corpora.splits import SplitConfig, assign_splits
from ser_core.frontends.embeddings import EmbeddingSpec
from ser_core.frontends.encoder import ENCODER_LAYERS
from ser_core.training.extraction import EmbedConfig, embed_shard, finish_embedding
from ser_core.training.shards import plan_shards, unfinished_shards


@dataclass(frozen=True)
class EmbedJobConfig:
    """Everything ``ser embed`` needs."""

    corpora: tuple[tuple[str, str], ...]
    out: str
    embed: EmbedConfig = EmbedConfig()
    splits: SplitConfig = SplitConfig()
    shard_size: int = 40
    ray_address: str | None = None
    local_cpus: int | None = None
    progress: bool = True


def run_embed(config: EmbedJobConfig) -> dict:
    """Run the job; return its metadata (also written to ``OUT/metadata.json``)."""
    started = time.time()
    scan = scan_all(config.corpora)
    splits = assign_splits(scan.utterances, config.splits)
    planned = plan_shards(scan.utterances, splits, config.shard_size, config.embed.shard_settings)
    folders = storage.join(config.out, "embeddings"), storage.join(config.out, "errors")
    todo = unfinished_shards(planned, *folders)
    seconds = 0.0
    if todo:
        ensure_ray(config.ray_address, config.local_cpus)
        seconds = run_shard_tasks(embed_shard, todo, splits, config.embed, folders, desc="embed", progress=config.progress,
                                  num_cpus=1, max_retries=2)
    return finish_embedding(config.out, config.corpora, config.splits, config.embed, scan, shards=len(planned),
                            shards_skipped=len(planned) - len(todo), audio_seconds=seconds, wall_seconds=time.time() - started)


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
    config = EmbedJobConfig(corpora=options.corpus_options(corpora), out=out, embed=EmbedConfig(spec=EmbeddingSpec(layers=layers), augment=augment),
                            shard_size=shard_size, ray_address=ray_address, local_cpus=workers, progress=not no_progress)
    metadata = run_embed(config)
    click.echo(f"embedded {metadata['utterances']} utterances ({len(metadata['rejected'])} files rejected) into {out}; "
               f"{metadata['shards_skipped']}/{metadata['shards']} shards already done; {metadata['wall_seconds']:.1f} s")
