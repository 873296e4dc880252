"""The emotion of one audio file, and of each window of its speech (``ser predict``).

A file is read, segmented and windowed exactly as ``ser score`` reads a call (a clip is a one-turn call; each
channel of a stereo file is one party), so its windows are the segments ``ser score`` would write for it. A
file's probabilities are the mean of its windows' probabilities; a file without speech has no label.
"""

from __future__ import annotations

import numpy as np

from ser_core.audio.decoding import AudioReader, SpooledAudio
from ser_core.audio.segmentation import prepare_call, speech_seconds


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
