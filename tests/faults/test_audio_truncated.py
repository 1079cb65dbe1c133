"""Truncated audio (header promises more samples than the file holds) is never read silently."""

import numpy as np
import pytest
import soundfile as sf

from asrc.bin.data import main as data_main
from asrc.core.audio import read_audio
from asrc.errors import AsrcError


def write(path, n=16000, fmt="WAV", seed=0):
    x = np.random.default_rng(seed).normal(0, 1000, n).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, 16000, format=fmt, subtype="PCM_16")
    return path


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_data_dir(root, audio):
    """A data dir over ``{utt: path}``; utt2num_samples as the (intact) files were written: 16000 each."""
    d = root / "data"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(audio.items())))
    (d / "text").write_text("".join(f"{u} A B\n" for u in sorted(audio)))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in sorted(audio)))
    (d / "utt2num_samples").write_text("".join(f"{u} 16000\n" for u in sorted(audio)))
    return d


def test_read_audio_truncated_wav_names_utterance(tmp_path):
    path = truncate(write(tmp_path / "a.wav"))
    with pytest.raises(AsrcError) as e:
        read_audio(str(path), what="utterance u1")
    assert str(e.value) == (f"utterance u1: cannot read audio: {path}: truncated WAV: the header promises 16000 "
                            f"samples, the file holds 7989")


def test_read_audio_truncated_flac_names_utterance(tmp_path):
    path = truncate(write(tmp_path / "a.flac", fmt="FLAC"), keep=0.8)
    with pytest.raises(AsrcError, match=rf"^utterance u1: cannot read audio from '{path}': .*the header promises "
                                        r"16000 samples: truncated or corrupt\?\)$"):
        read_audio(str(path), what="utterance u1")


def test_read_audio_fails_when_the_decoder_stops_short(tmp_path, monkeypatch):
    # Some libsndfile builds return the frames they could decode without an error.
    path = write(tmp_path / "a.flac", fmt="FLAC")
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: real_read(self, *a, **k)[:-100])
    with pytest.raises(AsrcError, match=rf"^utterance u1: {path} is truncated: its header promises 16000 samples, "
                                        r"only 15900 could be read$"):
        read_audio(str(path), what="utterance u1")


def test_read_audio_truncated_sphere(tmp_path):
    path = truncate(write(tmp_path / "a.sph", fmt="NIST"))
    with pytest.raises(AsrcError, match=rf"utterance u1: cannot read audio: {path}: truncated SPHERE file"):
        read_audio(str(path), what="utterance u1")


def test_validate_reports_truncated_files(tmp_path, capsys):
    audio = {
        "u1": write(tmp_path / "a" / "u1.flac", fmt="FLAC"),
        "u2": truncate(write(tmp_path / "a" / "u2.wav")),
        "u3": truncate(write(tmp_path / "a" / "u3.flac", fmt="FLAC"), keep=0.9),
        "u4": write(tmp_path / "a" / "u4.wav"),
    }
    d = make_data_dir(tmp_path, audio)
    for deep in ([], ["--deep"]):
        assert data_main(["validate", str(d), *deep]) == 1
        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert lines[0] == (f"{d}: wav.scp: u2: unreadable audio: {audio['u2']}: truncated WAV: the header promises "
                            f"16000 samples, the file holds 7989")
        assert lines[1].startswith(f"{d}: wav.scp: u3: {audio['u3']}: truncated or corrupt: decoding fails")
        assert "16000 samples its header promises" in lines[1]
        assert len(lines) == 2 and f"{d}: 2 problem(s)" in err
    intact = make_data_dir(tmp_path / "intact", {u: audio[u] for u in ("u1", "u4")})
    assert data_main(["validate", str(intact), "--deep"]) == 0


def test_validate_deep_runs_pipes(tmp_path, capsys):
    good, bad = write(tmp_path / "good.flac", fmt="FLAC"), truncate(write(tmp_path / "bad.flac", fmt="FLAC"), 0.7)
    d = make_data_dir(tmp_path, {"u1": f"cat {good} |", "u2": f"cat {bad} |", "u3": "echo oops >&2; exit 3 |"})
    assert data_main(["validate", str(d)]) == 0  # pipes are run only when asked
    capsys.readouterr()
    assert data_main(["validate", str(d), "--deep"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{d}: wav.scp: u2: the pipe: cannot read audio from 'cat {bad} |'")
    assert lines[1] == f"{d}: wav.scp: u3: the pipe: command 'echo oops >&2; exit 3' failed (exit 3): oops"


@pytest.mark.parametrize("fmt, suffix", [("FLAC", ".flac"), ("WAV", ".wav")])
def test_prepare_librispeech_skips_truncated_files(tmp_path, fmt, suffix):
    from asrc.data.librispeech import prepare_librispeech

    chap = tmp_path / "LibriSpeech" / "dev-clean" / "19" / "198"
    for i in range(3):
        write(chap / f"19-198-{i:04d}{suffix}", n=8000 + 1000 * i, fmt=fmt, seed=i)
    (chap / "19-198.trans.txt").write_text("19-198-0000 HELLO\n19-198-0001 CUT SHORT\n19-198-0002 WORLD\n")
    truncate(chap / f"19-198-0001{suffix}", keep=0.6)
    d = prepare_librispeech(tmp_path / "LibriSpeech", tmp_path / "data", progress=False, nj=1)["dev_clean"]
    assert (d / "text").read_text() == "19-198-0000 HELLO\n19-198-0002 WORLD\n"
    assert (d / "utt2num_samples").read_text() == "19-198-0000 8000\n19-198-0002 10000\n"
    (utt, reason), = [line.split("\t") for line in (d / "skipped.txt").read_text().splitlines()]
    assert utt == "19-198-0001" and f"{chap}/19-198-0001{suffix}: truncated" in reason
    assert "9000 samples" in reason


@pytest.mark.parametrize("fmt,subtype,suffix", [
    ("AIFF", "PCM_16", "aiff"), ("W64", "PCM_16", "w64"), ("AU", "PCM_16", "au"), ("OGG", "OPUS", "opus"),
    ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"),
])
def test_formats_libsndfile_reads_cut_short_are_errors(tmp_path, fmt, subtype, suffix):
    """libsndfile reads the part of a cut AIFF / AU / W64 / Opus / MP3 file that is there without
    a word (measured); asrc compares with what the file states (header, Ogg's end-of-stream
    page, an MP3 VBR/Info header) and names the file."""
    x = (0.3 * np.sin(np.arange(64000) / 10)).astype(np.float32)
    path = tmp_path / f"a.{suffix}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    assert len(read_audio(str(path))) == 64000
    for keep in (0.5, 0.9, 0.99):
        cut = tmp_path / f"cut{keep}.{suffix}"
        cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        with pytest.raises(AsrcError, match=rf"cut{keep}.{suffix}") as e:
            read_audio(str(cut))
        assert "\n" not in str(e.value)


def test_validate_reports_a_cut_aiff_and_opus(tmp_path, capsys):
    x = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    audio = {}
    for utt, (fmt, subtype, suffix) in {"u1": ("AIFF", "PCM_16", "aiff"), "u2": ("OGG", "OPUS", "opus")}.items():
        path = tmp_path / f"{utt}.{suffix}"
        sf.write(path, x, 16000, format=fmt, subtype=subtype)
        audio[utt] = truncate(path, 0.9)
    d = make_data_dir(tmp_path, audio)
    assert data_main(["validate", str(d)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert "u1.aiff: truncated: the header promises 16000 samples" in text
    assert "wav.scp: u2: " in text and "u2.opus" in text  # malformed, or no last page, by where it was cut
