"""The ``ser`` command line: parses options into typed configs and calls a job; nothing else lives here."""

from __future__ import annotations

import json
import logging
import sys

import click

from ser_core.augment import AugmentPolicy
from ser_core.corpora import parse_corpus_option
from ser_core.featurize import ExtractConfig
from ser_core.splits import SplitConfig


def _corpora(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(parse_corpus_option(v) for v in values)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--corpus") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """ser: distributed speech emotion recognition on Ray."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--corpus", "corpora", multiple=True, required=True, metavar="NAME=PATH",
              help="ravdess=DIR, tess=DIR, cremad=DIR or manifest=CSV; local or s3://. Repeatable.")
@click.option("--out", required=True, help="Output folder or s3:// prefix.")
@click.option("--augment", default=0, show_default=True, help="Augmented copies per training utterance.")
@click.option("--augment-seed", default=0, show_default=True)
@click.option("--validation-fraction", default=0.15, show_default=True, help="Share of speakers (TESS: words) for validation.")
@click.option("--test-fraction", default=0.15, show_default=True, help="Share of speakers (TESS: words) for test.")
@click.option("--split-seed", default=0, show_default=True)
@click.option("--shard-size", default=40, show_default=True, help="Utterances per Ray task and Parquet shard.")
@click.option("--cpus-per-task", default=1.0, show_default=True)
@click.option("--workers", type=int, default=None, help="CPUs of the local in-process Ray (default: all).")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Join this Ray cluster instead of starting one.")
@click.option("--no-progress", is_flag=True)
def extract(corpora, out, augment, augment_seed, validation_fraction, test_fraction, split_seed, shard_size,
            cpus_per_task, workers, ray_address, no_progress) -> None:
    """Extract features from labelled corpora into Parquet shards."""
    from jobs.extract import ExtractJobConfig, run_extract

    config = ExtractJobConfig(
        corpora=_corpora(corpora),
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


if __name__ == "__main__":
    sys.exit(main())
