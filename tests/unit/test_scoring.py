"""Scoring without Ray: inputs and call ids, one call scored in pieces, the pieces put back together in any order,
and the report tables built from the results."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ser_core.models.bundle import load_bundle
from ser_core.reports.schema import CALLS, SEGMENTS, TURNS
from ser_core.scoring.calls import ScoringConfig
from ser_core.scoring.collector import CallCollector
from ser_core.scoring.inputs import CallInput, list_calls
from ser_core.scoring.rows import RunStamp, calls_table, segments_table, turns_table
from ser_core.scoring.scorer import CallEnd, CallScoring, ScoredBatch
from tests.audio_factory import write_corrupt_files, write_speech

DATE = "2026-11-20"


def test_an_archive_that_is_one_file_gives_it_the_id_of_its_stem(tmp_path):
    alone = write_speech(tmp_path / "q" / "c-7.wav", seconds=1.0, sample_rate=8000)
    assert list_calls(str(alone)) == [CallInput("c-7", str(alone))]
    in_a_day = write_speech(tmp_path / DATE / "c-8.wav", seconds=1.0, sample_rate=8000)
    assert list_calls(str(in_a_day)) == list_calls(str(tmp_path / DATE)) == [CallInput(f"{DATE}/c-8", str(in_a_day))]


@pytest.fixture(scope="module")
def scoring():
    return CallScoring(load_bundle("cnn"), ScoringConfig(), batch_size=4)  # small batches: a call comes in pieces


def test_a_call_is_scored_in_pieces_and_its_end_counts_them(scoring, tmp_path):
    path = write_speech(tmp_path / "q" / "c-1.wav", seconds=12.0, sample_rate=8000, channels=2)
    pieces = list(scoring.score("q/c-1", str(path)))
    *batches, end = pieces
    assert all(isinstance(p, ScoredBatch) for p in batches) and isinstance(end, CallEnd) and len(batches) > 1
    assert [b.first for b in batches] == list(np.cumsum([0] + [len(b.windows) for b in batches[:-1]]))
    assert end.windows == sum(len(b.windows) for b in batches)
    assert end.result.status == "ok" and end.result.channels == 2 and end.result.scored_channels == 2
    assert all(np.allclose(b.windows.probs.sum(axis=1), 1, atol=1e-4) for b in batches)


def test_a_bad_file_ends_its_call_with_an_error_and_no_windows(scoring, tmp_path):
    bad = write_corrupt_files(tmp_path)
    for name in ("empty", "text", "truncated"):
        pieces = list(scoring.score(name, str(bad[name])))
        assert len(pieces) == 1 and pieces[0].result.status == "error" and pieces[0].result.error, name


def test_pieces_in_any_order_and_repeated_give_the_call_in_order(scoring, tmp_path):
    paths = [write_speech(tmp_path / f"c-{i}.wav", seconds=8.0, sample_rate=8000, channels=2, seed=i) for i in range(2)]
    calls = [CallInput(f"c-{i}", str(p)) for i, p in enumerate(paths)]
    pieces = [p for c in calls for p in scoring.score(c.call_id, c.uri)]
    expected = {c.call_id: r for c in calls if (r := _collect(calls, [p for p in pieces if _call(p) == c.call_id]))}
    shuffled = pieces + random.Random(0).sample(pieces, len(pieces) // 2)  # a retried task repeats pieces
    random.Random(1).shuffle(shuffled)
    collector = CallCollector(calls)
    results = [r for p in shuffled if (r := collector.add(p)) is not None]
    assert sorted(r.call_id for r in results) == ["c-0", "c-1"] and collector.unfinished() == []
    for result in results:
        want = expected[result.call_id].windows
        assert np.array_equal(result.windows.start_s, want.start_s) and np.array_equal(result.windows.probs, want.probs)
        assert np.array_equal(result.windows.channel, want.channel)


def test_a_call_waits_for_every_window_its_end_counts(scoring, tmp_path):
    path = write_speech(tmp_path / "c.wav", seconds=8.0, sample_rate=8000, channels=2)
    *batches, end = scoring.score("c", str(path))
    collector = CallCollector([CallInput("c", str(path))])
    assert collector.add(end) is None and all(collector.add(b) is None for b in batches[1:])
    assert collector.unfinished() == [CallInput("c", str(path))]
    assert collector.add(batches[0]).windows.start_s[0] == batches[0].windows.start_s[0]


def test_the_report_tables_follow_their_schemas(scoring, tmp_path):
    import datetime as dt

    good = write_speech(tmp_path / "q1" / "c-1.wav", seconds=10.0, sample_rate=8000, channels=2)
    bad = write_corrupt_files(tmp_path / "q2")["empty"]
    calls = [CallInput("q1/c-1", str(good)), CallInput("q2/empty", str(bad))]
    results = [_collect(calls, list(scoring.score(c.call_id, c.uri))) for c in calls]
    stamp = RunStamp("m-1", "run-1", dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc))
    config = ScoringConfig()
    segments, turns = segments_table(results, config, stamp), turns_table(results, config, stamp)
    table = calls_table(results, config, stamp, {"q1/c-1": {"agent_id": "a-7"}})
    assert table.schema == CALLS and segments.schema == SEGMENTS and turns.schema == TURNS
    assert table.column("status").to_pylist() == ["ok", "error"] and table.column("queue").to_pylist() == ["q1", "q2"]
    assert table.column("agent_id").to_pylist() == ["a-7", None]
    assert segments.num_rows == len(results[0].windows) and set(segments.column("call_id").to_pylist()) == {"q1/c-1"}
    assert set(segments.column("speaker_role").to_pylist()) <= {"agent", "customer"}
    assert set(turns.column("run_id").to_pylist()) == {"run-1"}


def _call(piece) -> str:
    return piece.result.call_id if isinstance(piece, CallEnd) else piece.call_id


def _collect(calls, pieces):
    collector = CallCollector(calls)
    return [r for p in pieces if (r := collector.add(p)) is not None][0]
