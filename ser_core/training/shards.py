"""Shard planning shared by ``ser extract`` and ``ser embed``: utterances in stable shards whose file names change
whenever anything that changes their rows does, so a rerun skips what is written and replaces what is stale."""

from __future__ import annotations

import hashlib

from ser_core.corpora.manifest import Utterance


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
