"""Comparison row: openSMILE eGeMAPS v02 functionals + an RBF SVM, on the project's splits and protocol.

For the benchmark only (opensmile's licence is non-commercial; ``pip install opensmile scikit-learn``). Audio is
decoded as the project decodes it (mono, 8 kHz), 88 functionals per utterance, standardised, SVC(C=1, RBF,
balanced class weights). Figures: UAR per corpus on the validation split (fit on train), on the test split
(fit on train + validation) and leave-one-corpus-out (fit on the other corpora's train + validation, scored on
the held-out corpus's train + validation).

Usage: ``python bench/egemaps_svm.py --corpus ravdess=DIR ... --out bench/results/egemaps_svm.json``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ser_core.audio.decoding import decode
from ser_core.corpora import parse_corpus_option, scan_all
from ser_core.corpora.splits import assign_splits
from ser_core.training.metrics import classification_report


def functionals(uris: list[str], rate: int = 8000) -> np.ndarray:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    return np.stack([smile.process_signal(decode(uri, target_rate=rate).samples[0], rate).to_numpy()[0] for uri in uris])


def fit_score(x, y, corpus, train, evaluate) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf", class_weight="balanced")).fit(x[train], y[train])
    predicted = model.predict(x[evaluate])
    return {c: classification_report(y[evaluate][corpus[evaluate] == c].tolist(), predicted[corpus[evaluate] == c].tolist())["uar"]
            for c in sorted(set(corpus[evaluate]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--out", default="bench/results/egemaps_svm.json")
    args = parser.parse_args()
    started = time.time()
    scan = scan_all(tuple(parse_corpus_option(c) for c in args.corpus))
    utts = sorted(scan.utterances, key=lambda u: u.utterance_id)
    splits = assign_splits(utts)
    split = np.array([splits[u.utterance_id] for u in utts])
    corpus = np.array([u.corpus for u in utts])
    y = np.array([u.emotion for u in utts])
    x = np.nan_to_num(functionals([u.uri for u in utts]))
    dev = split != "test"
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": "2-vCPU x86-64 development VM",
        "features": "eGeMAPSv02 functionals (88) at 8 kHz, opensmile " + __import__("opensmile").__version__,
        "validation_uar": fit_score(x, y, corpus, split == "train", split == "validation"),
        "test_uar": fit_score(x, y, corpus, dev, split == "test"),
        "loco_uar": {held: fit_score(x, y, corpus, dev & (corpus != held), dev & (corpus == held))[held] for held in sorted(set(corpus))},
    }
    result["seconds"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
