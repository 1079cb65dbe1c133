"""asrc-decode on a Kaldi data directory with a ``segments`` file: the same output as decoding
the segments cut into files of their own, each recording read once per job, and one-line errors
for segments that do not fit."""

import numpy as np
import pytest
import soundfile as sf

from asrc.core.audio import read_audio
from asrc.decode.decode_dir import decode_dir
from asrc.decode.options import DecodeOptions
from asrc.errors import AsrcError

SEGMENTS = [("r1-a", "r1", 0.0, 1.0), ("r1-b", "r1", 1.2, 2.9), ("r2-a", "r2", 0.5, -1),
            ("r2-b", "r2", 0.0, 0.8), ("r1-c", "r1", 2.5, 3.3)]  # r1-c ends 0.3 s past r1: clamped


@pytest.fixture
def recordings(tmp_path, make_wav):
    wav = tmp_path / "wav"
    wav.mkdir()
    return {"r1": make_wav(wav / "r1.wav", 48000, seed=1), "r2": make_wav(wav / "r2.wav", 32000, seed=2)}


def segmented_dir(tmp_path, recordings, segments=SEGMENTS, name="seg"):
    d = tmp_path / name
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"{r} {p}\n" for r, p in recordings.items()))
    (d / "segments").write_text("".join(f"{u} {r} {a} {b}\n" for u, r, a, b in segments))
    return d


def cut_dir(tmp_path, recordings):
    """The same segments as files of their own."""
    d = tmp_path / "cut"
    (d / "wav").mkdir(parents=True)
    lines = []
    for u, r, a, b in SEGMENTS:
        audio = read_audio(str(recordings[r]))
        piece = audio[int(round(a * 16000)):(None if b < 0 else int(round(b * 16000)))]
        sf.write(d / "wav" / f"{u}.wav", piece, 16000, subtype="FLOAT")
        lines.append(f"{u} {d / 'wav' / f'{u}.wav'}\n")
    (d / "wav.scp").write_text("".join(lines))
    return d


@pytest.mark.parametrize("nj", [1, 2])
def test_segments_decode_as_the_cut_files_do(tmp_path, model_dir, recordings, nj):
    seg = segmented_dir(tmp_path, recordings)
    decode_dir(seg, model_dir, tmp_path / "out_seg", DecodeOptions(nj=nj, batch_seconds=2.0))
    decode_dir(cut_dir(tmp_path, recordings), model_dir, tmp_path / "out_cut", DecodeOptions())
    for name in ("text", "token"):
        assert (tmp_path / "out_seg" / name).read_text() == (tmp_path / "out_cut" / name).read_text()
    ids = [line.split()[0] for line in (tmp_path / "out_seg" / "text").read_text().splitlines()]
    assert ids == [u for u, *_ in SEGMENTS]  # segments order


def test_changed_segments_are_decoded_again(tmp_path, model_dir, recordings):
    seg = segmented_dir(tmp_path, recordings)
    out = tmp_path / "out"
    decode_dir(seg, model_dir, out, DecodeOptions())
    before = (out / "jobs" / "1" / "done").read_text()
    (seg / "segments").write_text("".join(f"{u} {r} {a} {b if b != 1.0 else 1.5}\n" for u, r, a, b in SEGMENTS))
    decode_dir(seg, model_dir, out, DecodeOptions())
    assert (out / "jobs" / "1" / "done").read_text() != before


@pytest.mark.parametrize("line,message", [
    ("u1 r1 0.0\n", "expected 'utterance recording start end'"),
    ("u1 r1 zero 1.0\n", "is not a number"),
    ("u1 r1 1.0 0.5\n", "do not make a segment"),
    ("u1 r1 -0.5 0.5\n", "do not make a segment"),
    ("u1 r9 0.0 1.0\n", "recording 'r9' is not in wav.scp"),
    ("u1 r1 0.0 1.0\nu1 r1 1.0 2.0\n", "segment u1 appears twice"),
])
def test_bad_segments_lines_name_file_and_line(tmp_path, model_dir, recordings, line, message):
    d = segmented_dir(tmp_path, recordings, segments=[])
    (d / "segments").write_text(line)
    with pytest.raises(AsrcError, match=message) as e:
        decode_dir(d, model_dir, tmp_path / "out", DecodeOptions())
    assert str(d / "segments") + ":" in str(e.value)


def test_segment_outside_its_recording(tmp_path, model_dir, recordings, capsys):
    from asrc.bin import decode as cli

    d = segmented_dir(tmp_path, recordings, segments=[("u1", "r2", 1.0, 3.0)])  # r2 is 2 s long
    assert cli.main(["--model", str(model_dir), "--data", str(d), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "utterance u1: segment 1-3 s is outside its recording" in err and "Traceback" not in err


def test_empty_segments_file(tmp_path, model_dir, recordings):
    d = segmented_dir(tmp_path, recordings, segments=[])
    with pytest.raises(AsrcError, match="segments is empty"):
        decode_dir(d, model_dir, tmp_path / "out", DecodeOptions())


def test_ctm_on_the_recordings_clock(tmp_path, model_dir, recordings):
    seg = segmented_dir(tmp_path, recordings)
    out = tmp_path / "out"
    decode_dir(seg, model_dir, out, DecodeOptions(nj=2))
    ctm = [line.split() for line in (out / "ctm").read_text().splitlines()]
    texts = dict(line.split(" ", 1) if " " in line else (line, "") for line in (out / "text").read_text().splitlines())
    assert ctm and all(len(x) == 6 and x[0] in ("r1", "r2") and x[1] == "1" for x in ctm)
    assert len(ctm) == sum(len(t.split()) for t in texts.values())
    bounds = {u: (a, 3.0 if r == "r1" else 2.0) if b < 0 else (a, b) for u, r, a, b in SEGMENTS}
    for x in ctm:
        start, dur, conf = float(x[2]), float(x[3]), float(x[5])
        assert 0 < conf <= 1 and dur >= 0
        # inside one of its recording's segments
        assert any(r == x[0] and bounds[u][0] - 0.01 <= start <= bounds[u][1] + 0.01 for u, r, *_ in SEGMENTS)
    assert [(x[0], float(x[2])) for x in ctm] == sorted((x[0], float(x[2])) for x in ctm)


def test_ctm_without_segments_and_old_jobs_redone(tmp_path, model_dir, data_dir):
    out = tmp_path / "out"
    decode_dir(data_dir, model_dir, out, DecodeOptions())
    words = {line.split()[0]: line.split()[1:] for line in (out / "text").read_text().splitlines()}
    ctm = [line.split() for line in (out / "ctm").read_text().splitlines()]
    for u, w in words.items():
        assert [x[4] for x in ctm if x[0] == u] == w  # the text's words, in order
    (out / "jobs" / "1" / "ctm").unlink()  # as a job decoded by an asrc without CTM left it
    (out / "ctm").unlink()
    decode_dir(data_dir, model_dir, out, DecodeOptions())
    assert (out / "ctm").read_text() == "".join(" ".join(x) + "\n" for x in ctm)
