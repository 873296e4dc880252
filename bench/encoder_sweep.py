"""Which Whisper-head recipe generalises: within-corpus validation and leave-one-corpus-out, never the test split.

Reads the output of ``ser embed`` and, for each recipe, fits heads in this process (CPU) and scores utterances
(mean of window probabilities):

* ``validation``: trained on the train split of every corpus, scored on each corpus's speaker-disjoint
  validation split (TESS: word-disjoint), as recorded (copy 0) and through the call channel (copy 1);
* ``loco``: for each corpus, trained on the train+validation splits of the other corpora, scored on that
  corpus's train+validation utterances (its test split stays unseen here too).

Usage: ``python bench/encoder_sweep.py EMBEDDINGS_DIR --out bench/results/encoder_sweep.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd

from ser_core.frontends.embeddings import read_embeddings
from ser_core.labels import EMOTIONS
from ser_core.models.head import RECIPES, HeadConfig, centre_by_group, fit_head, speaker_groups
from ser_core.training.metrics import classification_report, utterance_probabilities


def prepare(x: np.ndarray, meta: pd.DataFrame, config: HeadConfig) -> np.ndarray:
    """Speaker-centred (when configured), per copy of the speaker's recordings."""
    if not config.speaker_norm:
        return x
    prior = x[(meta["split"] != "test").to_numpy()].mean(0)
    return centre_by_group(x, speaker_groups(meta), prior, config.speaker_prior_windows)


def fit_and_score(x, meta, train_rows, eval_rows, config: HeadConfig) -> dict:
    """UAR per corpus and copy of a head fitted on ``train_rows`` and scored on ``eval_rows``."""
    train_rows = train_rows & meta["copy"].isin(config.copies).to_numpy()
    mean, std = x[train_rows].mean(0), x[train_rows].std(0) + 1e-3
    model = fit_head((x[train_rows] - mean) / std, meta[train_rows], config)
    results = {}
    for copy in (0, 1):
        rows = eval_rows & (meta["copy"] == copy).to_numpy()
        probs = model.predict((x[rows] - mean) / std, batch_size=1024, verbose=0)
        ids, utt = utterance_probabilities(meta["utterance_id"][rows].to_numpy(), probs)
        truth = meta[rows].drop_duplicates("utterance_id").set_index("utterance_id").loc[ids]
        predicted = np.asarray(EMOTIONS)[utt.argmax(1)]
        for corpus in sorted(truth["corpus"].unique()):
            mask = (truth["corpus"] == corpus).to_numpy()
            report = classification_report(truth["emotion"][mask].tolist(), predicted[mask].tolist())
            results[f"{corpus}/{'clean' if copy == 0 else 'call'}"] = report["uar"]
    return results


def evaluate(x: np.ndarray, meta: pd.DataFrame, name: str) -> dict:
    """Validation and leave-one-corpus-out UAR of recipe ``name`` on windows ``x`` (rows described by ``meta``)."""
    split = meta["split"].to_numpy()
    corpus = meta["corpus"].to_numpy()
    config = RECIPES[name]
    xp = prepare(x, meta, config)
    started = time.time()
    validation = fit_and_score(xp, meta, split == "train", split == "validation", config)
    loco = {}
    for held in sorted(set(corpus)):
        loco.update(fit_and_score(xp, meta, (split != "test") & (corpus != held), (split != "test") & (corpus == held), config))
    mean_val = float(np.mean([v for k, v in validation.items() if k.endswith("call")]))
    mean_loco = float(np.mean([v for k, v in loco.items() if k.endswith("call")]))
    print(name, json.dumps(validation), json.dumps(loco), mean_val, mean_loco, flush=True)
    return {"config": dataclasses.asdict(config), "validation_uar": validation, "loco_uar": loco,
            "mean_validation_call": round(mean_val, 4), "mean_loco_call": round(mean_loco, 4),
            "seconds": round(time.time() - started, 1)}


def run(folder: str, recipes: list[str], earlier: dict | None = None) -> dict:
    x, meta, _ = read_embeddings(folder)  # the same reader (and version check) as ser train-head
    out = {"embeddings": folder.rstrip("/").split("/")[-1], "windows": int(len(x)), "recipes": dict((earlier or {}).get("recipes", {}))}
    for name in recipes:
        out["recipes"][name] = evaluate(x, meta, name)
    out["chosen"] = choose(out["recipes"])
    return out


def choose(recipes: dict) -> str:
    """The selection rule: the best mean of the mean validation and the mean LOCO UAR, call channel."""
    return max(recipes, key=lambda name: recipes[name]["mean_validation_call"] + recipes[name]["mean_loco_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings")
    parser.add_argument("--out", default="bench/results/encoder_sweep.json")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--merge", action="store_true", help="Keep the other recipes already in --out (same embeddings).")
    args = parser.parse_args()
    earlier = json.load(open(args.out)) if args.merge and os.path.exists(args.out) else None
    result = {"date": time.strftime("%Y-%m-%d"), "machine": "2-vCPU x86-64 development VM", **run(args.embeddings, args.recipes, earlier)}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
