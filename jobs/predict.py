"""``ser predict FILE...``: the emotion of each audio file, and of each window of its speech.

A file is read, segmented and windowed exactly as ``ser score`` reads a call (a clip is a one-turn call; each
channel of a stereo file is one party), so its windows are the segments ``ser score`` would write for it. A
file's probabilities are the mean of its windows' probabilities; a file without speech has no label. Plain
output is one line per file (plus one per window when a file has several); ``--json`` prints one JSON object
per line and file. Files that cannot be decoded are reported and make the command exit with status 1.
"""

from __future__ import annotations

import json
import sys

import click

import numpy as np

from ser_core.audio import AudioDecodeError, AudioReader, SpooledAudio
from ser_core.bundle import BundleError, load_bundle
from ser_core.features import FeatureSpec
from ser_core.segmentation import NonFiniteError, prepare_call, speech_seconds
from ser_core.text import shown


def predict_file(bundle, uri: str) -> dict:
    """``{"path", "emotion", "probabilities", "speech_s", "windows": [{"channel", "start_s", "end_s", "emotion",
    "probabilities"}]}`` for one file; ``emotion`` and ``probabilities`` are null when it holds no speech."""
    spec = bundle.spec
    with AudioReader(uri, spec.sample_rate) as reader, SpooledAudio(reader) as audio:
        call = prepare_call(audio, spec, bundle.frontend.segmentation)
        batches = list(bundle.frontend.call_windows(call.channels, call.regions))
        seconds = audio.duration_s
    probs = bundle.predict(np.concatenate([b.windows for b in batches]) if batches else np.zeros((0, *bundle.frontend.input_shape)))
    meta = [(b.channel, s, e) for b in batches for s, e in zip(b.start_s, b.end_s)]

    def labelled(p):
        return {label: round(float(v), 4) for label, v in zip(bundle.labels, p)}

    mean = probs.mean(axis=0) if len(probs) else None
    return {
        "path": uri,
        "emotion": bundle.labels[int(mean.argmax())] if mean is not None else None,
        "probabilities": labelled(mean) if mean is not None else None,
        "seconds": round(seconds, 2),
        "speech_s": round(sum(speech_seconds(r, spec) for r in call.talk), 2),
        "model_version": bundle.version,
        "windows": [
            {"channel": int(c), "start_s": round(float(s), 2), "end_s": round(float(e), 2),
             "emotion": bundle.labels[int(p.argmax())], "probabilities": labelled(p)}
            for (c, s, e), p in zip(meta, probs)
        ],
    }


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
