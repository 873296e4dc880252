"""``ser make-archive``: synthetic and corpus-built call archives and their ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner

from jobs.make_archive import cli as archive_cli
from ser_core.audio.call_archive import RATE, SYNTHETIC_NOTICE
from ser_core.corpora import scan_all
from ser_core.corpora.splits import HeldOutGroups, assign_splits
from tests.audio_factory import write_speech

EMOTION_CODES = ("01", "03", "04", "05", "06", "07", "08")  # RAVDESS: neutral happy sad angry fear disgust surprise


def fake_ravdess(folder: Path, actors: range) -> Path:
    """One short speech-like file per actor and emotion, named as RAVDESS names them."""
    for actor in actors:
        for index, code in enumerate(EMOTION_CODES):
            write_speech(folder / f"Actor_{actor:02d}" / f"03-01-{code}-01-01-01-{actor:02d}.wav", seconds=1.5,
                         f0=110 + 20 * index + 5 * actor, seed=actor * 10 + index)
    return folder


QUIET_LINE = ("--noise-floor", "-80", "-80")


def make(out: Path, *args: str) -> tuple[str, pd.DataFrame]:
    result = CliRunner().invoke(archive_cli, ["--out", str(out), "--date", "2026-11-23", *args])
    assert result.exit_code == 0, result.output
    return result.output, pd.read_parquet(out / "ground_truth.parquet")


def level_db(samples: np.ndarray) -> float:
    return 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-20)


def check_calls(out: Path, truth: pd.DataFrame, channels: int) -> None:
    """Turns alternate agent/customer without overlapping, inside the file; each speaks on its own channel.

    The channel check needs a quiet line (``QUIET_LINE``): at the default noise floor a turn 15 dB under its party's
    level can be quieter than the other channel's noise (that is what the VAD must cope with)."""
    for call_id, turns in truth.groupby("call_id"):
        data, rate = sf.read(out / "audio" / f"{call_id}.wav", always_2d=True)
        assert (rate, data.shape[1]) == (RATE, channels)
        turns = turns.sort_values("turn")
        assert list(turns["role"]) == ["agent", "customer"] * (len(turns) // 2) + ["agent"]
        assert (turns["start_s"].to_numpy()[1:] >= turns["end_s"].to_numpy()[:-1]).all()
        assert turns["end_s"].max() <= data.shape[0] / rate
        assert turns[turns["role"] == "agent"]["speaker"].nunique() == 1
        assert set(turns[turns["role"] == "agent"]["speaker"]).isdisjoint(turns[turns["role"] == "customer"]["speaker"])
        if channels == 2:
            assert (turns["channel"] == np.where(turns["role"] == "agent", 0, 1)).all()
            for turn in turns.itertuples():
                inside = data[int(turn.start_s * rate) : int(turn.end_s * rate)]
                own, other = level_db(inside[:, turn.channel]), level_db(inside[:, 1 - turn.channel])
                assert own - other > 15  # the other channel only hears the leak (at most -20 dB) over a quiet line


def test_synthetic_archive_says_so(tmp_path):
    calls, turns = 3, 2
    output, truth = make(tmp_path / "demo", "--calls", str(calls), "--customer-turns", str(turns), "--seed", "1", *QUIET_LINE)
    assert SYNTHETIC_NOTICE in output and SYNTHETIC_NOTICE in (tmp_path / "demo" / "README.txt").read_text()
    assert truth["synthetic"].all() and truth["call_id"].nunique() == calls
    assert len(truth) == calls * (2 * turns + 1)
    check_calls(tmp_path / "demo", truth, channels=2)
    _, again = make(tmp_path / "again", "--calls", str(calls), "--customer-turns", str(turns), "--seed", "1", *QUIET_LINE)
    pd.testing.assert_frame_equal(truth, again)
    first = sorted((tmp_path / "demo" / "audio").rglob("*.wav"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in sorted((tmp_path / "again" / "audio").rglob("*.wav"))]


def test_mono_archive_mixes_both_parties(tmp_path):
    _, truth = make(tmp_path / "mono", "--calls", "2", "--mono")
    check_calls(tmp_path / "mono", truth, channels=1)
    assert (truth["channel"] == 0).all()


def test_corpus_archive_uses_every_utterance_of_the_split_once(tmp_path):
    corpus = fake_ravdess(tmp_path / "ravdess", range(1, 5))
    output, truth = make(tmp_path / "archive", "--corpus", f"ravdess={corpus}", "--split", "all", "--customer-turns", "3", *QUIET_LINE)
    assert "SYNTHETIC" not in output and not truth["synthetic"].any()
    customer = truth[truth["role"] == "customer"]
    utterances = scan_all((("ravdess", str(corpus)),)).utterances
    assert sorted(customer["utterance_id"]) == sorted(u.utterance_id for u in utterances)
    assert dict(zip(customer["utterance_id"], customer["emotion"])) == {u.utterance_id: u.emotion for u in utterances}
    assert customer.groupby("call_id")["speaker"].nunique().eq(1).all()  # one customer per call
    check_calls(tmp_path / "archive", truth, channels=2)
    assert "ravdess=" in (tmp_path / "archive" / "README.txt").read_text()


def test_the_test_split_is_the_models_recorded_held_out_speakers_whatever_is_scanned(tmp_path):
    corpus = fake_ravdess(tmp_path / "ravdess", range(1, 7))  # a subset: a fresh split of it would hold out actors 02 03
    model = tmp_path / "model"
    model.mkdir()
    rows = [("ravdess", f"ravdess/actor{a:02d}", "test" if a in (1, 4) else "train") for a in range(1, 25)]
    (model / "bundle.json").write_text(json.dumps({"held_out_groups": HeldOutGroups.from_rows(rows).to_dict()}))
    output, truth = make(tmp_path / "archive", "--corpus", f"ravdess={corpus}", "--model", str(model), "--customer-turns", "3")
    assert set(truth["speaker"]) == {"ravdess/actor01", "ravdess/actor04"} and "WARNING" not in output

    (model / "bundle.json").write_text(json.dumps({"features": {"split_config": {"validation": 0.15, "test": 0.15, "seed": 0}}}))
    output, truth = make(tmp_path / "older", "--corpus", f"ravdess={corpus}", "--model", str(model), "--customer-turns", "3")
    assert set(truth["speaker"]) == {"ravdess/actor02", "ravdess/actor03"}  # recomputed from the files given...
    assert "NOT guaranteed" in output and "NOT guaranteed" in (tmp_path / "older" / "README.txt").read_text()  # ...and said so


@pytest.mark.corpora
def test_archive_from_the_held_out_speakers_of_real_ravdess(shared_corpora, tmp_path):
    corpus = str(shared_corpora / "ravdess")
    _, truth = make(tmp_path / "archive", "--corpus", f"ravdess={corpus}", *QUIET_LINE)
    scan = scan_all((("ravdess", corpus),))
    splits = assign_splits(scan.utterances)
    held_out = {u.utterance_id for u in scan.utterances if splits[u.utterance_id] == "test"}
    assert set(truth[truth["role"] == "customer"]["utterance_id"]) == held_out
    assert set(truth["utterance_id"]) <= held_out  # agents too come from held-out speakers
    check_calls(tmp_path / "archive", truth, channels=2)
