"""Which figures a model bundle and an evaluation carry, named and titled alike, drawn by :mod:`ser_core.training.plots`.

``ser train`` puts learning curves and confusion matrices in its bundle's ``figures/``, ``ser train-head`` the
test split's confusion matrices, ``ser evaluate --plots`` the class distribution, log-mel examples, the bundle's
learning curves and a confusion matrix per corpus. Every function returns the paths it wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ser_core.frontends.windows import FeatureFrontend
from ser_core.models.bundle import ModelBundle
from ser_core.training import plots


def confusion(report: dict, path: str | Path, shows: str) -> Path:
    """The confusion matrix of a :func:`~ser_core.training.metrics.classification_report`, titled with what it
    ``shows``, its UAR and its utterance count."""
    return plots.confusion(report, path, f"{shows}: UAR {report['uar']:.3f}, n={report['n']}")


def learning_curves(training: dict, folder: str | Path) -> Path:
    """``learning_curves.png`` in ``folder`` from a bundle's ``training`` record (its history and best epoch)."""
    return plots.learning_curves(training["history"], Path(folder, "learning_curves.png"), training.get("best_epoch"))


def cnn_bundle_figures(folder: str | Path, info: dict) -> list[Path]:
    """Learning curves and the overall confusion matrix of each split and channel of ``info["metrics"]``, in the
    local ``folder/figures``."""
    figures = Path(folder, "figures")
    written = [learning_curves(info["training"], figures)]
    for key, reports in info["metrics"].items():
        split, _, channel = key.partition("_")
        written.append(confusion(reports["overall"], figures / f"confusion_{key}.png",
                                 f"all corpora, {split} split, {channel or 'clip'}"))
    return written


def head_bundle_figures(folder: str | Path, info: dict) -> list[Path]:
    """Confusion matrices of the test split through the call channel, all corpora then each corpus, in the local
    ``folder/figures``."""
    figures = Path(folder, "figures")
    return [confusion(r, figures / f"confusion_test_{'call' if name == 'overall' else name}.png", f"{name}, test split, call channel")
            for name, r in info["metrics"].get("test/call", {}).items()]


def evaluation_figures(folder: str | Path, bundle: ModelBundle, frame: pd.DataFrame, examples: dict[str, np.ndarray],
                       report: dict) -> list[Path]:
    """Class distribution, log-mel examples (frame-feature models), the bundle's learning curves (when it records
    them) and a confusion matrix per corpus and overall of ``ser evaluate``'s ``report``, in ``folder``."""
    split = report["split"]
    written = [plots.class_distribution(frame, Path(folder, "class_distribution.png"), f"utterances per emotion ({split} split)")]
    if isinstance(bundle.frontend, FeatureFrontend):  # log-mel examples mean something for frame-feature windows only
        written.append(plots.logmel_examples(examples, bundle.spec, Path(folder, "logmel_examples.png"),
                                             f"first window of one utterance per emotion ({split} split)"))
    training = bundle.info.get("training")
    if training and training.get("history"):
        written.append(learning_curves(training, folder))
    for name, r in report["reports"].items():
        written.append(confusion(r, Path(folder, f"confusion_{name}.png"), f"{name}, {split} split"))
    return written
