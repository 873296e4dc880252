"""``ser evaluate``: score a model bundle on labelled corpora, per corpus and overall, at utterance level.

The corpora are scanned with the same recipes as ``ser extract``; ``--split test`` keeps the utterances of the
test groups the bundle records (the speakers, for TESS the words, that training held out), ``--split all``
keeps everything. A bundle that records no held-out groups (an older one) gets its test split recomputed from
the files given with the split settings it records, and the report says that this is not guaranteed to be
held out. Each utterance is decoded and windowed in a Ray task (no augmentation) and scored as the mean of its
windows' probabilities. Utterances whose label the model does not know, and (for ``--split test``) those of
corpora it was not trained on, are counted and excluded; files that cannot be used are counted with their reasons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
import ray

from jobs import options
from jobs.ray_runtime import ensure_ray
from ser_core import storage
from ser_core.corpora import scan_all
from ser_core.frontends.features import FeatureSpec
from ser_core.models.bundle import BundleError, load_bundle
from ser_core.text import shown
from ser_core.training.evaluation import evaluation_report, evaluation_set, featurize_utterances, score_featurized


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything ``ser evaluate`` needs."""

    corpora: tuple[tuple[str, str], ...]
    model: str | None = None  # bundle folder; None: the bundled model
    split: str = "test"
    json_out: str | None = None
    plots: str | None = None
    shard_size: int = 40
    ray_address: str | None = None


def run_evaluate(config: EvaluateConfig) -> dict:
    """Evaluate and return the report (also written to ``config.json_out`` and plotted to ``config.plots``)."""
    bundle = load_bundle(config.model, expected_spec=FeatureSpec())
    scan = scan_all(config.corpora)
    chosen = evaluation_set(bundle, scan.utterances, config.split)

    ensure_ray(config.ray_address)
    task = ray.remote(featurize_utterances)
    frontend_ref = ray.put(bundle.frontend)
    utts = chosen.utterances
    refs = [task.remote(utts[i : i + config.shard_size], frontend_ref) for i in range(0, len(utts), config.shard_size)]
    scored = score_featurized(bundle, utts, (ray.get(ref) for ref in refs))
    report = evaluation_report(config.model or "bundled model", bundle, config.split, config.corpora, chosen, scan.rejected, scored)
    if config.json_out:
        storage.write_bytes_atomic(config.json_out, json.dumps(report, indent=2).encode())
    if config.plots:
        from ser_core.training.figures import evaluation_figures

        evaluation_figures(config.plots, bundle, scored.frame, scored.examples, report)
    return report


def format_table(report: dict) -> str:
    """The report as a fixed-width text table, one row per corpus and overall."""
    width = max([len("corpus"), *map(len, report["reports"])]) + 2
    lines = [f"model {report['model_version']}; {report['split']} split ({report['split_note']})",
             f"{'corpus':<{width}}{'n':>6}{'accuracy':>10}{'UAR':>8}{'macro-F1':>10}  per-class recall"]
    for name, r in report["reports"].items():
        recalls = " ".join(f"{label}={v['recall']:.2f}" for label, v in r["per_class"].items() if v["recall"] is not None)
        lines.append(f"{name:<{width}}{r['n']:>6}{r['accuracy']:>10.3f}{r['uar']:>8.3f}{r['macro_f1']:>10.3f}  {recalls}")
    if report["excluded_corpora_not_trained_on"]:
        lines.append(f"excluded (corpora the model was not trained on, so with no test split; use --split all): "
                     f"{json.dumps(report['excluded_corpora_not_trained_on'])}")
    if report["excluded_unknown_labels"]:
        lines.append(f"excluded (labels the model does not know): {json.dumps(report['excluded_unknown_labels'])}")
    if report["rejected_files"] or report["decode_errors"]:
        lines.append(f"rejected files: {json.dumps(report['rejected_files'])}; decode errors: {report['decode_errors']}")
    return "\n".join(lines)


@click.command("evaluate")
@click.option("--model", "model", default=None, help="Model bundle folder (default: the bundled model).")
@options.corpus("NAME=DIR (ravdess, tess, emovo, ased, turev, nemo, cremad) or manifest=CSV; local or s3://. Repeatable.")
@click.option("--split", type=click.Choice(["test", "all"]), default="test", show_default=True,
              help="test: the speaker/word-disjoint test groups the bundle records (older bundles: recomputed, not guaranteed); all: every utterance.")
@click.option("--json", "json_out", default=None, help="Write the full report (confusion matrices included) here.")
@click.option("--plots", default=None, help="Folder for PNG figures.")
@options.ray_address
def cli(model, corpora, split, json_out, plots, ray_address) -> None:
    """Accuracy, UAR, macro-F1, per-class recall and confusion matrices of a model on labelled corpora."""
    try:
        report = run_evaluate(EvaluateConfig(corpora=options.corpus_options(corpora), model=model, split=split, json_out=json_out,
                                             plots=plots, ray_address=ray_address))
    except BundleError as err:
        raise click.ClickException(f"model refused: {err}") from None
    if not report["reports"]:
        raise click.ClickException("no utterance could be scored")
    click.echo("\n".join(map(shown, format_table(report).splitlines())))
