"""Training windows streamed from the feature shards of ``ser extract``, for ``ser train``'s driver and workers.

The driver reads only the metadata columns (:func:`scan_windows`: window counts per split and cell, the sample
weights of :func:`cell_weights`). Each worker streams its share of the shard files (:func:`worker_files`, dealt
afresh every pass), a few loaded at a time and normalised as they load (:func:`cycle_chunks`), through a shuffle
buffer into batches (:func:`shuffled_batches`); so no process holds the training set. :func:`read_split` reads a
held-out split for scoring. Plain numpy and pyarrow: TensorFlow is imported by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ser_core import storage
from ser_core.frontends.features import FeatureSpec
from ser_core.frontends.featurize import table_windows
from ser_core.training.examples import CALL_COPY

META_COLUMNS = ["utterance_id", "corpus", "speaker", "split", "emotion", "copy"]
OPEN_SHARDS = 4  # shard files a worker's stream draws from at once
CHUNK_WINDOWS = 16  # windows per draw from one shard


def scan_windows(features: str) -> pd.DataFrame:
    """Metadata of every feature window (``META_COLUMNS`` and its shard ``file``), read without the features column."""
    folder = storage.join(features, "features")
    frames = []
    for name in sorted(storage.parquet_files(folder)):
        uri = storage.join(folder, name)
        fs, path = storage.filesystem(uri)
        frames.append(pq.read_table(path, filesystem=fs, columns=META_COLUMNS).to_pandas().assign(file=uri))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*META_COLUMNS, "file"])


def split_files(meta: pd.DataFrame, split: str) -> list[str]:
    """The shard files holding windows of ``split``, sorted."""
    return sorted(set(meta.loc[meta["split"] == split, "file"]))


def cell_weights(meta: pd.DataFrame, balance: str) -> list[list]:
    """``[corpus, emotion, weight]`` per cell of the training windows (all copies): weights from counts known up front."""
    from ser_core.models.cnn import balance_weights

    train = meta[meta["split"] == "train"]
    counts = {cell: int(n) for cell, n in train.groupby(["corpus", "emotion"]).size().items()}
    return [[corpus, emotion, weight] for (corpus, emotion), weight in balance_weights(counts, balance).items()]


def read_shard(uri: str, spec: FeatureSpec, split: str, copy: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """One shard's raw windows ``(n, frames, features)`` of ``split`` (only copy number ``copy`` when given) and their metadata."""
    fs, path = storage.filesystem(uri)
    condition = pc.field("split") == split
    if copy is not None:
        condition &= pc.field("copy") == copy
    table = pq.read_table(path, filesystem=fs, columns=[*META_COLUMNS, "features"], filters=condition)
    return table_windows(table, spec), table.select(META_COLUMNS).to_pandas()


def read_split(files: list[str], spec: FeatureSpec, split: str, norm: tuple[np.ndarray, np.ndarray] | None = None,
               dtype: type = np.float32, copy: int = CALL_COPY) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Copy ``copy`` (by default the call channel, what scoring sees) of ``split``: windows per shard file (never
    concatenated), normalised by ``norm = (mean, std)`` when given and stored as ``dtype``, and their metadata."""
    windows, metas = [], []
    for uri in files:
        x, meta = read_shard(uri, spec, split, copy)
        if len(x):
            windows.append(((x - norm[0]) / norm[1] if norm else x).astype(dtype))  # a copy: frees the Arrow buffers
            metas.append(meta)
    return windows, pd.concat(metas, ignore_index=True) if metas else pd.DataFrame(columns=META_COLUMNS)


@dataclass
class _LoadedShard:
    """A shard's training windows, normalised and in random order, with how far the stream has read them."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    position: int = 0


def _load_for_training(uri: str, spec: FeatureSpec, norm: tuple[np.ndarray, np.ndarray], weights: dict,
                       rng: np.random.Generator) -> _LoadedShard:
    from ser_core.models.cnn import one_hot

    x, meta = read_shard(uri, spec, "train")
    order = rng.permutation(len(x))
    x = x[order]
    x -= norm[0]
    x /= norm[1]
    meta = meta.iloc[order]
    w = np.array([weights[cell] for cell in zip(meta["corpus"], meta["emotion"])], np.float32)
    return _LoadedShard(x, one_hot(meta["emotion"].to_numpy()), w)


def worker_files(files: list[str], rank: int, world: int, seed: int, cycle: int) -> list[str]:
    """This worker's shard files in pass ``cycle``: the same seeded permutation on every worker, dealt by rank."""
    order = np.random.default_rng([seed, cycle]).permutation(len(files))
    return [files[i] for i in order[rank::world]]


def cycle_chunks(files: list[str], spec: FeatureSpec, norm: tuple[np.ndarray, np.ndarray], weights: dict,
                 rng: np.random.Generator, open_shards: int = OPEN_SHARDS, chunk_windows: int = CHUNK_WINDOWS
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every training window of ``files`` once, as ``(windows, one-hot labels, weights)`` chunks of at most
    ``chunk_windows``, each drawn from a random one of at most ``open_shards`` loaded shards (all this holds)."""
    pending = iter(files)
    loaded: list[_LoadedShard] = []
    while True:
        loaded = [shard for shard in loaded if shard.position < len(shard.x)]
        while len(loaded) < open_shards and (uri := next(pending, None)) is not None:
            shard = _load_for_training(uri, spec, norm, weights, rng)
            if len(shard.x):
                loaded.append(shard)
            del shard  # a finished shard must not outlive its place in ``loaded``
        if not loaded:
            return
        i = rng.integers(len(loaded))
        part = slice(loaded[i].position, loaded[i].position + chunk_windows)
        loaded[i].position += chunk_windows
        # Copies, and no name bound to the shard: a finished shard is freed before the next one loads.
        yield loaded[i].x[part].copy(), loaded[i].y[part].copy(), loaded[i].w[part].copy()


def shuffled_batches(stream: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], batch_size: int, buffer_windows: int,
                     rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of ``batch_size`` windows from a chunk stream, through a shuffle buffer of ``buffer_windows`` windows.

    The buffer fills first; after that each incoming window takes the place of a random one, which goes out.
    Chunks must not be larger than the buffer.
    """
    buffer: list[np.ndarray] = []
    filled = 0
    outgoing: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pending = 0
    for chunk in stream:
        if not buffer:
            buffer = [np.empty((buffer_windows, *part.shape[1:]), part.dtype) for part in chunk]
        take = min(len(chunk[0]), buffer_windows - filled)
        for store, part in zip(buffer, chunk):
            store[filled : filled + take] = part[:take]
        filled += take
        rest = [part[take:] for part in chunk]
        if not len(rest[0]):
            continue
        slots = rng.choice(buffer_windows, len(rest[0]), replace=False)
        outgoing.append(tuple(store[slots] for store in buffer))
        for store, part in zip(buffer, rest):
            store[slots] = part
        pending += len(rest[0])
        while pending >= batch_size:
            joined = [np.concatenate(parts) for parts in zip(*outgoing)]
            yield tuple(part[:batch_size] for part in joined)
            outgoing = [tuple(part[batch_size:] for part in joined)]
            pending -= batch_size


def batches_per_worker_epoch(steps: int, world: int) -> int:
    """Batches (of the global batch size) one worker feeds per epoch: ``MultiWorkerMirroredStrategy`` splits each of
    a worker's batches into ``world`` per-replica batches, one per step, so a worker needs ``ceil(steps / world)``.

    >>> batches_per_worker_epoch(steps=5, world=2)
    3
    """
    return -(-steps // world)


def train_stream(files: list[str], spec: FeatureSpec, norm: tuple[np.ndarray, np.ndarray], weights: dict, rank: int,
                 world: int, seed: int, first_cycle: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A worker's endless stream of training chunks: pass after pass over its share of the shard files.

    In each pass the workers together read every training window once (:func:`worker_files`).
    """
    cycle = first_cycle
    while True:
        rng = np.random.default_rng([seed, cycle, rank])
        yield from cycle_chunks(worker_files(files, rank, world, seed, cycle), spec, norm, weights, rng)
        cycle += 1


def shard_moments(files: list[str], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-feature sums of the training frames of ``files`` and of their squares (float64), and the frame count."""
    total, total_sq, count = np.zeros(spec.n_features), np.zeros(spec.n_features), 0
    for uri in files:
        x, _ = read_shard(uri, spec, "train")
        frames = x.reshape(-1, spec.n_features).astype(np.float64)
        total += frames.sum(axis=0)
        total_sq += (frames**2).sum(axis=0)
        count += len(frames)
    return total, total_sq, count
