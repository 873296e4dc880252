"""Utterance-level evaluation: window probabilities averaged per utterance, reports per corpus and overall.

For ``ser train`` (each epoch's validation score, the model-selection score, the final validation and test
figures, what the data held), ``ser train-head`` (its figures per split and channel) and ``ser evaluate`` (the
utterances it scores, their labels, its report). Keras models are called, never imported: TensorFlow is the
caller's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ser_core.audio.decoding import decode
from ser_core.corpora.manifest import Rejected, Utterance
from ser_core.corpora.splits import ModelSplits
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import EncoderFrontend, FeatureFrontend
from ser_core.labels import EMOTIONS
from ser_core.models.bundle import ModelBundle, model_splits
from ser_core.training.examples import CALL_COPY
from ser_core.training.extraction import decoded_rows
from ser_core.training.metrics import NO_SPEECH, grouped_reports, utterance_probabilities
from ser_core.training.streaming import read_split, split_files

SELECTION_RULE = "mean over corpora of utterance-level UAR on the validation split, through the call channel"
"""What :func:`selection_score` computes, in words (recorded in the bundle)."""


def utterance_predictions(window_probs: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    """One row per utterance: its metadata, mean window probabilities (``prob_<label>``) and ``predicted``."""
    ids, probs = utterance_probabilities(meta["utterance_id"], window_probs)
    rows = meta.drop_duplicates("utterance_id").set_index("utterance_id").loc[ids].reset_index()
    for i, label in enumerate(EMOTIONS):
        rows[f"prob_{label}"] = probs[:, i]
    rows["predicted"] = [EMOTIONS[i] for i in probs.argmax(axis=1)]
    return rows


def utterance_reports(window_probs: np.ndarray, meta: pd.DataFrame) -> dict:
    """Reports per corpus and ``overall`` of the utterances whose windows (rows of ``meta``) have ``window_probs``."""
    return grouped_reports(utterance_predictions(window_probs, meta))


def selection_score(reports: dict) -> float:
    """Model-selection score: the mean over corpora of the utterance-level UAR (each corpus counts the same).

    >>> selection_score({"ravdess": {"uar": 0.5}, "tess": {"uar": 1.0}, "overall": {"uar": 0.6}})
    0.75
    """
    return float(np.mean([r["uar"] for name, r in reports.items() if name != "overall"]))


def predict_windows(model, parts: list[np.ndarray], batch_size: int = 512) -> np.ndarray:
    """A Keras model's probabilities for the (normalised) windows of every part, in order, ``batch_size`` at a time."""
    return np.concatenate([model(x[i : i + batch_size].astype(np.float32), training=False).numpy()
                           for x in parts for i in range(0, len(x), batch_size)])


def evaluate_splits(model, meta: pd.DataFrame, spec: FeatureSpec, mean: np.ndarray, std: np.ndarray) -> dict:
    """A CNN's reports of the ``validation`` and ``test`` splits of the feature windows ``meta``: the clips (keys
    ``validation``, ``test``) and the clips through the call channel (``validation_call``, ``test_call``)."""
    metrics = {}
    for split in ("validation", "test"):
        for copy, key in ((0, split), (CALL_COPY, f"{split}_call")):
            parts, split_meta = read_split(split_files(meta, split), spec, split, (mean, std), copy=copy)
            if parts:
                metrics[key] = utterance_reports(predict_windows(model, parts), split_meta)
    return metrics


def evaluate_embeddings(model, x: np.ndarray, meta: pd.DataFrame, mean: np.ndarray, std: np.ndarray) -> dict:
    """A head's reports per split of the pooled windows ``x``, through the call channel (``<split>/call``) and as
    recorded (``<split>/clean``)."""
    reports = {}
    for split in ("train", "validation", "test"):
        for copy, name in ((0, "clean"), (CALL_COPY, "call")):
            rows = ((meta["split"] == split) & (meta["copy"] == copy)).to_numpy()
            if rows.any():
                probs = model.predict((x[rows] - mean) / std, batch_size=2048, verbose=0)
                reports[f"{split}/{name}"] = utterance_reports(probs, meta[rows])
    return reports


def data_summary(meta: pd.DataFrame) -> dict:
    """Utterance counts per split, corpus, speaker and emotion (original copies) and window counts (all copies)."""
    originals = meta[meta["copy"] == 0].drop_duplicates("utterance_id")
    summary = {}
    for split, part in originals.groupby("split"):
        summary[split] = {
            "utterances": int(len(part)),
            "windows_all_copies": int((meta["split"] == split).sum()),
            "per_corpus": {k: int(v) for k, v in Counter(part["corpus"]).items()},
            "per_emotion": {k: int(v) for k, v in Counter(part["emotion"]).items()},
            "per_corpus_emotion": {f"{c}/{e}": int(n) for (c, e), n in part.groupby(["corpus", "emotion"]).size().items()},
            "per_speaker": {k: int(v) for k, v in Counter(part["speaker"]).items()},
        }
    return summary


@dataclass(frozen=True)
class EvaluationSet:
    """The utterances ``ser evaluate`` scores, and those it leaves out."""

    splits: ModelSplits
    utterances: list[Utterance]
    """Those of the split asked for whose label the model knows."""
    unknown_labels: Counter
    """Utterances of the split per label the model does not know."""
    untrained_corpora: Counter
    """Utterances per corpus the model was not trained on (so with no test split); empty for ``all``."""


def evaluation_set(bundle: ModelBundle, utterances: list[Utterance], split: str) -> EvaluationSet:
    """The utterances of ``split`` (``test``: the bundle's held-out groups; ``all``) that ``bundle`` can be scored on."""
    splits = model_splits(bundle.info, utterances)
    selected = splits.select(utterances, split)
    return EvaluationSet(
        splits=splits,
        utterances=[u for u in selected if u.emotion in bundle.labels],
        unknown_labels=Counter(u.emotion for u in selected if u.emotion not in bundle.labels),
        untrained_corpora=Counter(u.corpus for u in splits.unknown(utterances)) if split != "all" else Counter(),
    )


def featurize_utterances(utts: list[Utterance], frontend: FeatureFrontend | EncoderFrontend
                         ) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """Model windows of each utterance (decoded, no augmentation) and error rows for files that fail to decode."""

    def windows_of(utt: Utterance) -> tuple[list[tuple[str, np.ndarray]], float]:
        samples = decode(utt.uri, target_rate=frontend.spec.sample_rate, mono=True).samples[0]
        return [(utt.utterance_id, frontend.utterance_windows(samples)[0])], len(samples) / frontend.spec.sample_rate

    done, errors, _ = decoded_rows(utts, windows_of)
    return done, errors


def utterance_label(bundle: ModelBundle, windows: np.ndarray) -> str:
    """The label of a clip (argmax of its windows' mean probabilities), or :data:`NO_SPEECH` (counted as a miss)."""
    if not len(windows):
        return NO_SPEECH
    return bundle.labels[int(bundle.predict(windows).mean(axis=0).argmax())]


@dataclass(frozen=True)
class ScoredUtterances:
    """What scoring the featurized utterances gave."""

    frame: pd.DataFrame
    """One row per utterance: ``utterance_id``, ``corpus``, ``speaker``, ``emotion`` and ``predicted``."""
    examples: dict[str, np.ndarray]
    """The first window of one utterance per emotion."""
    errors: list[dict]
    """The files that failed to decode."""


def score_featurized(bundle: ModelBundle, utterances: list[Utterance],
                     featurized: Iterable[tuple[list[tuple[str, np.ndarray]], list[dict]]]) -> ScoredUtterances:
    """Each utterance's label from the results of :func:`featurize_utterances` over ``utterances``."""
    by_id = {u.utterance_id: u for u in utterances}
    errors, examples, rows = [], {}, []
    for done, shard_errors in featurized:
        errors.extend(shard_errors)
        for utterance_id, windows in done:  # each clip segmented and normalised as a one-turn call
            utt = by_id[utterance_id]
            if len(windows):
                examples.setdefault(utt.emotion, windows[0])
            rows.append({"utterance_id": utterance_id, "corpus": utt.corpus, "speaker": utt.speaker, "emotion": utt.emotion,
                         "predicted": utterance_label(bundle, windows)})
    frame = pd.DataFrame(rows, columns=["utterance_id", "corpus", "speaker", "emotion", "predicted"])
    return ScoredUtterances(frame, examples, errors)


def split_note(split: str, splits: ModelSplits) -> str:
    """What the evaluated split guarantees, in words."""
    if split == "all":
        return "every utterance given; may include utterances the model was trained on"
    if splits.recorded:
        return "speaker-disjoint (TESS: word-disjoint) test split: the held-out test groups recorded in the bundle"
    return ("test split recomputed from the files given with the bundle's split settings; NOT guaranteed to be held out "
            "(the bundle records no held-out groups, and other files give other splits)")


def evaluation_report(model: str, bundle: ModelBundle, split: str, corpora: tuple[tuple[str, str], ...],
                      chosen: EvaluationSet, rejected: list[Rejected], scored: ScoredUtterances) -> dict:
    """``ser evaluate``'s report on ``model`` (as named to the user): what was scored and left out, and the reports
    per corpus and overall."""
    frame = scored.frame
    return {
        "model": model,
        "model_version": bundle.version,
        "split": split,
        "split_note": split_note(split, chosen.splits),
        "split_recorded_in_bundle": chosen.splits.recorded,
        "excluded_corpora_not_trained_on": dict(chosen.untrained_corpora),
        "corpora": [list(c) for c in corpora],
        "utterances_scored": int(len(frame)),
        "utterances_without_speech": int((frame["predicted"] == NO_SPEECH).sum()),
        "excluded_unknown_labels": dict(chosen.unknown_labels),
        "rejected_files": {k: int(v) for k, v in Counter(r.reason.split(":")[0] for r in rejected).items()},
        "decode_errors": len(scored.errors),
        "reports": grouped_reports(frame, labels=bundle.labels) if len(frame) else {},
    }
