"""Kaldi tables and the audio they point at: tabs are valid; every fault is one line naming
the file, the line and the utterance."""

import numpy as np
import pytest
import soundfile as sf

from asrc.bin.data import main as data_main
from asrc.core.audio import read_audio
from asrc.core.tables import read_data_dir, read_table
from asrc.data.datadir import validate_data_dir
from asrc.errors import AsrcError


def write_wav(path, n=1600, seed=0):
    x = np.random.default_rng(seed).normal(0, 1000, n).astype(np.int16)
    sf.write(path, x, 16000, subtype="PCM_16")
    return path


def make_data_dir(root, sep=" "):
    """Three utterances u1..u3 of 1600/1700/1800 samples, tables separated by ``sep``."""
    d = root / "data"
    d.mkdir()
    paths = {f"u{i}": write_wav(root / f"u{i}.wav", 1500 + 100 * i, seed=i) for i in (1, 2, 3)}
    (d / "wav.scp").write_text("".join(f"{u}{sep}{p}\n" for u, p in paths.items()))
    (d / "text").write_text("".join(f"{u}{sep}HELLO  WORLD\n" for u in paths))
    (d / "utt2spk").write_text("".join(f"{u}{sep}{u}\n" for u in paths))
    (d / "spk2utt").write_text("".join(f"{u}{sep}{u}\n" for u in paths))
    (d / "utt2num_samples").write_text("".join(f"{u}{sep}{1500 + 100 * int(u[1:])}\n" for u in paths))
    return d, paths


@pytest.mark.parametrize("sep", ["\t", " \t ", "  "])
def test_any_whitespace_separates_key_and_value(tmp_path, sep, capsys):
    d, paths = make_data_dir(tmp_path, sep)
    assert read_table(d / "wav.scp") == {u: str(p) for u, p in paths.items()}
    assert read_table(d / "text")["u2"] == "HELLO  WORLD"  # the value is kept as it is
    assert validate_data_dir(d) == []
    assert data_main(["validate", str(d)]) == 0
    assert [u.num_samples for u in read_data_dir(d)] == [1600, 1700, 1800]


def _one_line_error(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_duplicate_id_in_wav_scp(tmp_path, capsys):
    d, paths = make_data_dir(tmp_path)
    with open(d / "wav.scp", "a") as f:
        f.write(f"u1 {paths['u2']}\n")
    with pytest.raises(AsrcError) as e:
        read_table(d / "wav.scp")
    assert _one_line_error(e) == f"{d}/wav.scp:4: id 'u1' occurs twice (lines 1 and 4)"
    assert data_main(["validate", str(d)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{d}: wav.scp: u1: duplicate id (lines 1 and 4)"]


def test_blank_line(tmp_path, capsys):
    d, _ = make_data_dir(tmp_path)
    lines = (d / "wav.scp").read_text().splitlines(True)
    (d / "wav.scp").write_text(lines[0] + "\n" + "".join(lines[1:]))
    with pytest.raises(AsrcError) as e:
        read_table(d / "wav.scp")
    assert _one_line_error(e).startswith(f"{d}/wav.scp:2: blank line")
    assert data_main(["validate", str(d)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{d}: wav.scp: line 2 is blank"]


def test_directory_where_a_file_belongs(tmp_path, capsys):
    d, paths = make_data_dir(tmp_path)
    (d / "text").unlink()
    (d / "text").mkdir()
    with pytest.raises(AsrcError) as e:
        read_table(d / "text")
    assert _one_line_error(e) == f"{d}/text: is a directory, not a table file"
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    (d / "wav.scp").write_text((d / "wav.scp").read_text().replace(str(paths["u2"]), str(folder)))
    with pytest.raises(AsrcError) as e:
        read_audio(str(folder), what="utterance u2")
    assert _one_line_error(e) == f"utterance u2: {folder} is a directory, not an audio file"
    assert data_main(["validate", str(d)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{d}: text: is a directory, not a table file ({d}/text)",
        f"{d}: wav.scp: u2: unreadable audio: {folder}: is a directory, not an audio file",
    ]


def test_empty_and_missing_audio(tmp_path, capsys):
    d, paths = make_data_dir(tmp_path)
    paths["u1"].write_bytes(b"")
    paths["u3"].unlink()
    with pytest.raises(AsrcError) as e:
        read_audio(str(paths["u1"]), what="utterance u1")
    assert _one_line_error(e) == f"utterance u1: {paths['u1']} is empty (0 bytes)"
    with pytest.raises(FileNotFoundError) as e:
        read_audio(str(paths["u3"]), what="utterance u3")
    assert _one_line_error(e) == f"utterance u3: audio file {paths['u3']} does not exist"
    assert data_main(["validate", str(d)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{d}: wav.scp: u1: unreadable audio: {paths['u1']}: empty file",
        f"{d}: wav.scp: u3: audio file missing: {paths['u3']}",
    ]


def test_failing_pipe_is_one_line(tmp_path):
    cmd = "echo 'sox FAIL formats: cannot open input file' >&2; echo 'second line' >&2; exit 2"
    with pytest.raises(AsrcError) as e:
        read_audio(f"{cmd} |", what="utterance u4")
    assert _one_line_error(e) == (f"utterance u4: command {cmd!r} failed (exit 2): "
                                  "sox FAIL formats: cannot open input file second line")
    with pytest.raises(AsrcError) as e:
        read_audio("true |", what="utterance u5")
    assert _one_line_error(e) == "utterance u5: command 'true' wrote no audio to stdout"


def test_calibration_and_decoding_read_tab_separated_wav_scp(tmp_path):
    from asrc.core.audio import read_waveforms

    d, _ = make_data_dir(tmp_path, "\t")
    waves, info = read_waveforms(d)
    assert [w.numel() for w in waves] == [1600, 1700, 1800]


def test_byte_order_mark_is_named_by_every_reader(tmp_path):
    """A table saved with a UTF-8 byte-order mark (Windows editors do that) would hide it inside
    the first id: asrc-decode, asrc-score and training read tables through read_table."""
    table = tmp_path / "wav.scp"
    table.write_bytes(b"\xef\xbb\xbfu1 /a.wav\nu2 /b.wav\n")
    with pytest.raises(AsrcError, match=r"wav.scp:1: starts with a UTF-8 byte-order mark, .* id 'u1'") as e:
        read_table(table)
    assert "\n" not in str(e.value)
