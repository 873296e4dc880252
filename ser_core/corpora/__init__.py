"""Corpus recipes: one module per corpus, each turning a root folder or URI into a :class:`CorpusScan`.

>>> scan = scan_corpus("ravdess", "../shared/corpora/ravdess")  # doctest: +SKIP
>>> scan.utterances[0].emotion, len(scan.rejected)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

from ser_core.corpora import ased, cremad, csv_manifest, emovo, nemo, ravdess, tess, turev
from ser_core.corpora.manifest import CorpusScan, Rejected, Utterance

RECIPES: dict[str, Callable[[str], CorpusScan]] = {
    "ravdess": ravdess.scan,
    "tess": tess.scan,
    "cremad": cremad.scan,
    "emovo": emovo.scan,
    "ased": ased.scan,
    "turev": turev.scan,
    "nemo": nemo.scan,
    "manifest": csv_manifest.scan,
}


def scan_corpus(name: str, root: str) -> CorpusScan:
    """Scan one corpus by recipe ``name`` (a key of :data:`RECIPES`)."""
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(RECIPES)}") from None
    return recipe(root)


def parse_corpus_option(value: str) -> tuple[str, str]:
    """Split a CLI ``NAME=PATH`` corpus option."""
    name, sep, root = value.partition("=")
    if not sep or not name or not root:
        raise ValueError(f"expected NAME=PATH, got {value!r}")
    name = name.strip().lower()
    if name not in RECIPES:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(RECIPES)}")
    return name, root


def scan_all(corpora: tuple[tuple[str, str], ...]) -> CorpusScan:
    """Scan every ``(name, root)``; a second utterance with an id already seen is rejected, not duplicated."""
    scan = CorpusScan()
    for name, root in corpora:
        scan.extend(scan_corpus(name, root))
    seen: set[str] = set()
    unique: list[Utterance] = []
    for utt in scan.utterances:
        if utt.utterance_id in seen:
            scan.rejected.append(Rejected(utt.uri, utt.corpus, "manifest", f"duplicate of utterance {utt.utterance_id}"))
        else:
            seen.add(utt.utterance_id)
            unique.append(utt)
    scan.utterances = unique
    return scan
