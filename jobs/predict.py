"""``ser predict FILE...``: the emotion of each audio file, and of each window of its speech (:mod:`ser_core.scoring.predict`).

Plain output is one line per file (plus one per window when a file has several); ``--json`` prints one JSON
object per line and file. Files that cannot be decoded are reported and make the command exit with status 1.
"""

from __future__ import annotations

import json
import sys

import click

from ser_core.audio.decoding import AudioDecodeError
from ser_core.audio.segmentation import NonFiniteError
from ser_core.frontends.features import FeatureSpec
from ser_core.models.bundle import BundleError, load_bundle
from ser_core.scoring.predict import predict_file
from ser_core.text import shown


def format_prediction(result: dict) -> str:
    """Human-readable lines: the file's label and probabilities, then one line per window when there are several
    (names and labels with control characters escaped)."""
    def probs(p):
        return " ".join(f"{shown(k)}={v:.2f}" for k, v in sorted(p.items(), key=lambda kv: -kv[1]))

    path = shown(result["path"])
    if result["emotion"] is None:
        return f"{path}\t(no speech)"
    lines = [f"{path}\t{shown(result['emotion'])}\t{probs(result['probabilities'])}"]
    if len(result["windows"]) > 1:
        lines += [f"  {w['start_s']:7.2f}s\t{shown(w['emotion'])}\t{probs(w['probabilities'])}" for w in result["windows"]]
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
            click.echo(f"{shown(uri)}: cannot decode: {shown(err.reason)}", err=True)
            continue
        except NonFiniteError as err:
            failed += 1
            click.echo(f"{shown(uri)}: {shown(err)}", err=True)
            continue
        click.echo(json.dumps(result) if as_json else format_prediction(result))
    if failed:
        sys.exit(1)
