"""Corpus recipes on generated trees that follow each corpus's real naming, on S3, and on the shared corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_core.corpora import cremad, csv_manifest, parse_corpus_option, ravdess, scan_corpus, tess
from ser_core.corpora.common import UnparsableName
from tests.audio_factory import write_speech


def test_ravdess_name_fields():
    utt = ravdess.parse("/x/Actor_07/03-01-06-02-01-02-07.wav")
    assert (utt.utterance_id, utt.emotion, utt.raw_label, utt.intensity) == ("ravdess/03-01-06-02-01-02-07", "fear", "fear", "strong")
    assert (utt.speaker, utt.gender, utt.split_group) == ("actor07", "male", "ravdess/actor07")
    assert utt.text == "Kids are talking by the door"
    assert ravdess.parse("a/03-01-02-01-02-01-12.flac").emotion == "neutral"
    assert ravdess.parse("a/03-01-02-01-02-01-12.flac", calm_as="sad").emotion == "sad"
    assert ravdess.parse("a/03-01-02-01-02-01-12.flac").gender == "female"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("03-02-05-01-01-01-01.wav", "song"),
        ("01-01-05-01-01-01-01.wav", "modality"),
        ("03-01-09-01-01-01-01.wav", "emotion code 09"),
        ("03-01-05-03-01-01-01.wav", "intensity"),
        ("recording.wav", "not a RAVDESS name"),
    ],
)
def test_ravdess_rejects_with_reason(name, reason):
    with pytest.raises(UnparsableName, match=reason):
        ravdess.parse(f"Actor_01/{name}")


def test_tess_names_and_case_variants(tmp_path):
    for folder, name in [
        ("OAF_Fear", "OAF_back_fear.wav"),
        ("YAF_pleasant_surprised", "YAF_back_ps.flac"),
        ("OAF_neutral", "OA_bite_neutral.wav"),
        ("YAF_sad", "YAF_read.wav"),
        ("yaf_angry", "YAF_chalk_ANGRY.wav"),
    ]:
        write_speech(tmp_path / folder / name, seconds=0.3)
    scan = scan_corpus("tess", str(tmp_path))
    by_id = {u.utterance_id: u for u in scan.utterances}
    assert set(by_id) == {"tess/OAF_back_fear", "tess/YAF_back_ps", "tess/OAF_bite_neutral", "tess/YAF_chalk_angry"}
    assert by_id["tess/YAF_back_ps"].emotion == "surprise"
    assert by_id["tess/OAF_bite_neutral"].speaker == "OAF"
    assert by_id["tess/OAF_back_fear"].split_group == by_id["tess/YAF_back_ps"].split_group == "tess/word:back"
    assert [(Path(r.uri).name, r.stage) for r in scan.rejected] == [("YAF_read.wav", "manifest")]
    assert "SPEAKER_word_emotion" in scan.rejected[0].reason


def test_cremad_with_demographics(tmp_path):
    (tmp_path / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,"Male","Caucasian","Not Hispanic"\n1002,21,"Female","Caucasian","Not Hispanic"\n'
    )
    for name in ["1001_DFA_ANG_XX.wav", "1002_IEO_HAP_HI.wav", "1002_IEO_CON_HI.wav", "1003_TIE_SAD_LO.wav"]:
        write_speech(tmp_path / "AudioWAV" / name, seconds=0.3)
    scan = scan_corpus("cremad", str(tmp_path / "AudioWAV"))
    by_id = {u.utterance_id: u for u in scan.utterances}
    assert by_id["cremad/1001_DFA_ANG_XX"].gender == "male"
    assert by_id["cremad/1001_DFA_ANG_XX"].intensity is None
    assert by_id["cremad/1002_IEO_HAP_HI"].gender == "female"
    assert by_id["cremad/1002_IEO_HAP_HI"].text == "It's eleven o'clock"
    assert by_id["cremad/1003_TIE_SAD_LO"].gender is None
    assert [r.reason for r in scan.rejected] == ["unknown CREMA-D emotion 'CON': 1002_IEO_CON_HI"]
    assert cremad.parse("x/1050_MTI_FEA_MD.wav").emotion == "fear"


def test_csv_manifest_relative_paths_aliases_and_unknown_labels(tmp_path):
    write_speech(tmp_path / "audio" / "a.wav", seconds=0.3)
    write_speech(tmp_path / "audio" / "b.flac", seconds=0.3)
    write_speech(tmp_path / "audio" / "c.wav", seconds=0.3)
    (tmp_path / "labels.csv").write_text(
        "path,emotion,speaker,gender,corpus\naudio/a.wav,Fearful,spk1,female,calls\naudio/b.flac,happy,spk2,,\naudio/c.wav,contempt,spk1,,\n"
    )
    scan = scan_corpus("manifest", str(tmp_path / "labels.csv"))
    assert [(u.utterance_id, u.emotion, u.corpus, u.gender) for u in scan.utterances] == [
        ("calls/audio/a", "fear", "calls", "female"),
        ("manifest/audio/b", "happy", "manifest", None),
    ]
    assert Path(scan.utterances[0].uri) == tmp_path / "audio" / "a.wav"
    assert [r.reason for r in scan.rejected] == ["unknown emotion label 'contempt'"]


def test_csv_manifest_missing_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\nx.wav,happy\n")
    with pytest.raises(ValueError, match="lacks column"):
        scan_corpus("manifest", str(tmp_path / "m.csv"))


def test_missing_root_and_bad_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_corpus("ravdess", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_corpus_option("ravdess")
    with pytest.raises(ValueError, match="unknown corpus"):
        parse_corpus_option("iemocap=/data")


def test_ravdess_on_s3(s3_bucket, tmp_path):
    import s3fs

    local = write_speech(tmp_path / "03-01-04-01-01-01-02.wav", seconds=0.3)
    fs = s3fs.S3FileSystem()
    fs.put(str(local), f"{s3_bucket}/ravdess/Actor_02/03-01-04-01-01-01-02.wav")
    fs.pipe(f"{s3_bucket}/ravdess/Actor_02/readme.wav", b"x")
    scan = scan_corpus("ravdess", f"{s3_bucket}/ravdess")
    assert [(u.uri, u.emotion) for u in scan.utterances] == [(f"{s3_bucket}/ravdess/Actor_02/03-01-04-01-01-01-02.wav", "sad")]
    assert len(scan.rejected) == 1


@pytest.mark.corpora
def test_shared_corpora_parse_completely(shared_corpora):
    rav = scan_corpus("ravdess", str(shared_corpora / "ravdess"))
    assert len(rav.utterances) == 1200 and not rav.rejected
    assert len({u.speaker for u in rav.utterances}) == 20
    ts = scan_corpus("tess", str(shared_corpora / "tess"))
    assert len(ts.utterances) == 2379 and not ts.rejected
    assert {u.speaker for u in ts.utterances} == {"OAF", "YAF"}
    originals = scan_corpus("tess", str(shared_corpora / "originals" / "tess"))
    assert {u.emotion for u in originals.utterances} == {"fear", "happy"}


@pytest.mark.parametrize("path, why", [
    ("/etc/hosts", "an absolute path"),
    ("C:\\audio\\a.wav", "an absolute path"),
    ("../outside.wav", "a path that climbs out with '..'"),
    ("audio/../../outside.wav", "a path that climbs out with '..'"),
    ("s3://someone-elses-bucket/a.wav", "a URL"),
    ("http://example.com/a.wav", "a URL"),
    ("simplecache::s3://bucket/a.wav", "a URL"),
])
def test_csv_manifest_rows_outside_its_folder_are_rejected_unless_allowed(tmp_path, path, why):
    write_speech(tmp_path / "audio" / "a.wav", seconds=0.3)
    (tmp_path / "labels.csv").write_text(f"path,emotion,speaker\naudio/a.wav,sad,spk1\naudio/../audio/a.wav,sad,spk2\n{path},sad,spk1\n")
    scan = scan_corpus("manifest", str(tmp_path / "labels.csv"))
    assert [u.speaker for u in scan.utterances] == ["spk1", "spk2"]
    assert [(r.uri, r.stage) for r in scan.rejected] == [(path, "manifest")]
    assert scan.rejected[0].reason == f"path is {why}, outside the manifest's folder (allowed only with allow_outside_root)"
    allowed = csv_manifest.scan(str(tmp_path / "labels.csv"), allow_outside_root=True)
    assert len(allowed.utterances) == 3 and not allowed.rejected
