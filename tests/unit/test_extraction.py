"""``ser extract``'s work without Ray: shards featurized in turn, committed, skipped on a rerun, and summarised."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from ser_core import storage
from ser_core.corpora import scan_all
from ser_core.corpora.splits import SplitConfig, assign_splits
from ser_core.frontends.featurize import ExtractConfig
from ser_core.training.extraction import ExtractSummary, featurize_shard, finish_extraction, start_extraction
from ser_core.training.shards import plan_shards, unfinished_shards
from tests.audio_factory import write_speech

CONFIG = ExtractConfig()


def extract(corpus: Path, out: Path, shard_size: int = 2) -> ExtractSummary:
    """The extraction job's steps, each shard featurized here instead of in a Ray task."""
    corpora = (("ravdess", str(corpus)),)
    scan = scan_all(corpora)
    splits = assign_splits(scan.utterances, SplitConfig())
    start_extraction(str(out), scan.utterances, splits)
    planned = plan_shards(scan.utterances, splits, shard_size, CONFIG)
    folders = str(out / "features"), str(out / "errors")
    todo = unfinished_shards(planned, *folders)
    summary = ExtractSummary(shards_total=len(planned), shards_skipped=len(planned) - len(todo))
    for name, shard in todo.items():
        summary.audio_seconds += featurize_shard(shard, splits, CONFIG, *(storage.join(f, name) for f in folders))
    finish_extraction(str(out), corpora, SplitConfig(), CONFIG, scan, summary)
    return summary


def test_shards_commit_and_a_rerun_skips_them(tmp_path):
    corpus = tmp_path / "ravdess"
    for actor in (1, 2):
        for emotion in (1, 5):
            write_speech(corpus / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", seconds=1.0,
                         f0=120 + 25 * emotion, seed=actor * 10 + emotion)
    (corpus / "Actor_02" / "03-01-03-01-01-01-02.wav").write_text("not audio")  # parses, does not decode
    out = tmp_path / "out"
    first = extract(corpus, out)
    assert (first.utterances, first.errors, first.shards_total, first.shards_skipped) == (4, 1, 3, 0)
    assert first.audio_seconds > 3.9 and first.windows >= 8  # a clip and a call copy of each utterance
    (error,) = pq.read_table(out / "errors.parquet").to_pylist()
    assert error["stage"] == "decode" and error["uri"].endswith("03-01-03-01-01-01-02.wav")
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["files_found"] == 5 and metadata["summary"]["utterances"] == 4
    assert len(pq.read_table(out / "manifest.parquet")) == 5

    again = extract(corpus, out)
    assert (again.shards_skipped, again.audio_seconds, again.utterances) == (3, 0.0, 4)
    regrouped = extract(corpus, out, shard_size=5)  # another plan: the earlier shards are removed
    assert regrouped.shards_skipped == 0 and len(list((out / "features").iterdir())) == 1 == len(list((out / "errors").iterdir()))
