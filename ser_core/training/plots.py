"""PNG figures for evaluation reports and the README: class distribution, log-mel examples, learning curves, confusion.

Every function writes one small PNG (matplotlib's Agg backend, no display needed) and returns its path.
Titles always name the split the figure comes from. Text is drawn as given (:func:`literal_text`): names from the
data (corpora, labels) are never parsed as math.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ser_core.frontends.features import FeatureSpec  # noqa: E402
from ser_core.labels import EMOTIONS  # noqa: E402

DPI = 90
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def literal_text():
    """Matplotlib settings (a context manager or decorator) under which every text is drawn as given: ``$x^$`` is
    not mathtext, nothing goes through LaTeX."""
    return matplotlib.rc_context(LITERAL_TEXT)


def _save(fig, path: str | Path, dpi: int = DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


@literal_text()
def class_distribution(utterances: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Bar chart of utterances per emotion, one group of bars per corpus (``utterances`` has ``corpus``, ``emotion``)."""
    counts = utterances.groupby(["emotion", "corpus"]).size().unstack(fill_value=0)
    counts = counts.reindex([e for e in EMOTIONS if e in counts.index] + [e for e in counts.index if e not in EMOTIONS])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    counts.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel("utterances")
    ax.set_xlabel("")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=0)
    return _save(fig, path)


@literal_text()
def logmel_examples(examples: dict[str, np.ndarray], spec: FeatureSpec, path: str | Path, title: str) -> Path:
    """One log-mel panel per emotion; each value is a ``(frames, n_features)`` window whose first ``n_mels`` columns are log-mel."""
    labels = [e for e in EMOTIONS if e in examples]
    fig, axes = plt.subplots(1, len(labels), figsize=(1.4 * len(labels), 2.2), sharey=True, squeeze=False)
    seconds = spec.window_frames * spec.hop_length / spec.sample_rate
    for ax, label in zip(axes[0], labels):
        ax.imshow(examples[label][:, : spec.n_mels].T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, spec.n_mels),
                  interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
    axes[0][0].set_ylabel("mel band")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=72)  # dense image panels: a lower resolution keeps the PNG small


@literal_text()
def learning_curves(history: Sequence[dict], path: str | Path, best_epoch: int | None = None) -> Path:
    """Training loss and per-corpus validation UAR by epoch (from a bundle's ``training.history``)."""
    frame = pd.DataFrame(list(history))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    left.plot(frame["epoch"], frame["loss"], marker=".")
    left.set_title("training loss (train split, mixup)")
    left.set_xlabel("epoch")
    for column in sorted(c for c in frame.columns if c.startswith("val_uar_")):
        right.plot(frame["epoch"], frame[column], marker=".", label=column.removeprefix("val_uar_"))
    if best_epoch is not None:
        right.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="selected")
    right.set_title("utterance UAR (validation split)")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    return _save(fig, path)


@literal_text()
def confusion(report: dict, path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix (recall per true class) with counts, from a :func:`classification_report`."""
    matrix = np.asarray(report["confusion"], float)
    labels = report["labels"]
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
