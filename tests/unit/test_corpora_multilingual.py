"""The EMOVO, ASED, TurEV-DB and nEMO recipes on generated trees that follow each corpus's naming, and on the shared corpora."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ser_core.corpora import ased, emovo, nemo, scan_corpus, turev
from ser_core.corpora.common import UnparsableName
from ser_core.corpora.splits import assign_splits
from tests.audio_factory import write_speech


def test_emovo_names(tmp_path):
    for name in ["f1/dis-f1-b1.wav", "m3/GIO-m3-n4.flac", "m2/xyz-m2-b1.wav", "m2/notes.wav"]:
        write_speech(tmp_path / name, seconds=0.3)
    scan = scan_corpus("emovo", str(tmp_path))
    by_id = {u.utterance_id: u for u in scan.utterances}
    assert set(by_id) == {"emovo/dis-f1-b1", "emovo/gio-m3-n4"}
    assert (by_id["emovo/dis-f1-b1"].emotion, by_id["emovo/dis-f1-b1"].gender, by_id["emovo/dis-f1-b1"].split_group) == (
        "disgust", "female", "emovo/f1")
    assert (by_id["emovo/gio-m3-n4"].emotion, by_id["emovo/gio-m3-n4"].speaker, by_id["emovo/gio-m3-n4"].gender) == ("happy", "m3", "male")
    reasons = sorted(r.reason for r in scan.rejected)
    assert "unknown EMOVO emotion 'xyz'" in reasons[1] and "not an EMOVO name" in reasons[0]


def test_ased_names_case_and_identical_copies(tmp_path):
    write_speech(tmp_path / "04Sad" / "S4-04-02-01-29.wav", seconds=0.3, seed=1)
    write_speech(tmp_path / "01Neutral" / "n1-07-01-02-53.flac", seconds=0.3, seed=2)
    copy = tmp_path / "01Neutral" / "n1-07-02-02-53.flac"
    copy.write_bytes((tmp_path / "01Neutral" / "n1-07-01-02-53.flac").read_bytes())
    write_speech(tmp_path / "01Neutral" / "n1-07-03-02-53.flac", seconds=0.3, seed=3)
    write_speech(tmp_path / "05Angry" / "x5-01-01-01-01.wav", seconds=0.3)
    scan = scan_corpus("ased", str(tmp_path))
    by_id = {u.utterance_id: u for u in scan.utterances}
    assert set(by_id) == {"ased/s4-04-02-01-29", "ased/n1-07-01-02-53", "ased/n1-07-03-02-53"}
    sad = by_id["ased/s4-04-02-01-29"]
    assert (sad.emotion, sad.raw_label, sad.gender, sad.speaker) == ("sad", "s4", "female", "speaker29")
    assert by_id["ased/n1-07-01-02-53"].gender == "male"
    rejected = {Path(r.uri).name: r.reason for r in scan.rejected}
    assert rejected["n1-07-02-02-53.flac"] == "duplicate: byte-identical to utterance ased/n1-07-01-02-53"
    assert "unknown ASED emotion code 'x5'" in rejected["x5-01-01-01-01.wav"]


def test_turev_names_and_folder_agreement(tmp_path):
    write_speech(tmp_path / "Calm" / "1234_sk_acik.wav", seconds=0.3)
    write_speech(tmp_path / "Angry" / "1157_kz_beste.flac", seconds=0.3)
    write_speech(tmp_path / "Happy" / "1157_hl_beste.wav", seconds=0.3)
    write_speech(tmp_path / "Sad" / "1157_zz_beste.wav", seconds=0.3)
    scan = scan_corpus("turev", str(tmp_path))
    by_id = {u.utterance_id: u for u in scan.utterances}
    assert {k: (u.emotion, u.speaker, u.text) for k, u in by_id.items()} == {
        "turev/1234_sk_acik": ("neutral", "1234", "acik"),
        "turev/1157_kz_beste": ("angry", "1157", "beste"),
    }
    reasons = sorted(r.reason for r in scan.rejected)
    assert "disagrees with the folder 'happy'" in reasons[0] and "unknown TurEV-DB emotion code 'zz'" in reasons[1]


def test_nemo_names(tmp_path):
    write_speech(tmp_path / "samples" / "EB0_anger_10.flac", seconds=0.3)
    write_speech(tmp_path / "samples" / "WR0_surprised_64.wav", seconds=0.3)
    write_speech(tmp_path / "samples" / "XY1_neutral_2.wav", seconds=0.3)
    write_speech(tmp_path / "samples" / "KS0_disgust_4.wav", seconds=0.3)
    scan = scan_corpus("nemo", str(tmp_path))
    by_id = {u.utterance_id: u for u in scan.utterances}
    assert {k: (u.emotion, u.speaker, u.gender, u.text, u.split_group) for k, u in by_id.items()} == {
        "nemo/EB0_anger_10": ("angry", "EB0", "female", "sentence10", "nemo/EB0"),
        "nemo/WR0_surprised_64": ("surprise", "WR0", "male", "sentence64", "nemo/WR0"),
        "nemo/XY1_neutral_2": ("neutral", "XY1", None, "sentence2", "nemo/XY1"),
    }
    assert [r.reason.split(" (")[0] for r in scan.rejected] == ["unknown nEMO emotion 'disgust'"]


@pytest.mark.parametrize("recipe, name", [(emovo, "dis_f1_b1"), (ased, "n1-01-01"), (turev, "abc_kz_word"), (nemo, "EB0-anger-10")])
def test_bad_names_say_the_expected_form(recipe, name):
    with pytest.raises(UnparsableName, match="expected"):
        recipe.parse(f"x/{name}.wav")


@pytest.mark.corpora
def test_shared_multilingual_corpora(shared_corpora):
    emo = scan_corpus("emovo", str(shared_corpora / "emovo"))
    assert len(emo.utterances) == 588 and not emo.rejected
    assert Counter(u.emotion for u in emo.utterances) == {e: 84 for e in ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")}
    asd = scan_corpus("ased", str(shared_corpora / "ased"))
    assert len(asd.utterances) == 2470 and len({u.speaker for u in asd.utterances}) == 65
    assert [r.reason.split(":")[0] for r in asd.rejected] == ["duplicate"] * 4
    tur = scan_corpus("turev", str(shared_corpora / "turev"))
    assert len(tur.utterances) == 1735 and not tur.rejected
    assert set(Counter(u.emotion for u in tur.utterances)) == {"neutral", "happy", "sad", "angry"}
    nem = scan_corpus("nemo", str(shared_corpora / "nemo"))
    assert len(nem.utterances) == 2246 and not nem.rejected
    assert Counter(u.gender for u in nem.utterances) == {"female": 1034, "male": 1212}
    assert set(Counter(u.emotion for u in nem.utterances)) == {"neutral", "happy", "sad", "angry", "fear", "surprise"}
    for scan in (emo, asd, tur, nem):
        splits = assign_splits(scan.utterances)
        groups = {split: {u.split_group for u in scan.utterances if splits[u.utterance_id] == split} for split in set(splits.values())}
        assert set(groups) == {"train", "validation", "test"}
        assert not (groups["train"] & groups["validation"]) and not (groups["train"] & groups["test"])
