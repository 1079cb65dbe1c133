import shutil

import numpy as np
import pytest
import soundfile as sf

from asrc.core.audio_info import AudioHeaderError, audio_info, read_header_info
from asrc.core.tables import Utterance, read_data_dir, read_table
from asrc.data.datadir import combine_data_dirs, copy_data_dir, validate_data_dir, write_data_dir
from asrc.data.tokens import letter_tokens



@pytest.mark.parametrize(
    "fmt, subtype, rate, channels",
    [
        ("FLAC", "PCM_16", 16000, 1),
        ("FLAC", "PCM_24", 8000, 2),
        ("WAV", "PCM_16", 16000, 1),
        ("WAV", "FLOAT", 22050, 2),
        ("WAVEX", "PCM_16", 16000, 1),
        ("NIST", "PCM_16", 16000, 1),
        ("OGG", "VORBIS", 16000, 1),  # no fast parser: soundfile fallback
    ],
)
def test_audio_info_matches_soundfile(tmp_path, fmt, subtype, rate, channels):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, np.zeros((1234, channels), np.float32), rate, format=fmt, subtype=subtype)
    info = audio_info(path)
    ref = sf.info(str(path))
    assert (info.sample_rate, info.num_samples, info.channels) == (ref.samplerate, ref.frames, ref.channels)
    assert info.duration == pytest.approx(ref.frames / ref.samplerate)
    if fmt != "OGG":
        assert read_header_info(path) == info  # answered from the header alone


def test_audio_info_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.flac"):
        audio_info(tmp_path / "nope.flac")
    (tmp_path / "trunc.flac").write_bytes(b"fLaC\x00\x00\x00\x22" + b"\x00" * 10)
    with pytest.raises(AudioHeaderError, match="trunc.flac.*truncated FLAC"):
        audio_info(tmp_path / "trunc.flac")
    (tmp_path / "text.wav").write_text("this is not audio at all")
    with pytest.raises(AudioHeaderError, match="text.wav"):
        audio_info(tmp_path / "text.wav")
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(AudioHeaderError, match="empty.flac: empty file"):
        audio_info(tmp_path / "empty.flac")


def _utts(tmp_path, write_audio):
    specs = [
        ("spkB-2", "spkB", 800, "GOOD BYE"),
        ("spkA-1", "spkA", 1600, "HELLO WORLD"),
        ("spkA-2", "spkA", 2000, "IT'S ME"),
    ]
    return [
        Utterance(u, s, str(write_audio(tmp_path / "audio" / f"{u}.flac", n)), t, n, 16000) for u, s, n, t in specs
    ]


def test_write_data_dir_is_sorted_and_complete(tmp_path, write_audio):
    utts = _utts(tmp_path, write_audio)
    out = write_data_dir(tmp_path / "data", utts, skipped=[("spkC-1", "unreadable audio: x")])
    audio = tmp_path / "audio"
    assert (out / "wav.scp").read_text() == (
        f"spkA-1 {audio}/spkA-1.flac\nspkA-2 {audio}/spkA-2.flac\nspkB-2 {audio}/spkB-2.flac\n"
    )
    assert (out / "text").read_text() == "spkA-1 HELLO WORLD\nspkA-2 IT'S ME\nspkB-2 GOOD BYE\n"
    assert (out / "utt2spk").read_text() == "spkA-1 spkA\nspkA-2 spkA\nspkB-2 spkB\n"
    assert (out / "spk2utt").read_text() == "spkA spkA-1 spkA-2\nspkB spkB-2\n"
    assert (out / "utt2dur").read_text() == "spkA-1 0.1000\nspkA-2 0.1250\nspkB-2 0.0500\n"
    assert (out / "utt2num_samples").read_text() == "spkA-1 1600\nspkA-2 2000\nspkB-2 800\n"
    assert (out / "skipped.txt").read_text() == "spkC-1\tunreadable audio: x\n"
    assert validate_data_dir(out, token_list=letter_tokens()) == []
    assert read_data_dir(out) == sorted(utts)
    assert read_table(out / "text")["spkA-2"] == "IT'S ME"


def test_write_data_dir_rejects_bad_utterances(tmp_path, write_audio):
    good = _utts(tmp_path, write_audio)[0]
    with pytest.raises(ValueError, match="duplicate utterance id 'spkB-2'"):
        write_data_dir(tmp_path / "d", [good, good])
    with pytest.raises(ValueError, match="'spkB-2' has an empty transcript"):
        write_data_dir(tmp_path / "d", [good._replace(text=" ")])
    with pytest.raises(ValueError, match="'x-1' .*does not start with its speaker 'spkB'"):
        write_data_dir(tmp_path / "d", [good._replace(utt_id="x-1")])
    assert not (tmp_path / "d" / "wav.scp").exists()


def _valid_dir(tmp_path, write_audio):
    return write_data_dir(tmp_path / "data", _utts(tmp_path, write_audio))


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def _messages(data_dir, **kwargs):
    return [str(p) for p in validate_data_dir(data_dir, **kwargs)]


def test_validate_unsorted(tmp_path, write_audio):
    d = _valid_dir(tmp_path, write_audio)
    lines = (d / "text").read_text().splitlines(True)
    (d / "text").write_text(lines[1] + lines[0] + lines[2])
    assert _messages(d) == ["text: spkA-1: not sorted in C byte order: line 2 comes after 'spkA-2' "
                            "(1 line(s) out of order; sort with LC_ALL=C sort)"]


def test_validate_duplicate_and_inconsistent_ids(tmp_path, write_audio):
    d = _valid_dir(tmp_path, write_audio)
    _edit(d / "text", "spkB-2 GOOD BYE\n", "spkB-2 GOOD BYE\nspkB-2 AGAIN\nspkB-3 EXTRA\n")
    _edit(d / "utt2spk", "spkA-2 spkA\n", "")
    messages = _messages(d)
    assert "text: spkB-2: duplicate id (lines 3 and 4)" in messages
    assert "text: spkB-3: not in wav.scp" in messages
    assert "utt2spk: spkA-2: in wav.scp but missing here" in messages
    assert "spk2utt: spkA: utterance list differs from utt2spk" in messages


def test_validate_audio_faults(tmp_path, write_audio):
    d = _valid_dir(tmp_path, write_audio)
    audio = tmp_path / "audio"
    (audio / "spkA-1.flac").unlink()
    (audio / "spkA-2.flac").write_bytes(b"garbage, not a FLAC file at all")
    write_audio(audio / "spkB-2.flac", 400, sample_rate=8000)  # 0.05 s at 8 kHz
    messages = _messages(d)
    assert f"wav.scp: spkA-1: audio file missing: {audio}/spkA-1.flac" in messages
    assert any(m.startswith("wav.scp: spkA-2: unreadable audio:") and "spkA-2.flac" in m for m in messages)
    assert "wav.scp: spkB-2: sample rate 8000 Hz, expected 16000 Hz" in messages
    assert "utt2num_samples: spkB-2: says 800 samples, the audio has 400" in messages
    assert len(messages) == 4
    assert _messages(d, check_audio=False) == []


def test_validate_text_faults(tmp_path, write_audio):
    d = _valid_dir(tmp_path, write_audio)
    _edit(d / "text", "spkA-1 HELLO WORLD", "spkA-1")
    _edit(d / "text", "IT'S ME", "it's me!")
    assert _messages(d, token_list=letter_tokens()) == [
        "text: spkA-1: empty transcript",
        "text: spkA-2: characters not in the token list: '!eimst'",
    ]


def test_validate_missing_files_and_speaker_order(tmp_path, write_audio):
    d = _valid_dir(tmp_path, write_audio)
    (d / "utt2spk").write_text("spkA-1 zed\nspkA-2 spkA\nspkB-2 spkB\n")
    (d / "spk2utt").write_text("spkA spkA-2\nspkB spkB-2\nzed spkA-1\n")
    (d / "utt2dur").write_text("spkA-1 0.1000\nspkA-2 -1\nspkB-2 0.0500\n")
    messages = _messages(d)
    assert messages[0].startswith("utt2spk: spkA-1: sorting by speaker does not keep the utterance order")
    assert "utt2dur: spkA-2: not a positive float: '-1'" in messages
    (d / "text").unlink()
    assert "text: missing" in _messages(d)[0]
    assert _messages(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: not a directory"]


def test_combine(tmp_path, write_audio):
    utts = _utts(tmp_path, write_audio)
    a = write_data_dir(tmp_path / "a", utts[1:], skipped=[("spkA-9", "reason a")])
    b = write_data_dir(tmp_path / "b", utts[:1], skipped=[])
    out = combine_data_dirs(tmp_path / "all", [b, a])
    whole = write_data_dir(tmp_path / "whole", utts)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "utt2num_samples"):
        assert (out / name).read_text() == (whole / name).read_text(), name
    assert (out / "skipped.txt").read_text() == "spkA-9\treason a\n"
    assert validate_data_dir(out) == []
    with pytest.raises(ValueError, match=f"'spkA-1' is in both {a}/wav.scp and {tmp_path}/a2/wav.scp"):
        shutil.copytree(a, tmp_path / "a2")
        combine_data_dirs(tmp_path / "dup", [a, tmp_path / "a2"])
    (a / "text").write_text("spkA-2 IT'S ME\nspkA-1 HELLO WORLD\n")
    with pytest.raises(ValueError, match="not sorted"):
        combine_data_dirs(tmp_path / "bad", [a, b])
    # a source without text: refused before anything is written (a partial folder was left)
    (a / "text").unlink()
    with pytest.raises(FileNotFoundError, match=f"text missing in {a}; --untranscribed-ok"):
        combine_data_dirs(tmp_path / "partial", [b, a])
    assert not (tmp_path / "partial").exists()


def test_copy_with_prefix_combines_with_its_source(tmp_path, write_audio):
    utts = _utts(tmp_path, write_audio)
    src = write_data_dir(tmp_path / "src", utts, skipped=[("spkA-9", "reason")])
    copy = copy_data_dir(src, tmp_path / "rep1", "rep1-")
    assert validate_data_dir(copy) == []
    assert read_table(copy / "utt2spk") == {"rep1-spkA-1": "rep1-spkA", "rep1-spkA-2": "rep1-spkA",
                                             "rep1-spkB-2": "rep1-spkB"}
    assert read_table(copy / "spk2utt")["rep1-spkA"] == "rep1-spkA-1 rep1-spkA-2"
    assert read_table(copy / "wav.scp")["rep1-spkB-2"] == read_table(src / "wav.scp")["spkB-2"]
    assert read_table(copy / "text")["rep1-spkA-2"] == "IT'S ME"
    assert (copy / "skipped.txt").read_text() == "rep1-spkA-9\treason\n"
    both = combine_data_dirs(tmp_path / "both", [src, copy])
    assert validate_data_dir(both) == []
    assert len(read_table(both / "wav.scp")) == 6
    with pytest.raises(ValueError, match="whitespace"):
        copy_data_dir(src, tmp_path / "bad", "a b")
    with pytest.raises(ValueError, match="is the source"):
        copy_data_dir(src, src, "x-")


def test_untranscribed_copy_and_combine(tmp_path, write_audio, capsys):
    from asrc.bin.data import main

    utts = _utts(tmp_path, write_audio)
    src = write_data_dir(tmp_path / "src", utts)
    audio_only = copy_data_dir(src, tmp_path / "u", "u-", drop_text=True)
    assert not (audio_only / "text").exists()
    assert validate_data_dir(audio_only, require_text=False) == []
    assert validate_data_dir(audio_only) != []
    mixed = combine_data_dirs(tmp_path / "mixed", [src, audio_only], untranscribed_ok=True)
    assert read_table(mixed / "text") == read_table(src / "text")
    assert len(read_table(mixed / "wav.scp")) == 6
    assert validate_data_dir(mixed, require_text=False) == []
    with pytest.raises(FileNotFoundError, match="text missing"):
        combine_data_dirs(tmp_path / "strict", [src, audio_only])
    assert main(["combine", "--untranscribed-ok", str(tmp_path / "m2"), str(src), str(audio_only)]) == 0
    assert "6 utterances, 3 untranscribed" in capsys.readouterr().out
    assert main(["validate", "--no-audio", str(tmp_path / "m2")]) == 1
    assert main(["validate", "--no-audio", "--untranscribed-ok", str(tmp_path / "m2")]) == 0


def test_sample_rate_from_rounded_durations():
    from asrc.core.tables import _rate_from_duration

    assert _rate_from_duration(9994, "0.6246") == 16000  # 16000.6 Hz before the rounding interval
    assert _rate_from_duration(17360, "1.0850") == 16000
    assert _rate_from_duration(10348, "0.6468") == 16000  # 0.64675 s rounded half-up: the edge
    assert _rate_from_duration(8000, "1.00") == 8000
    assert _rate_from_duration(16000, "1.0") == 16000
    assert _rate_from_duration(15000, "1.0000") == 15000  # no common rate fits: nearest Hz
    assert _rate_from_duration(100, "0") == 0


def test_validate_segments(tmp_path):
    """Kaldi's segments: wav.scp keyed by recording, the other tables by the segments' utterances."""
    d = tmp_path / "seg"
    d.mkdir()
    sf.write(d / "r1.wav", np.zeros(48000, np.float32), 16000)
    (d / "wav.scp").write_text(f"r1 {d / 'r1.wav'}\n")
    (d / "segments").write_text("r1-a r1 0.0 1.0\nr1-b r1 1.0 -1\n")
    (d / "text").write_text("r1-a A\nr1-b B\n")
    (d / "utt2spk").write_text("r1-a r1\nr1-b r1\n")
    assert validate_data_dir(d) == []
    (d / "utt2spk").write_text("r1 r1\n")  # keyed by the recording: wrong with segments
    assert {p.utt_id for p in validate_data_dir(d) if p.file == "utt2spk"} == {"r1", "r1-a", "r1-b"}
    (d / "utt2spk").write_text("r1-a r1\nr1-b r1\n")
    (d / "segments").write_text("r1-a r1 0.0 1.0\nr1-b r2 1.0 2.0\n")
    (problem,) = validate_data_dir(d)
    assert problem.file == "segments" and "recording 'r2' is not in wav.scp" in problem.message
