"""Labelled utterance in, feature rows out: decode, then the utterance's training examples
(:mod:`ser_core.training.examples`: the clip and the call channel, segmented as scoring segments) as CNN windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ser_core.audio.augment import AugmentPolicy
from ser_core.audio.decoding import AudioDecodeError, decode
from ser_core.audio.segmentation import NonFiniteError, Segmentation
from ser_core.corpora.manifest import Utterance
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.windows import FeatureFrontend
from ser_core.reports.schema import features_schema
from ser_core.training.examples import example_copies


@dataclass(frozen=True)
class ExtractConfig:
    """What extraction computes: the feature spec, how many augmented copies of each training utterance, and how."""

    spec: FeatureSpec = FeatureSpec()
    segmentation: Segmentation = Segmentation()
    augment_copies: int = 0
    policy: AugmentPolicy = AugmentPolicy()
    augment_splits: tuple[str, ...] = ("train",)


def featurize_utterance(utt: Utterance, split: str, config: ExtractConfig) -> tuple[list[dict], float]:
    """Feature rows (one per window of each example copy of the utterance) and the decoded seconds.

    Raises :class:`ser_core.audio.decoding.AudioDecodeError` when the file is not usable audio: it does not decode, its
    features are not finite, or it needs more memory than the process has.
    """
    try:
        return _featurize(utt, split, config)
    except MemoryError:
        raise AudioDecodeError(utt.uri, "out of memory while featurising") from None
    except NonFiniteError as err:
        raise AudioDecodeError(utt.uri, str(err)) from None


def _featurize(utt: Utterance, split: str, config: ExtractConfig) -> tuple[list[dict], float]:
    spec = config.spec
    samples = decode(utt.uri, target_rate=spec.sample_rate, mono=True).samples[0]
    copies = config.augment_copies if split in config.augment_splits else 0
    frontend = FeatureFrontend(spec, config.segmentation)
    rows: list[dict] = []
    for copy, description, batch, starts in example_copies(frontend, samples, utt.utterance_id, copies, config.policy):
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
    """Feature rows as an Arrow table with :func:`ser_core.reports.schema.features_schema`."""
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
