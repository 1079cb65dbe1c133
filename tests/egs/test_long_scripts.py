"""egs/an4/local/pad_noise.py and concat_long.py (stage 19's test sets) on a tiny data directory."""

import numpy as np
import pytest
import soundfile as sf
from recipe_copy import load_local_script

from asrc.core.tables import read_table
from asrc.data.datadir import validate_data_dir

RATE = 16000


@pytest.fixture()
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(tmp_path / f"u{i}.wav", (0.2 * rng.standard_normal(RATE * (i + 1))).astype(np.float32), RATE,
                 subtype="PCM_16")
    order = (0, 2, 1)  # ids s0-u0 s0-u2 s1-u1: sorted
    (d / "wav.scp").write_text("".join(f"s{i % 2}-u{i} {tmp_path}/u{i}.wav\n" for i in order))
    (d / "text").write_text("".join(f"s{i % 2}-u{i} W{i} X\n" for i in order))
    (d / "utt2spk").write_text("".join(f"s{i % 2}-u{i} s{i % 2}\n" for i in order))
    (d / "spk2utt").write_text("s0 s0-u0 s0-u2\ns1 s1-u1\n")
    return d


def test_pad_noise(data, tmp_path):
    pad = load_local_script("pad_noise")
    out = tmp_path / "padded"
    assert pad.main([str(data), str(out), "--seconds", "0.5", "--noise-db", "-20"]) == 0
    assert validate_data_dir(out) == []
    assert (out / "text").read_text() == (data / "text").read_text()
    src, padded = read_table(data / "wav.scp"), read_table(out / "wav.scp")
    for utt in src:
        clean, noisy = sf.read(src[utt])[0], sf.read(padded[utt])[0]
        assert len(noisy) == len(clean) + RATE
        assert np.allclose(noisy[RATE // 2: -RATE // 2], clean, atol=2e-4)  # the speech untouched
        edge = np.concatenate([noisy[: RATE // 2], noisy[-RATE // 2:]])
        level = 20 * np.log10(np.sqrt(np.mean(edge ** 2)) / np.sqrt(np.mean(clean ** 2)))
        assert abs(level + 20) < 0.5
    again = tmp_path / "again"
    assert pad.main([str(data), str(again), "--seconds", "0.5", "--noise-db", "-20"]) == 0
    assert np.array_equal(sf.read(read_table(again / "wav.scp")["s0-u2"])[0], sf.read(padded["s0-u2"])[0])


def test_concat_long(data, tmp_path):
    concat = load_local_script("concat_long")
    out = tmp_path / "long"
    assert concat.main([str(data), str(out), "--max-seconds", "60", "--gap", "0.25"]) == 0
    assert validate_data_dir(out) == []
    text = read_table(out / "text")
    assert sorted(text.values()) == ["W0 X W2 X", "W1 X"]  # per speaker, in id order
    lengths = sorted(len(sf.read(p)[0]) for p in read_table(out / "wav.scp").values())
    assert lengths == [2 * RATE, RATE + RATE // 4 + 3 * RATE]


def test_quiet_vad_on_two_an4_utterances(tmp_path, an4_root):
    """local/quiet_vad.py: the quiet copy and its three decodings, scored."""
    from pathlib import Path

    from recipe_copy import REPO

    wavs = sorted((Path(an4_root) / "wav" / "an4test_clstk" / "fcaw").glob("*.sph"))[:2]
    data = tmp_path / "data"
    data.mkdir()
    ids = [f"fcaw-{w.stem.split('-')[0]}" for w in wavs]
    (data / "wav.scp").write_text("".join(f"{i} {w}\n" for i, w in zip(ids, wavs)))
    (data / "text").write_text(f"{ids[0]} RUBOUT G M E F THREE NINE\n{ids[1]} ERASE C Q Q F SEVEN\n")
    quiet = load_local_script("quiet_vad")
    out = tmp_path / "q"
    assert quiet.main(["--model", str(REPO / "egs" / "an4" / "teacher"), "--data", str(data), "--out", str(out),
                       "--db", "-45"]) == 0
    level = np.abs(sf.read(read_table(out / "data" / "wav.scp")[ids[0]])[0]).max()
    assert level < 10 ** (-40 / 20)
    for way in ("vad", "vad_as_is", "none"):
        assert set(read_table(out / way / "text")) == set(ids)
        assert (out / way / "score_cer").is_dir()
