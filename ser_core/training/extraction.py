"""Labelled corpora to training shards: the work of ``ser extract`` (CNN feature windows) and ``ser embed`` (pooled
Whisper-encoder windows) without its Ray wiring. :func:`featurize_shard` and :func:`embed_shard` are one shard's
work (one Ray task each); the other functions write the files around the shards.

Both commands scan the corpora, assign splits and plan shards alike (:mod:`ser_core.training.shards`). Each
utterance's rows are its examples as scoring will see them (:mod:`ser_core.training.examples`): the clip segmented
as a one-turn call (copy 0) and as the customer turn of a simulated call (copy 1), then the augmented copies of a
training utterance. A file that does not decode is an error row of its shard, not a failure.

``ser extract``'s output folder (local or ``s3://``)::

    OUT/manifest.parquet          every usable utterance with its split
    OUT/features/shard-*.parquet  feature windows (schema: ser_core.reports.schema.features_schema)
    OUT/errors/shard-*.parquet    per-shard decode failures
    OUT/errors.parquet            all rejects: unparsable names, unknown labels, decode failures
    OUT/metadata.json             feature spec and version, counts, timing

``ser embed``'s::

    OUT/embeddings/shard-<n>-<key>.parquet   one row per pooled window (embeddings.embeddings_schema)
    OUT/errors/shard-<n>-<key>.parquet       files that did not decode
    OUT/metadata.json                        spec, version, split configuration, counts

Each shard's file names carry a hash of its contents and configuration; a rerun skips shards already written and
removes shards that no longer belong to the plan. A shard commits when its errors file exists (its rows file is
written first); each file is written atomically (a temporary name renamed locally, one PUT on S3). A rerun of
``ser extract`` after a kill deletes the temporaries the kill left, rewrites uncommitted shards, and reads only
``*.parquet`` files; one run per OUT at a time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from ser_core import storage
from ser_core.audio.augment import AugmentPolicy
from ser_core.audio.decoding import AudioDecodeError, decode
from ser_core.audio.segmentation import Segmentation
from ser_core.corpora.manifest import CorpusScan, Utterance, rejected_to_frame, utterances_to_frame
from ser_core.corpora.splits import SplitConfig
from ser_core.frontends.embeddings import EmbeddingSpec, embeddings_schema
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.featurize import ExtractConfig, featurize_utterance, rows_to_table
from ser_core.frontends.windows import EncoderFrontend
from ser_core.reports.schema import ERRORS, MANIFEST, features_schema
from ser_core.training.examples import example_copies
from ser_core.training.shards import commit_shard

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EmbedConfig:
    """What embedding computes: the pooled encoder windows, the segmentation, and how many augmented copies of each
    training utterance, and how."""

    spec: EmbeddingSpec = EmbeddingSpec()
    segmentation: Segmentation = Segmentation()
    augment: int = 0
    policy: AugmentPolicy = AugmentPolicy()

    @property
    def shard_settings(self) -> tuple:
        """What a shard's name hashes: a plain tuple, as before this class existed, so earlier outputs stay valid."""
        return self.spec, self.segmentation, self.augment, self.policy


@dataclass
class ExtractSummary:
    """Counts and timing of one extraction run (also written to ``metadata.json``)."""

    utterances: int = 0
    windows: int = 0
    errors: int = 0
    shards_total: int = 0
    shards_skipped: int = 0
    audio_seconds: float = 0.0  # decoded in this run (skipped shards excluded)
    wall_seconds: float = 0.0
    per_corpus: dict = field(default_factory=dict)


def decoded_rows(utts: list[Utterance], rows_of: Callable[[Utterance], tuple[list, float]]) -> tuple[list, list[dict], float]:
    """Every utterance's rows (``rows_of``: its rows and the seconds it decoded), an error row (:data:`ERRORS`) for
    each that does not decode, and the seconds decoded."""
    rows: list[dict] = []
    errors: list[dict] = []
    seconds = 0.0
    for utt in utts:
        try:
            utt_rows, utt_seconds = rows_of(utt)
        except AudioDecodeError as err:
            errors.append({"uri": utt.uri, "corpus": utt.corpus, "stage": "decode", "reason": err.reason})
            continue
        rows.extend(utt_rows)
        seconds += utt_seconds
    return rows, errors, seconds


def featurize_shard(utts: list[Utterance], splits: dict[str, str], config: ExtractConfig, features_uri: str, errors_uri: str) -> float:
    """Featurize one shard and commit its feature and error files; return the seconds of audio decoded."""
    rows, errors, seconds = decoded_rows(utts, lambda utt: featurize_utterance(utt, splits[utt.utterance_id], config))
    commit_shard(rows_to_table(rows, config.spec), errors, features_uri, errors_uri)
    return seconds


def embed_utterance(utt: Utterance, split: str, frontend: EncoderFrontend, config: EmbedConfig) -> tuple[list[dict], float]:
    """Embedding rows (one per pooled window of each example copy of the utterance) and the decoded seconds."""
    spec = config.spec
    samples = decode(utt.uri, target_rate=spec.sample_rate, mono=True).samples[0]
    augment = config.augment if split == "train" else 0
    rows = []
    for copy, description, vectors, starts in example_copies(frontend, samples, utt.utterance_id, augment, config.policy):
        for window, (vector, start) in enumerate(zip(vectors, starts)):
            rows.append({"utterance_id": utt.utterance_id, "corpus": utt.corpus, "speaker": utt.speaker,
                         "gender": utt.gender, "split_group": utt.split_group, "split": split, "emotion": utt.emotion,
                         "copy": copy, "augmentation": description, "window": window, "start_s": float(start),
                         "embedding": vector, "embedding_version": spec.version})
    return rows, len(samples) / spec.sample_rate


def embed_shard(utts: list[Utterance], splits: dict[str, str], config: EmbedConfig, embeddings_uri: str, errors_uri: str) -> float:
    """Embed one shard (loading the encoder once) and commit its rows and error files; return the seconds of audio decoded."""
    frontend = EncoderFrontend(FeatureSpec(sample_rate=config.spec.sample_rate), config.spec, config.segmentation)
    rows, errors, seconds = decoded_rows(utts, lambda utt: embed_utterance(utt, splits[utt.utterance_id], frontend, config))
    commit_shard(pa.Table.from_pylist(rows, schema=embeddings_schema(config.spec.dim)), errors, embeddings_uri, errors_uri)
    return seconds


def start_extraction(out: str, utts: list[Utterance], splits: dict[str, str]) -> None:
    """Create ``out``, delete the temporaries an interrupted run left in it, and write its ``manifest.parquet``."""
    storage.makedirs(out)
    for leftover in storage.remove_temporaries(out):
        log.info("removed %s (left by an interrupted run)", leftover)
    manifest = utterances_to_frame(utts)
    manifest["split"] = [splits[u] for u in manifest["utterance_id"]]
    storage.write_parquet_atomic(pa.Table.from_pandas(manifest, schema=MANIFEST, preserve_index=False), storage.join(out, "manifest.parquet"))


def finish_extraction(out: str, corpora: tuple[tuple[str, str], ...], split_config: SplitConfig, config: ExtractConfig, scan: CorpusScan,
                      summary: ExtractSummary) -> None:
    """Aggregate the shards into ``errors.parquet``, ``summary``'s counts (skipped shards too) and ``metadata.json``."""
    schema = features_schema(config.spec)
    columns = pa.schema([schema.field(name) for name in ("utterance_id", "corpus", "split", "emotion", "copy")])
    features = storage.read_parquet_parts(storage.join(out, "features"), columns)
    shard_errors = storage.read_parquet_parts(storage.join(out, "errors"), ERRORS)
    all_errors = pa.concat_tables([pa.Table.from_pandas(rejected_to_frame(scan.rejected), schema=ERRORS, preserve_index=False), shard_errors])
    storage.write_parquet_atomic(all_errors, storage.join(out, "errors.parquet"))

    frame = features.to_pandas()
    originals = frame[frame["copy"] == 0].drop_duplicates("utterance_id")
    summary.utterances = len(originals)
    summary.windows = len(frame)
    summary.errors = all_errors.num_rows
    summary.per_corpus = {
        corpus: {
            "utterances": int(len(group)),
            "splits": {k: int(v) for k, v in Counter(group["split"]).items()},
            "emotions": {k: int(v) for k, v in Counter(group["emotion"]).items()},
        }
        for corpus, group in originals.groupby("corpus")
    }
    metadata = {
        "feature_version": config.spec.version,
        "feature_spec": config.spec.to_dict(),
        "feature_names": config.spec.feature_names,
        "window_shape": list(config.spec.window_shape),
        "segmentation": config.segmentation.to_dict(),
        "augment_copies": config.augment_copies,
        "augment_policy": dataclasses.asdict(config.policy),
        "augment_splits": list(config.augment_splits),
        "split_config": dataclasses.asdict(split_config),
        "corpora": [list(c) for c in corpora],
        "files_found": len(scan.utterances) + len(scan.rejected),
        "summary": dataclasses.asdict(summary),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    storage.write_bytes_atomic(storage.join(out, "metadata.json"), json.dumps(metadata, indent=2).encode())


def finish_embedding(out: str, corpora: tuple[tuple[str, str], ...], split_config: SplitConfig, config: EmbedConfig, scan: CorpusScan, *,
                     shards: int, shards_skipped: int, audio_seconds: float, wall_seconds: float) -> dict:
    """Write ``metadata.json``: what was embedded, from what and how, and this run's counts; return it."""
    metadata = {
        "embedding_version": config.spec.version,
        "embedding_spec": config.spec.to_dict(),
        "segmentation": config.segmentation.to_dict(),
        "split_config": dataclasses.asdict(split_config),
        "augment_copies": config.augment,
        "augment_policy": dataclasses.asdict(config.policy),
        "corpora": [list(c) for c in corpora],
        "utterances": len(scan.utterances),
        "rejected": [dataclasses.asdict(r) for r in scan.rejected],
        "shards": shards,
        "shards_skipped": shards_skipped,
        "audio_seconds_this_run": audio_seconds,
        "wall_seconds": wall_seconds,
    }
    storage.write_bytes_atomic(storage.join(out, "metadata.json"), json.dumps(metadata, indent=2).encode())
    return metadata
