"""Labelled utterance in, feature rows out: decode, augment, window, for one utterance in one process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ser_core.audio import AudioDecodeError, decode
from ser_core.augment import AugmentPolicy, augment_copy
from ser_core.features import FeatureSpec, utterance_windows
from ser_core.manifest import Utterance
from ser_core.schema import features_schema


@dataclass(frozen=True)
class ExtractConfig:
    """What extraction computes: the feature spec, how many augmented copies of each training utterance, and how."""

    spec: FeatureSpec = FeatureSpec()
    augment_copies: int = 0
    policy: AugmentPolicy = AugmentPolicy()
    augment_splits: tuple[str, ...] = ("train",)


def featurize_utterance(utt: Utterance, split: str, config: ExtractConfig) -> tuple[list[dict], float]:
    """Feature rows (one per window of the original and of each augmented copy) and the decoded seconds.

    Raises :class:`ser_core.audio.AudioDecodeError` when the file is not usable audio: it does not decode, its
    features are not finite, or it needs more memory than the process has.
    """
    try:
        return _featurize(utt, split, config)
    except MemoryError:
        raise AudioDecodeError(utt.uri, "out of memory while featurising") from None


def _featurize(utt: Utterance, split: str, config: ExtractConfig) -> tuple[list[dict], float]:
    spec = config.spec
    samples = decode(utt.uri, target_rate=spec.sample_rate, mono=True).samples[0]
    copies = config.augment_copies if split in config.augment_splits else 0
    rows: list[dict] = []
    for copy in range(copies + 1):
        if copy == 0:
            y, description = samples, "none"
        else:
            y, description = augment_copy(samples, spec.sample_rate, config.policy, utt.utterance_id, copy)
        batch, starts = utterance_windows(y, spec)
        if not np.isfinite(batch).all():
            raise AudioDecodeError(utt.uri, f"features are not finite (copy {copy}; samples too large?)")
        for index, (window, start) in enumerate(zip(batch, starts)):
            rows.append(
                {
                    "utterance_id": utt.utterance_id,
                    "corpus": utt.corpus,
                    "speaker": utt.speaker,
                    "split_group": utt.split_group,
                    "split": split,
                    "emotion": utt.emotion,
                    "copy": copy,
                    "augmentation": description,
                    "window": index,
                    "start_s": float(start),
                    "features": window.reshape(-1),
                    "feature_version": spec.version,
                }
            )
    return rows, samples.size / spec.sample_rate


def rows_to_table(rows: list[dict], spec: FeatureSpec) -> pa.Table:
    """Feature rows as an Arrow table with :func:`ser_core.schema.features_schema`."""
    schema = features_schema(spec)
    width = spec.window_frames * spec.n_features
    columns = {name: [row[name] for row in rows] for name in schema.names if name != "features"}
    flat = np.concatenate([row["features"] for row in rows]) if rows else np.zeros(0, np.float32)
    features = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)
    arrays = [features if name == "features" else pa.array(columns[name], schema.field(name).type) for name in schema.names]
    return pa.Table.from_arrays(arrays, schema=schema)


def table_windows(table: pa.Table, spec: FeatureSpec) -> np.ndarray:
    """The ``features`` column of a feature table as an array of shape ``(rows, frames, features)``."""
    column = table.column("features").combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).reshape(len(table), *spec.window_shape)
