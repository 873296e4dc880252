"""Pooled encoder windows: what the Whisper-head model sees, for training utterances and for speech in calls.

A window is 2.5 s of encoder frames (1.25 s hop, the CNN's grid); its vector is the mean and the standard
deviation of the frames over the window, concatenated (1,024 values for Whisper-base). A speech region shorter
than a window gives one window over all its frames; which regions are speech is :mod:`ser_core.audio.segmentation`. An
:class:`EmbeddingSpec` fixes everything that changes the numbers and hashes to the embedding version stored in every
row and every bundle made from them; ``layers`` (the encoder's depth used, see
:func:`ser_core.frontends.encoder.truncated_model_dir`) enters the hash only below the full depth, so specs written before it
existed keep their version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ser_core import storage
from ser_core.errors import Refused
from ser_core.frontends.encoder import ENCODER_LAYERS, FRAME_RATE, WEIGHTS_SHA256, WhisperEncoder

META_COLUMNS = ["utterance_id", "corpus", "speaker", "split_group", "split", "emotion", "copy"]


@dataclass(frozen=True)
class EmbeddingSpec:
    """The encoder (by its weights' hash and the layers used), the input rate, and the pooling windows."""

    encoder: str = "whisper-base"
    weights_sha256: str = WEIGHTS_SHA256
    sample_rate: int = 8000
    window_seconds: float = 2.5
    window_hop_seconds: float = 1.25
    pooling: str = "mean+std"
    width: int = 512
    layers: int = ENCODER_LAYERS

    @property
    def version(self) -> str:
        """Short content hash of the spec: equal specs, equal versions (the full depth hashes as before ``layers``).

        >>> EmbeddingSpec().version == EmbeddingSpec(layers=6).version != EmbeddingSpec(layers=3).version
        True
        """
        values = dataclasses.asdict(self)
        if self.layers == ENCODER_LAYERS:
            del values["layers"]
        payload = json.dumps(values, sort_keys=True).encode()
        return "es-" + hashlib.sha256(payload).hexdigest()[:12]

    @property
    def dim(self) -> int:
        """Length of one pooled window vector."""
        return 2 * self.width

    @property
    def window_frames(self) -> int:
        return round(self.window_seconds * FRAME_RATE)

    @property
    def hop_frames(self) -> int:
        return round(self.window_hop_seconds * FRAME_RATE)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EmbeddingSpec":
        return cls(**values)


def embeddings_schema(dim: int) -> pa.Schema:
    """Embedding shard schema: one row per pooled window of one (possibly augmented) utterance copy."""
    return pa.schema([
        ("utterance_id", pa.string()), ("corpus", pa.string()), ("speaker", pa.string()), ("gender", pa.string()),
        ("split_group", pa.string()), ("split", pa.string()), ("emotion", pa.string()), ("copy", pa.int32()),
        ("augmentation", pa.string()), ("window", pa.int32()), ("start_s", pa.float32()),
        ("embedding", pa.list_(pa.float32(), dim)), ("embedding_version", pa.string()),
    ])


def read_embeddings(folder: str) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Pooled windows, their metadata and the job's ``metadata.json`` from the output of ``ser embed``."""
    metadata = json.loads(storage.read_bytes(storage.join(folder, "metadata.json")))
    fs, path = storage.filesystem(storage.join(folder, "embeddings"))
    table = pq.read_table(path, filesystem=fs)
    versions = set(table.column("embedding_version").unique().to_pylist())
    if versions != {metadata["embedding_version"]}:
        raise Refused(f"{folder}: rows of embedding versions {sorted(versions)}, metadata says {metadata['embedding_version']}")
    x = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    return x, table.select(META_COLUMNS).to_pandas(), metadata


def window_bounds(n_frames: int, spec: EmbeddingSpec) -> list[tuple[int, int]]:
    """``[start, end)`` encoder-frame ranges of the pooled windows over ``n_frames`` frames.

    Examples
    --------
    >>> window_bounds(300, EmbeddingSpec())
    [(0, 125), (62, 187), (124, 249), (175, 300)]
    >>> window_bounds(40, EmbeddingSpec())
    [(0, 40)]
    """
    size, hop = spec.window_frames, spec.hop_frames
    if n_frames <= size:
        return [(0, n_frames)] if n_frames else []
    starts = list(range(0, n_frames - size + 1, hop))
    if starts[-1] + size < n_frames:
        starts.append(n_frames - size)
    return [(s, s + size) for s in starts]


def pool(frames: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Mean and standard deviation of ``frames`` over each window, ``(len(bounds), 2 * width)`` float32."""
    if not bounds:
        return np.zeros((0, 2 * frames.shape[1]), np.float32)
    return np.stack([np.concatenate([frames[a:b].mean(0), frames[a:b].std(0)]) for a, b in bounds]).astype(np.float32)


def region_embeddings(samples, regions: np.ndarray, hop_length: int, encoder: WhisperEncoder,
                      spec: EmbeddingSpec) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(start_s, end_s, rms_db, pooled)`` per speech region of one channel (regions in VAD frames of ``hop_length``).

    ``samples`` is anything sliced by sample range like a 1-D array (an array, or a spooled channel). Each region is
    encoded on its own (30 s chunks for longer ones, level-normalised) and pooled over the window grid; a region
    shorter than a window is one window over what it has.
    """
    out = []
    rate = spec.sample_rate
    for first, last in regions:
        a = int(first) * hop_length
        segment = np.asarray(samples[a : int(last) * hop_length], np.float32)
        frames = encoder.frames(segment, rate)
        bounds = window_bounds(len(frames), spec)
        starts = np.array([s / FRAME_RATE for s, _ in bounds])
        ends = np.array([min(e / FRAME_RATE, len(segment) / rate) for _, e in bounds])
        spans = [segment[int(s * rate) : max(int(e * rate), int(s * rate) + 1)] for s, e in zip(starts, ends)]
        rms_db = np.array([10 * np.log10(np.mean(np.square(span, dtype=np.float64)) + 1e-10) for span in spans], np.float32)
        out.append((a / rate + starts, a / rate + ends, rms_db, pool(frames, bounds)))
    return out
