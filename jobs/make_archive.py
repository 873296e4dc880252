"""``ser make-archive``: the click command over :mod:`ser_core.audio.call_archive` (what it builds, and its layout)."""

from __future__ import annotations

import posixpath

import click

from jobs import options
from ser_core.audio import call_sim
from ser_core.audio.call_archive import SYNTHETIC_NOTICE, ArchiveConfig, make_archive, split_warning
from ser_core.corpora.splits import SPLITS
from ser_core.text import shown


@click.command("make-archive")
@options.corpus("Labelled corpus for the voices (as in ser extract); repeatable. None: synthetic voices.", required=False)
@click.option("--out", required=True, help="Output folder or s3:// prefix.")
@click.option("--split", type=click.Choice([*SPLITS, "all"]), default="test", show_default=True,
              help="Which speakers' utterances to use: the held-out groups recorded in --model's bundle (all: every one).")
@click.option("--model", default=None, help="Model bundle whose recorded splits --split means (default: the bundled model).")
@click.option("--calls", type=click.IntRange(min=1), default=None,
              help="Number of calls [default: enough to use every utterance once as a customer turn; 10 if synthetic].")
@click.option("--customer-turns", type=click.IntRange(min=1), default=4, show_default=True, help="Customer turns per call.")
@click.option("--mono", is_flag=True, help="Mix agent and customer into one channel.")
@options.date("Archive folder date [default: today, UTC].")
@click.option("--format", "audio_format", type=click.Choice(["wav", "flac"]), default="wav", show_default=True)
@click.option("--level-spread", type=click.FloatRange(min=0), default=call_sim.CallConditions().level_spread_db, show_default=True,
              help="Each turn's level is drawn within ± this many dB of its party's.")
@click.option("--noise-floor", nargs=2, type=float, default=call_sim.CallConditions().noise_db, show_default=True,
              metavar="LOW HIGH", help="Each call's line noise, dBFS RMS, drawn between LOW and HIGH.")
@click.option("--seed", default=0, show_default=True)
@options.refusals
def cli(corpora, out, split, model, calls, customer_turns, mono, date, audio_format, level_spread, noise_floor, seed) -> None:
    """Assemble a realistic call archive (agent/customer turns, telephone band, 8 kHz) with its ground truth."""
    conditions = call_sim.CallConditions(level_spread_db=level_spread, noise_db=tuple(sorted(noise_floor)))
    config = ArchiveConfig(out=out, corpora=options.corpus_options(corpora), calls=calls, customer_turns=customer_turns, split=split,
                           model=model, stereo=not mono, conditions=conditions, audio_format=audio_format, seed=seed,
                           **({"date": date} if date else {}))
    if config.synthetic:
        click.echo(SYNTHETIC_NOTICE)
    summary = make_archive(config)
    click.echo(
        f"{summary.calls} calls ({summary.turns} turns, {summary.audio_seconds / 3600:.2f} h) under "
        f"{posixpath.join(out, 'audio')}; ground truth in {posixpath.join(out, 'ground_truth.parquet')}"
    )
    warning = split_warning(config, summary)
    if warning:
        click.echo(warning, err=True)
    for reason in summary.skipped_utterances:
        click.echo(f"  skipped {shown(reason)}")
