"""``ser predict FILE...``: the emotion of each audio file (and of each 2.5 s window of long files).

A file's probabilities are the mean of its windows' probabilities, as in evaluation. Plain output is one
line per file (plus one per window when a file has several); ``--json`` prints one JSON object per line
and file. Files that cannot be decoded are reported and make the command exit with status 1.
"""

from __future__ import annotations

import json
import sys

import click

from ser_core.audio import AudioDecodeError, decode
from ser_core.bundle import BundleError, load_bundle
from ser_core.features import FeatureSpec


def predict_file(bundle, uri: str) -> dict:
    """``{"path", "emotion", "probabilities", "windows": [{"start_s", "emotion", "probabilities"}]}`` for one file."""
    samples = decode(uri, target_rate=bundle.spec.sample_rate, mono=True).samples[0]
    windows, starts = bundle.frontend.utterance_windows(samples)
    probs = bundle.predict(bundle.frontend.speaker_centre(windows))  # one file, one speaker
    mean = probs.mean(axis=0)

    def labelled(p):
        return {label: round(float(v), 4) for label, v in zip(bundle.labels, p)}

    return {
        "path": uri,
        "emotion": bundle.labels[int(mean.argmax())],
        "probabilities": labelled(mean),
        "seconds": round(samples.size / bundle.spec.sample_rate, 2),
        "model_version": bundle.version,
        "windows": [
            {"start_s": round(float(s), 2), "emotion": bundle.labels[int(p.argmax())], "probabilities": labelled(p)}
            for s, p in zip(starts, probs)
        ],
    }


def format_prediction(result: dict) -> str:
    """Human-readable lines: the file's label and probabilities, then one line per window when there are several."""
    def probs(p):
        return " ".join(f"{k}={v:.2f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]))

    lines = [f"{result['path']}\t{result['emotion']}\t{probs(result['probabilities'])}"]
    if len(result["windows"]) > 1:
        lines += [f"  {w['start_s']:7.2f}s\t{w['emotion']}\t{probs(w['probabilities'])}" for w in result["windows"]]
    return "\n".join(lines)


@click.command("predict")
@click.argument("files", nargs=-1, required=True)
@click.option("--model", "model", default=None, help="Model bundle folder (default: the bundled model).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line and file.")
def cli(files, model, as_json) -> None:
    """Predict the emotion of audio FILES (local paths or s3:// URIs)."""
    try:
        bundle = load_bundle(model, expected_spec=FeatureSpec())
    except BundleError as err:
        raise click.ClickException(f"model refused: {err}") from None
    failed = 0
    for uri in files:
        try:
            result = predict_file(bundle, uri)
        except AudioDecodeError as err:
            failed += 1
            click.echo(f"{uri}: cannot decode: {err.reason}", err=True)
            continue
        click.echo(json.dumps(result) if as_json else format_prediction(result))
    if failed:
        sys.exit(1)
