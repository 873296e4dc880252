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
from collections import Counter
from dataclasses import dataclass

import click
import numpy as np
import pandas as pd
import ray

from jobs import options
from jobs.ray_runtime import ensure_ray
from ser_core import storage
from ser_core.audio.decoding import AudioDecodeError, decode
from ser_core.corpora import scan_all
from ser_core.corpora.manifest import Utterance
from ser_core.corpora.splits import ModelSplits
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import EncoderFrontend, FeatureFrontend
from ser_core.models.bundle import BundleError, load_bundle, model_splits
from ser_core.text import shown
from ser_core.training.metrics import NO_SPEECH, grouped_reports


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


def featurize_shard(utts: list[Utterance], frontend: FeatureFrontend | EncoderFrontend) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """Model windows of each utterance (decoded, no augmentation) and error rows for files that fail to decode."""
    done, errors = [], []
    for utt in utts:
        try:
            samples = decode(utt.uri, target_rate=frontend.spec.sample_rate, mono=True).samples[0]
        except AudioDecodeError as err:
            errors.append({"uri": utt.uri, "corpus": utt.corpus, "stage": "decode", "reason": err.reason})
            continue
        done.append((utt.utterance_id, frontend.utterance_windows(samples)[0]))
    return done, errors


def utterance_label(bundle, windows: np.ndarray) -> str:
    """The label of a clip (argmax of its windows' mean probabilities), or :data:`NO_SPEECH` (counted as a miss)."""
    if not len(windows):
        return NO_SPEECH
    return bundle.labels[int(bundle.predict(windows).mean(axis=0).argmax())]


def split_note(split: str, splits: ModelSplits) -> str:
    """What the evaluated split guarantees, in words."""
    if split == "all":
        return "every utterance given; may include utterances the model was trained on"
    if splits.recorded:
        return "speaker-disjoint (TESS: word-disjoint) test split: the held-out test groups recorded in the bundle"
    return ("test split recomputed from the files given with the bundle's split settings; NOT guaranteed to be held out "
            "(the bundle records no held-out groups, and other files give other splits)")


def run_evaluate(config: EvaluateConfig) -> dict:
    """Evaluate and return the report (also written to ``config.json_out`` and plotted to ``config.plots``)."""
    bundle = load_bundle(config.model, expected_spec=FeatureSpec())
    scan = scan_all(config.corpora)
    splits = model_splits(bundle.info, scan.utterances)
    selected = splits.select(scan.utterances, config.split)
    untrained = Counter(u.corpus for u in splits.unknown(scan.utterances)) if config.split != "all" else Counter()
    known = [u for u in selected if u.emotion in bundle.labels]
    excluded = Counter(u.emotion for u in selected if u.emotion not in bundle.labels)

    ensure_ray(config.ray_address)
    task = ray.remote(featurize_shard)
    frontend_ref = ray.put(bundle.frontend)
    refs = [task.remote(known[i : i + config.shard_size], frontend_ref) for i in range(0, len(known), config.shard_size)]
    by_id = {u.utterance_id: u for u in known}
    errors, examples, rows = [], {}, []
    for ref in refs:
        done, shard_errors = ray.get(ref)
        errors.extend(shard_errors)
        for utterance_id, windows in done:  # each clip segmented and normalised as a one-turn call
            utt = by_id[utterance_id]
            if len(windows):
                examples.setdefault(utt.emotion, windows[0])
            rows.append({"utterance_id": utterance_id, "corpus": utt.corpus, "speaker": utt.speaker, "emotion": utt.emotion,
                         "predicted": utterance_label(bundle, windows)})
    frame = pd.DataFrame(rows, columns=["utterance_id", "corpus", "speaker", "emotion", "predicted"])
    report = {
        "model": config.model or "bundled model",
        "model_version": bundle.version,
        "split": config.split,
        "split_note": split_note(config.split, splits),
        "split_recorded_in_bundle": splits.recorded,
        "excluded_corpora_not_trained_on": dict(untrained),
        "corpora": [list(c) for c in config.corpora],
        "utterances_scored": int(len(frame)),
        "utterances_without_speech": int((frame["predicted"] == NO_SPEECH).sum()),
        "excluded_unknown_labels": dict(excluded),
        "rejected_files": {k: int(v) for k, v in Counter(r.reason.split(":")[0] for r in scan.rejected).items()},
        "decode_errors": len(errors),
        "reports": grouped_reports(frame, labels=bundle.labels) if len(frame) else {},
    }
    if config.json_out:
        storage.write_bytes_atomic(config.json_out, json.dumps(report, indent=2).encode())
    if config.plots:
        write_plots(config.plots, bundle, frame, examples, report)
    return report


def write_plots(folder: str, bundle, frame: pd.DataFrame, examples: dict, report: dict) -> list:
    """Class distribution, log-mel examples, learning curves (from the bundle) and confusion matrices as PNGs."""
    from ser_core.training import plots

    split = report["split"]
    written = [plots.class_distribution(frame, f"{folder}/class_distribution.png", f"utterances per emotion ({split} split)")]
    if isinstance(bundle.frontend, FeatureFrontend):  # log-mel examples mean something for frame-feature windows only
        written.append(plots.logmel_examples(examples, bundle.spec, f"{folder}/logmel_examples.png",
                                             f"first window of one utterance per emotion ({split} split)"))
    training = bundle.info.get("training")
    if training and training.get("history"):
        written.append(plots.learning_curves(training["history"], f"{folder}/learning_curves.png", training.get("best_epoch")))
    for name, r in report["reports"].items():
        written.append(plots.confusion(r, f"{folder}/confusion_{name}.png", f"{name}, {split} split: UAR {r['uar']:.3f}, n={r['n']}"))
    return written


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
