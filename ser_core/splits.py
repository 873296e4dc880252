"""Deterministic, group-disjoint train/validation/test splits.

Utterances are grouped by :attr:`Utterance.split_group` (the speaker; the word for TESS) and whole groups
are assigned to a split, so no speaker (or TESS word) is ever seen on both sides. Within each corpus,
groups are stratified by gender and ordered by a seeded hash, so the assignment is stable across runs,
machines and the order files were listed in. Augmented copies inherit their source utterance's split.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from ser_core.manifest import Utterance

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of groups per split, and the seed of the ordering."""

    validation: float = 0.15
    test: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.validation < 0 or self.test < 0 or self.validation + self.test >= 1:
            raise ValueError("validation and test fractions must be >= 0 and sum to less than 1")


def _order(group: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def _share(fraction: float, n_groups: int) -> int:
    if n_groups < 3 or fraction == 0:
        return 0
    return max(1, round(fraction * n_groups))


def assign_splits(utterances: list[Utterance], config: SplitConfig = SplitConfig()) -> dict[str, str]:
    """Map each ``utterance_id`` to ``train``, ``validation`` or ``test``, whole groups at a time.

    Per corpus and gender stratum, the first ``round(test * n)`` groups in hash order go to test, the next
    ``round(validation * n)`` to validation, the rest to train. A stratum of three or more groups gives at least
    one group to each split with a non-zero fraction; smaller strata stay in train.
    """
    strata: dict[tuple[str, str], set[str]] = defaultdict(set)
    for utt in utterances:
        strata[(utt.corpus, utt.gender or "unknown")].add(utt.split_group)
    group_split: dict[str, str] = {}
    for groups in strata.values():
        ordered = sorted(groups, key=lambda g: _order(g, config.seed))
        n = len(ordered)
        n_test = _share(config.test, n)
        n_val = _share(config.validation, n)
        for i, group in enumerate(ordered):
            group_split[group] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return {utt.utterance_id: group_split[utt.split_group] for utt in utterances}
