"""Speaker- (TESS: word-) disjoint, deterministic splits."""

from __future__ import annotations

import random

import pytest

from ser_core.corpora import ravdess, tess
from ser_core.corpora.splits import SplitConfig, assign_splits


def _ravdess(actors=range(1, 21)):
    return [ravdess.parse(f"Actor_{a:02d}/03-01-{e:02d}-01-01-01-{a:02d}.wav") for a in actors for e in range(1, 9)]


def _groups_by_split(utts, splits):
    groups: dict[str, set[str]] = {}
    for u in utts:
        groups.setdefault(splits[u.utterance_id], set()).add(u.split_group)
    return groups


def test_ravdess_speakers_disjoint_and_gender_balanced():
    utts = _ravdess()
    splits = assign_splits(utts)
    groups = _groups_by_split(utts, splits)
    assert set(groups) == {"train", "validation", "test"}
    assert not (groups["train"] & groups["validation"]) and not (groups["train"] & groups["test"]) and not (groups["validation"] & groups["test"])
    for split in ("validation", "test"):
        numbers = [int(g[-2:]) for g in groups[split]]
        assert sum(n % 2 for n in numbers) == len(numbers) / 2  # as many male (odd) as female actors


def test_deterministic_and_order_independent():
    utts = _ravdess()
    shuffled = utts[:]
    random.Random(3).shuffle(shuffled)
    assert assign_splits(utts) == assign_splits(shuffled)
    assert assign_splits(utts, SplitConfig(seed=1)) != assign_splits(utts)


def test_tess_split_by_word_not_speaker():
    words = [f"w{i}" for i in range(40)]
    utts = [tess.parse(f"{s}_{w}_{e}.wav") for s in ("OAF", "YAF") for w in words for e in ("angry", "ps")]
    splits = assign_splits(utts)
    groups = _groups_by_split(utts, splits)
    assert all(g.startswith("tess/word:") for gs in groups.values() for g in gs)
    assert not (groups["train"] & groups["test"])
    test_speakers = {u.speaker for u in utts if splits[u.utterance_id] == "test"}
    assert test_speakers == {"OAF", "YAF"}


def test_invalid_fractions():
    with pytest.raises(ValueError):
        SplitConfig(validation=0.6, test=0.5)
