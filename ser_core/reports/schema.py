"""Parquet schemas of everything the jobs write: one place, imported by jobs and tests, quoted by the README."""

from __future__ import annotations

import pyarrow as pa

from ser_core.frontends.features import FeatureSpec
from ser_core.labels import EMOTIONS

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


SCHEMA_VERSION = "2"
"""Version of the report tables (``calls``, ``segments``, ``turns``), in each file's key-value metadata under
:data:`SCHEMA_VERSION_KEY`. 2: talk and call metrics, contact metadata and ``queue`` in ``calls``; the ``turns`` table."""
SCHEMA_VERSION_KEY = "ser.schema_version"
_REPORT_METADATA = {SCHEMA_VERSION_KEY: SCHEMA_VERSION}

SPEAKER_ROLES: tuple[str, ...] = ("agent", "customer", "mono")
"""``speaker_role`` values: a stereo call's agent and customer channels, or the single channel of a mono call."""

_RUN_FIELDS = [
    ("model_version", pa.string()),
    ("run_id", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
]

_LABEL_FIELDS = [
    ("emotion", pa.string()),
    ("confidence", pa.float32()),
    *[(f"prob_{emotion}", pa.float32()) for emotion in EMOTIONS],
    ("valence", pa.float32()),
    ("arousal", pa.float32()),
]
"""A scored span's labels: the most likely emotion, its probability, every emotion's, valence and arousal."""

SEGMENTS = pa.schema(
    [
        ("call_id", pa.string()),
        ("channel", pa.int32()),
        ("speaker_role", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        *_LABEL_FIELDS,
        ("rms_db", pa.float32()),
        *_RUN_FIELDS,
    ],
    metadata=_REPORT_METADATA,
)
"""``segments/date=YYYY-MM-DD/*.parquet``: one row per scored window of speech."""

TURNS = pa.schema(
    [
        ("call_id", pa.string()),
        ("channel", pa.int32()),
        ("speaker_role", pa.string()),
        ("turn", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("windows", pa.int32()),
        *_LABEL_FIELDS,
        *_RUN_FIELDS,
    ],
    metadata=_REPORT_METADATA,
)
"""``turns/date=YYYY-MM-DD/*.parquet``: one row per turn (a party's talk, pauses under 0.5 s bridged)."""

CONTACT_FIELDS = [
    ("agent_id", pa.string()),
    ("team", pa.string()),
    ("customer_id", pa.string()),
    ("direction", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
]
"""Contact-centre fields of ``ser score --metadata`` with their own columns in :data:`CALLS` (``queue`` too)."""


def role_fields(role: str) -> list[tuple[str, pa.DataType]]:
    """The per-role columns of :data:`CALLS` (all null when the call has no such role)."""
    return [
        (f"{role}_speech_s", pa.float64()),
        (f"{role}_segments", pa.int32()),
        (f"{role}_dominant_emotion", pa.string()),
        *[(f"{role}_share_{emotion}", pa.float32()) for emotion in EMOTIONS],
        (f"{role}_valence", pa.float32()),
        (f"{role}_arousal", pa.float32()),
        (f"{role}_sentiment_start", pa.float32()),
        (f"{role}_sentiment_end", pa.float32()),
    ]


CALLS = pa.schema(
    [
        ("call_id", pa.string()),
        ("source_uri", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int32()),
        ("agent_channel", pa.int32()),
        ("queue", pa.string()),
        *CONTACT_FIELDS,
        ("metadata", pa.map_(pa.string(), pa.string())),
        *[field for role in SPEAKER_ROLES for field in role_fields(role)],
        ("non_talk_s", pa.float64()),
        ("overtalk_s", pa.float64()),
        ("agent_interruptions", pa.int32()),
        ("customer_interruptions", pa.int32()),
        ("customer_negative_first", pa.float32()),
        ("customer_negative_last", pa.float32()),
        ("customer_escalation", pa.float32()),
        ("escalated", pa.bool_()),
        *_RUN_FIELDS,
    ],
    metadata=_REPORT_METADATA,
)
"""``calls/date=YYYY-MM-DD/*.parquet``: exactly one row per input file, ``status`` ok or error."""

GROUND_TRUTH = pa.schema(
    [
        ("call_id", pa.string()),
        ("turn", pa.int32()),
        ("role", pa.string()),
        ("channel", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("emotion", pa.string()),
        ("speaker", pa.string()),
        ("corpus", pa.string()),
        ("utterance_id", pa.string()),
        ("source_uri", pa.string()),
        ("call_mood", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
"""``ground_truth.parquet`` of ``ser make-archive``: one row per turn of every generated call."""
