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
from typing import Iterable

from ser_core.corpora.manifest import Utterance

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


@dataclass(frozen=True)
class HeldOutGroups:
    """The split groups a model was trained without, per corpus it was trained on (recorded in its bundle).

    Every training corpus is a key of both maps, with the groups of its ``validation`` and ``test`` splits.
    """

    validation: dict[str, tuple[str, ...]]
    test: dict[str, tuple[str, ...]]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]]) -> "HeldOutGroups":
        """From ``(corpus, split_group, split)`` rows, such as an extraction's manifest."""
        rows = list(rows)
        corpora = sorted({corpus for corpus, _, _ in rows})

        def groups(held_out: str) -> dict[str, tuple[str, ...]]:
            return {c: tuple(sorted({g for corpus, g, split in rows if corpus == c and split == held_out})) for c in corpora}

        return cls(validation=groups("validation"), test=groups("test"))

    @classmethod
    def from_dict(cls, data: dict) -> "HeldOutGroups":
        return cls(**{split: {c: tuple(g) for c, g in data[split].items()} for split in ("validation", "test")})

    def to_dict(self) -> dict:
        return {"validation": {c: list(g) for c, g in self.validation.items()}, "test": {c: list(g) for c, g in self.test.items()}}

    def split_of(self, utt: Utterance) -> str | None:
        """``utt``'s split in the model's training, or ``None`` for a corpus the model was not trained on."""
        if utt.corpus not in self.test:
            return None
        if utt.split_group in self.test[utt.corpus]:
            return "test"
        return "validation" if utt.split_group in self.validation[utt.corpus] else "train"


@dataclass(frozen=True)
class ModelSplits:
    """Each utterance's split with respect to one model, and whether that comes from the model's own record.

    ``recorded`` False means the split was recomputed from the files given: it matches the model's training only
    if these are the files the model was trained on.
    """

    assignment: dict[str, str | None]
    recorded: bool

    @classmethod
    def of(cls, utterances: list[Utterance], held_out: HeldOutGroups | None, config: SplitConfig) -> "ModelSplits":
        """From the recorded ``held_out`` groups, or (``None``: an older bundle) recomputed with ``config``."""
        if held_out is None:
            return cls(dict(assign_splits(utterances, config)), recorded=False)
        return cls({u.utterance_id: held_out.split_of(u) for u in utterances}, recorded=True)

    def select(self, utterances: list[Utterance], split: str) -> list[Utterance]:
        """The utterances in ``split`` (``all``: every one)."""
        return [u for u in utterances if split == "all" or self.assignment[u.utterance_id] == split]

    def unknown(self, utterances: list[Utterance]) -> list[Utterance]:
        """Utterances of corpora the model was not trained on (in no split of its training)."""
        return [u for u in utterances if self.assignment[u.utterance_id] is None]
