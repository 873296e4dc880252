"""The shards of ``ser extract`` and ``ser embed``: utterances in stable shards whose file names change whenever
anything that changes their rows does, so a rerun skips what is written and replaces what is stale.

A shard is two files of one name in two folders, its rows and its errors; it is committed once its errors file
exists (:func:`commit_shard` writes it last, each file atomically).
"""

from __future__ import annotations

import hashlib
import logging

import pyarrow as pa

from ser_core import storage
from ser_core.corpora.manifest import Utterance
from ser_core.reports.schema import ERRORS

log = logging.getLogger(__name__)


def shard_key(utts: list[Utterance], splits: dict[str, str], settings: object) -> str:
    """Hash of a shard's utterances, their splits and the ``settings`` (by repr) that change its rows."""
    digest = hashlib.sha256(repr(settings).encode())
    for utt in utts:
        digest.update(f"{utt.utterance_id}|{utt.uri}|{utt.emotion}|{splits[utt.utterance_id]}\n".encode())
    return digest.hexdigest()[:12]


def plan_shards(utts: list[Utterance], splits: dict[str, str], shard_size: int, settings: object) -> dict[str, list[Utterance]]:
    """``shard-NNNNN-<key>.parquet -> its utterances``: ``utts`` by id, ``shard_size`` at a time."""
    ordered = sorted(utts, key=lambda u: u.utterance_id)
    shards = [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]
    return {f"shard-{i:05d}-{shard_key(shard, splits, settings)}.parquet": shard for i, shard in enumerate(shards)}


def unfinished_shards(planned: dict[str, list[Utterance]], rows_folder: str, errors_folder: str) -> dict[str, list[Utterance]]:
    """The planned shards not committed yet, after removing the files of shards no longer planned from both folders."""
    rows_done, errors_done = storage.parquet_files(rows_folder), storage.parquet_files(errors_folder)
    for folder, present in ((rows_folder, rows_done), (errors_folder, errors_done)):
        for stale in sorted(present - set(planned)):
            log.info("removing stale shard %s from an earlier plan", stale)
            storage.remove(storage.join(folder, stale))
    return {name: shard for name, shard in planned.items() if not (name in rows_done and name in errors_done)}


def commit_shard(rows: pa.Table, errors: list[dict], rows_uri: str, errors_uri: str) -> None:
    """Write a shard's rows, then its errors (rows of :data:`~ser_core.reports.schema.ERRORS`), which commit it."""
    storage.write_parquet_atomic(rows, rows_uri)
    storage.write_parquet_atomic(pa.Table.from_pylist(errors, schema=ERRORS), errors_uri)
