"""Talk seconds against frame-level truth: ``python bench/talk_time.py [--corpus NAME=DIR ...] [--calls 24]``.

Stereo calls of 9 alternating turns through the call channel of :mod:`ser_core.audio.call_sim` (its defaults: turn levels
±15 dB around each party's, noise floors -60 to -40 dBFS, leak, G.711), voices from the corpora given (any
utterance) or synthetic ones (``ser make-archive``'s). Truth per party is the union of its turns' speech spans
(telephone band, silences trimmed); the measure is the segmentation's talk regions (:func:`ser_core.audio.vad.detect`),
as ``ser score`` writes ``{role}_speech_s`` and ``non_talk_s``. Writes ``bench/results/talk_time.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_core.audio import call_sim  # noqa: E402
from ser_core.audio.decoding import decode  # noqa: E402
from ser_core.audio.segmentation import call_speech  # noqa: E402
from ser_core.audio.synthetic import synthetic_speech  # noqa: E402
from ser_core.corpora import scan_corpus  # noqa: E402
from ser_core.frontends.features import FeatureSpec  # noqa: E402
from ser_core.scoring import call_metrics  # noqa: E402

SPEC = FeatureSpec()
FRAME_S = SPEC.hop_length / SPEC.sample_rate


def voices(corpora: list[tuple[str, str]], rng: np.random.Generator):
    """An endless supply of 8 kHz utterances: the corpora's, or synthetic."""
    uris = [u.uri for name, root in corpora for u in scan_corpus(name, root).utterances]
    while True:
        if uris:
            yield decode(uris[int(rng.integers(len(uris)))], target_rate=call_sim.RATE).samples[0]
        else:
            yield synthetic_speech(rng, "neutral", rng.uniform(95, 230), rng.uniform(1.5, 3.5))


def relative_errors(measured: list[float], truth: list[float]) -> dict:
    errors = np.array(measured) / np.array(truth) - 1
    return {"mean": round(float(errors.mean()), 4), "mean_abs": round(float(np.abs(errors).mean()), 4),
            "worst": round(float(errors[np.abs(errors).argmax()]), 4), "over_10pct": int((np.abs(errors) > 0.10).sum()),
            "n": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", default=[], help="NAME=DIR, repeatable (default: synthetic voices)")
    parser.add_argument("--calls", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/talk_time.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    supply = voices([tuple(c.split("=", 1)) for c in args.corpus], rng)
    conditions = call_sim.CallConditions()
    measured, truth = {"talk": [], "non_talk": []}, {"talk": [], "non_talk": []}
    for _ in range(args.calls):
        turns = call_sim.arrange([(i % 2, next(supply)) for i in range(9)], conditions, rng)
        call = call_sim.render(turns, conditions, rng)
        _, talk = call_speech(call, SPEC)
        duration = call.shape[1] / call_sim.RATE
        found = call_metrics.talk_metrics({p: talk[i] * FRAME_S for i, p in enumerate(("agent", "customer"))}, duration)
        spans = {p: np.array([t.speech_span for t in turns if t.party == i]) for i, p in enumerate(("agent", "customer"))}
        expected = call_metrics.talk_metrics(spans, duration)
        for party in ("agent", "customer"):
            measured["talk"].append(found[f"{party}_speech_s"])
            truth["talk"].append(expected[f"{party}_speech_s"])
        measured["non_talk"].append(found["non_talk_s"])
        truth["non_talk"].append(expected["non_talk_s"])
    result = {"voices": [c.split("=", 1)[0] for c in args.corpus] or "synthetic", "calls": args.calls, "seed": args.seed,
              "conditions": {"level_spread_db": conditions.level_spread_db, "noise_db": conditions.noise_db,
                             "leak_db": conditions.leak_db},
              **{name: relative_errors(measured[name], truth[name]) for name in measured}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
