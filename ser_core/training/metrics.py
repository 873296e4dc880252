"""Classification metrics over utterances: accuracy, unweighted average recall (UAR), macro-F1, confusion matrix.

UAR (the mean of per-class recalls) is the headline figure of speech-emotion work because corpora are rarely
balanced; every function here works on label strings so reports stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ser_core.labels import EMOTIONS

NO_SPEECH = "(no speech)"
"""The prediction for an utterance in which segmentation found no speech: a miss for every class."""


def utterance_probabilities(utterance_ids: Sequence[str], window_probs: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Average window probabilities per utterance: ``(ids in first-seen order, probabilities (n, classes))``."""
    codes, uniques = pd.factorize(pd.Series(list(utterance_ids)), sort=False)
    sums = np.zeros((len(uniques), window_probs.shape[1]), np.float64)
    np.add.at(sums, codes, window_probs)
    counts = np.bincount(codes, minlength=len(uniques))[:, None]
    return list(uniques), (sums / counts).astype(np.float32)


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS) -> np.ndarray:
    """Counts with true labels on rows and predictions on columns, both in ``labels`` order (a prediction outside
    ``labels``, such as :data:`NO_SPEECH`, is counted in no column)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), np.int64)
    for true, pred in zip(y_true, y_pred):
        if pred in index:
            matrix[index[true], index[pred]] += 1
    return matrix


def classification_report(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS) -> dict:
    """Accuracy, UAR, macro-F1, per-class recall/F1/support and the confusion matrix, as plain JSON-able values.

    Classes absent from ``y_true`` are left out of UAR and macro-F1 (their recall is undefined) and listed
    with ``null`` recall. An utterance predicted :data:`NO_SPEECH` counts in its class's support as a miss.

    Examples
    --------
    >>> r = classification_report(["sad", "sad", "happy"], ["sad", "happy", "happy"], labels=("happy", "sad"))
    >>> r["accuracy"], r["uar"]
    (0.6667, 0.75)
    >>> classification_report(["sad", "sad"], ["sad", NO_SPEECH], labels=("happy", "sad"))["uar"]
    0.5
    """
    matrix = confusion_matrix(y_true, y_pred, labels)
    true = pd.Series(list(y_true), dtype=object)
    support = np.array([int((true == label).sum()) for label in labels])
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros(len(labels)), where=present)
    precision = np.divide(hits, predicted, out=np.zeros(len(labels)), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(labels)), where=(precision + recall) > 0)
    total = int(support.sum())
    return {
        "n": total,
        "accuracy": round(float(hits.sum() / total), 4) if total else None,
        "uar": round(float(recall[present].mean()), 4) if present.any() else None,
        "macro_f1": round(float(f1[present].mean()), 4) if present.any() else None,
        "per_class": {
            label: {
                "recall": round(float(recall[i]), 4) if present[i] else None,
                "f1": round(float(f1[i]), 4) if present[i] else None,
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion": matrix.tolist(),
    }


def grouped_reports(frame: pd.DataFrame, group: str = "corpus", labels: Sequence[str] = EMOTIONS) -> dict:
    """:func:`classification_report` per value of ``frame[group]`` and over all rows (key ``"overall"``).

    ``frame`` has one row per utterance with columns ``emotion`` (true) and ``predicted``.
    """
    reports = {name: classification_report(part["emotion"], part["predicted"], labels) for name, part in frame.groupby(group, sort=True)}
    reports["overall"] = classification_report(frame["emotion"], frame["predicted"], labels)
    return reports
