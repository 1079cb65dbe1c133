"""asrc-data validate finds what asrc-decode refuses: segments past their recording (every bad
line of a segments file), byte-order marks and odd spaces in tables, multi-channel audio."""

import numpy as np
import pytest
import soundfile as sf

from asrc.bin.data import main as data_main
from asrc.data.datadir import MAX_SEGMENT_OVERSHOOT, segment_outside, validate_data_dir


def _messages(d, **kwargs):
    return [str(p) for p in validate_data_dir(d, **kwargs)]


@pytest.fixture
def segmented(tmp_path):
    """Recordings r1 (3 s) and r2 (2 s) at 16 kHz, and ``make(segments_lines)`` -> the data dir."""
    d = tmp_path / "seg"
    d.mkdir()
    for rec, seconds in (("r1", 3), ("r2", 2)):
        sf.write(d / f"{rec}.wav", np.zeros(16000 * seconds, np.float32), 16000)
    (d / "wav.scp").write_text(f"r1 {d / 'r1.wav'}\nr2 {d / 'r2.wav'}\n")

    def make(lines):
        (d / "segments").write_text("".join(line + "\n" for line in lines))
        utts = sorted({line.split()[0] for line in lines if line.split()})
        (d / "text").write_text("".join(f"{u} A\n" for u in utts))
        (d / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in utts))
        return d

    return make


def test_segments_past_the_end_of_their_recording(segmented):
    d = segmented([
        "r1-a r1 0.0 3.5",  # 0.5 s past the end: decode allows it (Kaldi's --max-overshoot)
        "r1-b r1 2.0 3.6",  # 0.6 s past: decode refuses it
        "r1-c r1 3.0 -1",  # starts at the end
        "r2-a r2 1.0 -1",
        "r2-b r2 2.5 2.9",  # starts after the end
    ])
    assert _messages(d) == [
        "segments: r1-b: line 2: segment 2-3.6 s ends 0.60 s after the end of recording 'r1' (3.00 s long); "
        "asrc-decode allows at most 0.5 s (Kaldi's extract-segments --max-overshoot)",
        "segments: r1-c: line 3: segment starts at 3 s, at or after the end of recording 'r1' (3.00 s long)",
        "segments: r2-b: line 5: segment starts at 2.5 s, at or after the end of recording 'r2' (2.00 s long)",
    ]
    assert _messages(d, check_audio=False) == []  # lengths come from the audio


def test_every_bad_segments_line_is_reported(segmented):
    d = segmented([
        "r1-a r1 0.0 1.0",
        "r1-b r1 two 3.0",
        "r1-c r1 2.0 1.0",
        "r1-d r3 0.0 1.0",
        "r1-e r1 1.0",
        "r1-a r1 1.0 2.0",
        "r2-a r2 0.0 -1",
    ])
    messages = _messages(d)
    assert [m.split(": ")[1:3] for m in messages] == [
        ["r1-b", "line 2"], ["r1-c", "line 3"], ["r1-d", "line 4"], ["r1-e", "line 5"], ["r1-a", "line 6"],
    ]
    assert "start 'two' / end '3.0' is not a number" in messages[0]
    assert "recording 'r3' is not in wav.scp" in messages[2]
    assert "appears twice (lines 1 and 6)" in messages[4]
    # the utterances of bad lines are not also reported as missing from text and utt2spk


def test_tables_keyed_by_segments_say_so(segmented):
    d = segmented(["r1-a r1 0.0 1.0"])
    (d / "utt2spk").write_text("r1-a r1\nr1-z r1\n")
    assert _messages(d) == ["utt2spk: r1-z: not in segments"]
    (d / "segments").write_text("")
    assert _messages(d) == [f"segments: is empty ({d / 'segments'})"]


@pytest.mark.parametrize("start, end", [(0.0, 3.5), (0.0, 3.50003), (0.0, 3.50004), (0.0, 3.6), (2.99997, -1),
                                        (2.99996, -1), (3.0, 3.2), (1.0, -1), (2.9, 100.0)])
def test_segment_rule_is_the_decoders(start, end):
    torch = pytest.importorskip("torch")  # noqa: F841 (asrc.decode needs it)
    from asrc.decode.jobs import _cut
    from asrc.errors import AsrcError

    audio = np.arange(48000, dtype=np.float32)  # 3 s
    try:
        cut = _cut("u", audio, start, end, "r1")
    except AsrcError:
        cut = None
    assert (segment_outside(start, end, 48000, 16000) is not None) == (cut is None)
    # by the rule itself: starts at or after the end, or ends more than MAX_SEGMENT_OVERSHOOT s after it
    a, b = round(start * 16000), 48000 if end < 0 else round(end * 16000)
    assert (cut is None) == (a >= 48000 or b > 48000 + MAX_SEGMENT_OVERSHOOT * 16000)
    if cut is not None:  # the samples of the segment, clipped at the end of the recording
        assert cut[0] == a and len(cut) == min(b, 48000) - a


@pytest.mark.parametrize("name", ["wav.scp", "text", "utt2spk", "segments"])
def test_byte_order_mark_is_named(segmented, name):
    d = segmented(["r1-a r1 0.0 1.0", "r2-a r2 0.0 1.0"])
    (d / name).write_bytes(b"\xef\xbb\xbf" + (d / name).read_bytes())
    first = (d / name).read_text(encoding="utf-8-sig").split()[0]
    assert _messages(d) == [f"{name}: {first}: line 1 starts with a UTF-8 byte-order mark, which Kaldi tools and asrc "
                            f"read as part of the first id; save the file without it"]


def test_odd_spaces_are_named(segmented):
    d = segmented(["r1-a r1 0.0 1.0", "r2-a r2 0.0 1.0"])
    (d / "utt2spk").write_text("r1-a r1\nr2-a\u00a0r2\n")
    (d / "text").write_text("r1-a A\u2009B\nr2-a A\n")
    assert _messages(d) == [
        "utt2spk: r2-a: line 2: U+00A0 NO-BREAK SPACE after the id, which Kaldi tools do not read as a separator; "
        "use a space or tab",
        "text: r1-a: U+2009 THIN SPACE between the words, which is not a space to Kaldi tools, ESPnet or sclite; "
        "use an ASCII space",
    ]


def test_multi_channel_audio(tmp_path, write_audio, capsys):
    d = tmp_path / "d"
    d.mkdir()
    mono = write_audio(tmp_path / "a" / "s-1.flac", 1600)
    stereo = write_audio(tmp_path / "a" / "s-2.flac", 1600, channels=2)
    (d / "wav.scp").write_text(f"s-1 {mono}\ns-2 {stereo}\n")
    (d / "text").write_text("s-1 A\ns-2 B\n")
    (d / "utt2spk").write_text("s-1 s\ns-2 s\n")
    assert _messages(d) == ["wav.scp: s-2: 2 channels, expected mono (asrc-decode needs --mix-channels to average "
                            "them; asrc-data validate --mix-channels accepts them)"]
    assert _messages(d, mix_channels=True) == []
    assert data_main(["validate", str(d)]) == 1
    assert "s-2: 2 channels" in capsys.readouterr().out
    assert data_main(["validate", str(d), "--mix-channels"]) == 0


@pytest.mark.parametrize("command", ["copy", "combine", "map"])
def test_segmented_directories_are_refused_where_they_would_be_copied_wrong(segmented, tmp_path, command):
    """copy / combine / an audio transform read wav.scp entries as utterances: on a directory
    with segments they dropped the segments file and wrote recordings as utterances (exit 0)."""
    from asrc.data.augment import map_data_dir
    from asrc.data.datadir import combine_data_dirs, copy_data_dir
    from asrc.errors import AsrcError

    d = segmented(["r1-a r1 0.0 1.0", "r2-a r2 0.0 1.0"])
    out = tmp_path / "out"
    with pytest.raises(AsrcError, match=f"{d}/segments: .*without segments"):
        if command == "copy":
            copy_data_dir(d, out, prefix="x-")
        elif command == "combine":
            combine_data_dirs(out, [d, d.parent / "other"])
        else:
            map_data_dir(d, out, lambda _u, a: a)
    assert not out.exists()
    assert data_main(["copy", str(d), str(out), "--prefix", "x-"]) == 1 and not out.exists()
