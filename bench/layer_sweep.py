"""Which Whisper-base encoder layer to pool: validation and leave-one-corpus-out UAR per depth, and what each costs.

For each depth K, ``ser embed --layers K`` output (every shared corpus, as a clip and through the call
channel) is scored by :func:`bench.encoder_sweep.evaluate` (validation on speaker-disjoint validation splits,
leave-one-corpus-out on the held-out corpus's train+validation; the test split is never used) for each recipe.
Then layer K and the last layer together (windows concatenated) for the truncated K the rule ranks first. The cost of each truncated
encoder is CPU seconds per audio second of ``encode()`` on a fixed 60 s signal, one thread, median of five runs.

The JSON (and the markdown table) is rewritten after every step and read back on a rerun, so an interrupted sweep
resumes where it stopped; depths whose embeddings are not complete yet (no ``metadata.json``) are skipped.

Usage::

    for K in 2 3 4 5 6; do ser embed --corpus ... --layers $K --out EMB/emb$K; done
    python bench/layer_sweep.py EMB/emb{layers} --out bench/results/layer_sweep.json --table bench/results/layer_sweep.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import pandas as pd

from bench.encoder_sweep import evaluate
from ser_core.frontends.embeddings import read_embeddings
from ser_core.frontends.encoder import (
    ENCODER_LAYERS,
    MAX_CHUNK_S,
    WHISPER_RATE,
    EncoderConfig,
    WhisperEncoder,
    level_normalised,
    log_mel,
)


def encoder_cost(layers: int, seconds: float = 60.0, repeats: int = 5) -> float:
    """CPU seconds per audio second of the encoder of ``layers`` layers (int8, one thread), log-mel excluded."""
    import ctranslate2

    signal = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * WHISPER_RATE))).astype(np.float32)
    chunk = int(MAX_CHUNK_S * WHISPER_RATE)
    mels = [ctranslate2.StorageView.from_array(log_mel(level_normalised(signal[i : i + chunk]))[np.newaxis])
            for i in range(0, len(signal), chunk)]
    model = WhisperEncoder(EncoderConfig(threads=1), layers=layers).model
    runs = []
    for _ in range(repeats):
        started = time.process_time()
        for mel in mels:
            model.encode(mel, to_cpu=True)
        runs.append(time.process_time() - started)
    return round(statistics.median(runs) / seconds, 5)


def window_keys(meta: pd.DataFrame) -> pd.MultiIndex:
    """Each row's utterance, copy and window (rows of one utterance copy are stored in window order)."""
    ordinal = meta.groupby(["utterance_id", "copy"], sort=False).cumcount()
    return pd.MultiIndex.from_arrays([meta["utterance_id"], meta["copy"], ordinal])


def concatenated(first: tuple[np.ndarray, pd.DataFrame], second: tuple[np.ndarray, pd.DataFrame]) -> tuple[np.ndarray, pd.DataFrame]:
    """The windows of two embedding sets of the same utterances side by side, rows matched by :func:`window_keys`."""
    (x1, meta1), (x2, meta2) = first, second
    rows2 = pd.Series(np.arange(len(meta2)), index=window_keys(meta2)).reindex(window_keys(meta1)).to_numpy()
    if np.isnan(rows2).any() or len(meta1) != len(meta2):
        raise ValueError("the two embedding sets do not hold the same windows")
    return np.concatenate([x1, x2[rows2.astype(int)]], axis=1), meta1


def score(entry: dict) -> float:
    """The selection rule's figure: mean validation plus mean leave-one-corpus-out UAR, call channel."""
    return entry["mean_validation_call"] + entry["mean_loco_call"]


def best(results: dict, depths: set[str] | None = None) -> tuple[str, str] | None:
    """``(layers, recipe)`` of the best single-depth result (of ``depths`` when given) by :func:`score`, or None."""
    scored = [(score(entry), key, name) for key, recipes in results.items() if "+" not in key and (depths is None or key in depths)
              for name, entry in recipes.items()]
    return max(scored)[1:] if scored else None


def markdown(result: dict) -> str:
    """One row per depth (or pair) and recipe: mean validation, LOCO per corpus and mean (call channel), cost."""
    corpora = sorted({k.split("/")[0] for r in result["results"].values() for e in r.values() for k in e["loco_uar"]})
    lines = ["| layers | recipe | mean val | " + " | ".join(f"LOCO {c}" for c in corpora) + " | mean LOCO | val + LOCO | CPU-s / audio s |",
             "|---|---|---|" + "---|" * len(corpora) + "---|---|---|"]
    for key, recipes in result["results"].items():
        cost = sum(result["cost_cpu_s_per_audio_s"].get(k, float("nan")) for k in key.split("+"))
        for name, entry in recipes.items():
            loco = [f"{100 * entry['loco_uar'].get(f'{c}/call', float('nan')):.1f}" for c in corpora]
            lines.append(f"| {key} | {name} | {100 * entry['mean_validation_call']:.1f} | " + " | ".join(loco)
                         + f" | {100 * entry['mean_loco_call']:.1f} | {100 * score(entry):.1f} | {cost:.4f} |")
    chosen = result.get("chosen")
    if chosen:
        lines.append(f"\nRule (best mean validation + mean LOCO UAR, call channel): layers {chosen['layers']} with {chosen['recipe']}.")
    return "\n".join(lines) + "\n"


def save(result: dict, out: str, table: str | None) -> None:
    result["chosen"] = dict(zip(("layers", "recipe"), best(result["results"]))) if best(result["results"]) else None
    with open(out, "w") as handle:
        json.dump(result, handle, indent=2)
    if table:
        with open(table, "w") as handle:
            handle.write(markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", help="Folder pattern of each depth's ser embed output, with {layers}.")
    parser.add_argument("--layers", nargs="*", type=int, default=[2, 3, 4, 5, ENCODER_LAYERS])
    parser.add_argument("--recipes", nargs="*", default=["logreg", "mlp256"])
    parser.add_argument("--out", default="bench/results/layer_sweep.json")
    parser.add_argument("--table", default="bench/results/layer_sweep.md")
    args = parser.parse_args()
    result = json.load(open(args.out)) if os.path.exists(args.out) else {
        "date": time.strftime("%Y-%m-%d"), "machine": "2-vCPU x86-64 development VM", "results": {}, "cost_cpu_s_per_audio_s": {}}
    for layers in args.layers:
        result["cost_cpu_s_per_audio_s"].setdefault(str(layers), encoder_cost(layers))
        save(result, args.out, args.table)
    ready = [k for k in args.layers if os.path.exists(os.path.join(args.embeddings.format(layers=k), "metadata.json"))]
    print(f"embeddings of layers {ready} found, of {sorted(set(args.layers) - set(ready))} not yet", flush=True)
    loaded = {}
    for name in args.recipes:  # every depth with the first recipe before the second: a partial sweep compares depths
        for layers in ready:
            if name not in result["results"].get(str(layers), {}):
                if layers not in loaded:
                    loaded[layers] = read_embeddings(args.embeddings.format(layers=layers))[:2]
                result["results"].setdefault(str(layers), {})[name] = evaluate(*loaded[layers], name)
                save(result, args.out, args.table)
    truncated = best(result["results"], {str(k) for k in args.layers if k != ENCODER_LAYERS})
    if truncated and str(ENCODER_LAYERS) in result["results"]:
        pair = f"{truncated[0]}+{ENCODER_LAYERS}"
        missing = [name for name in args.recipes if name not in result["results"].get(pair, {})]
        if missing:
            x, meta = concatenated(*(loaded.get(k) or read_embeddings(args.embeddings.format(layers=k))[:2]
                                     for k in (int(truncated[0]), ENCODER_LAYERS)))
        for name in missing:
            result["results"].setdefault(pair, {})[name] = evaluate(x, meta, name)
            save(result, args.out, args.table)


if __name__ == "__main__":
    main()
