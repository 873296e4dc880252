"""Parquet schemas of everything the jobs write: one place, imported by jobs and tests, quoted by the README."""

from __future__ import annotations

import pyarrow as pa

from ser_core.features import FeatureSpec

MANIFEST = pa.schema(
    [
        ("utterance_id", pa.string()),
        ("uri", pa.string()),
        ("corpus", pa.string()),
        ("speaker", pa.string()),
        ("emotion", pa.string()),
        ("raw_label", pa.string()),
        ("gender", pa.string()),
        ("intensity", pa.string()),
        ("text", pa.string()),
        ("split_group", pa.string()),
        ("split", pa.string()),
    ]
)
"""``manifest.parquet``: every usable labelled utterance and its split."""

ERRORS = pa.schema(
    [
        ("uri", pa.string()),
        ("corpus", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
    ]
)
"""``errors.parquet``: every file found but not turned into features, with the stage and reason."""


def features_schema(spec: FeatureSpec) -> pa.Schema:
    """Feature shard schema: one row per model window of one (possibly augmented) utterance copy.

    ``features`` is the window's ``(frames, features)`` matrix flattened row-major into a fixed-size list;
    the shape and feature names are in the schema metadata (and in ``metadata.json``).
    """
    frames, n_features = spec.window_shape
    return pa.schema(
        [
            ("utterance_id", pa.string()),
            ("corpus", pa.string()),
            ("speaker", pa.string()),
            ("split_group", pa.string()),
            ("split", pa.string()),
            ("emotion", pa.string()),
            ("copy", pa.int16()),
            ("augmentation", pa.string()),
            ("window", pa.int16()),
            ("start_s", pa.float32()),
            ("features", pa.list_(pa.float32(), frames * n_features)),
            ("feature_version", pa.string()),
        ],
        metadata={
            "feature_version": spec.version,
            "window_shape": f"{frames},{n_features}",
            "feature_names": ",".join(spec.feature_names),
        },
    )
