"""Non-ASCII transcripts: transliterated where a standard spelling exists, and every loss reported."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asrc.data.text import normalize_text


@pytest.mark.parametrize("raw, normalized", [
    ("ÆSIR", "AESIR"),
    ("ŒUVRE", "OEUVRE"),
    ("CAFÉ", "CAFE"),
    ("Straße", "STRASSE"),
    ("Łódź Þór", "LODZ THOR"),
    ("日本語 TOKYO", "TOKYO"),
    ("にほんご", "NIHONGO"),
    ("don’t stop at 42", "DON'T STOP AT FORTY TWO"),
])
def test_normalize_text(raw, normalized):
    assert normalize_text(raw) == normalized


def test_normalize_text_lost_names_what_has_no_ascii_spelling():
    from asrc.data.text import normalize_text_lost

    assert normalize_text_lost("日本語 TOKYO") == ("TOKYO", "日本語")
    assert normalize_text_lost("東京 and 東京") == ("AND", "東京")
    assert normalize_text_lost("ÆSIR ŒUVRE CAFÉ") == ("AESIR OEUVRE CAFE", "")
    assert normalize_text_lost("Hello, world!") == ("HELLO WORLD", "")


def _librispeech_tree(root, subset="dev-clean", speaker="19"):
    chap = root / "LibriSpeech" / subset / speaker / "198"
    chap.mkdir(parents=True)
    lines = ["ÆSIR AND ŒUVRE", "日本語 TOKYO", "HELLO WORLD", "CAFÉ 東京"]
    for i in range(len(lines)):
        x = np.random.default_rng(i).normal(0, 1000, 1600 + 100 * i).astype(np.int16)
        sf.write(chap / f"{speaker}-198-{i:04d}.flac", x, 16000, format="FLAC", subtype="PCM_16")
    (chap / f"{speaker}-198.trans.txt").write_text("".join(f"{speaker}-198-{i:04d} {t}\n" for i, t in enumerate(lines)))
    return root / "LibriSpeech"


def test_prepare_librispeech_reports_lost_characters(tmp_path):
    corpus = _librispeech_tree(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "asrc.bin.data", "prepare-librispeech", str(corpus),
                           str(tmp_path / "data"), "--nj", "1", "--no-progress"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    d = tmp_path / "data" / "dev_clean"
    assert (d / "text").read_text() == (
        "19-198-0000 AESIR AND OEUVRE\n19-198-0001 TOKYO\n19-198-0002 HELLO WORLD\n19-198-0003 CAFE\n")
    assert (d / "text_lost_chars.txt").read_text() == "19-198-0001\t日本語\t日本語 TOKYO\n19-198-0003\t東京\tCAFÉ 東京\n"
    assert (d / "skipped.txt").read_text() == ""
    assert f"2 transcript(s) lost characters that have no ASCII spelling, listed in {d}/text_lost_chars.txt" \
        in proc.stderr
    assert proc.stdout.strip() == (f"{d}: 4 utterances, 2 transcript(s) lost characters with no ASCII spelling "
                                   f"(see {d}/text_lost_chars.txt)")


def test_lost_characters_survive_combination(tmp_path):
    from asrc.data.datadir import combine_data_dirs
    from asrc.data.librispeech import prepare_librispeech

    _librispeech_tree(tmp_path, "dev-clean", "19")
    corpus = _librispeech_tree(tmp_path, "dev-other", "20")
    written = prepare_librispeech(corpus, tmp_path / "data", nj=1, progress=False)
    expected = ["19-198-0001", "19-198-0003", "20-198-0001", "20-198-0003"]
    lost = (written["dev"] / "text_lost_chars.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lost] == expected
    combined = combine_data_dirs(tmp_path / "combined", [written["dev_clean"], written["dev_other"]])
    assert (combined / "text_lost_chars.txt").read_text() == (written["dev"] / "text_lost_chars.txt").read_text()


def test_prepare_an4_reports_lost_characters(tmp_path):
    from asrc.data.an4 import prepare_an4

    root = tmp_path / "an4"
    speakers = {"train": ["fash", "fbbh", "mcen", "mdms"], "test": ["fcaw"]}
    texts = {"fash": "YES", "fbbh": "ŒUVRE", "mcen": "NO", "mdms": "ENTER 数字", "fcaw": "RUBOUT 日本"}
    for part, spks in speakers.items():
        folder = "an4_clstk" if part == "train" else "an4test_clstk"
        fileids, trans = [], []
        for k, spk in enumerate(spks):
            rel = f"{folder}/{spk}/an{k}-{spk}-b"
            (root / "wav" / folder / spk).mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / f"{rel}.sph", np.zeros(1600, np.int16), 16000, format="NIST", subtype="PCM_16")
            fileids.append(rel + "\n")
            trans.append(f"<s> {texts[spk]} </s> (an{k}-{spk}-b)\n")
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / f"an4_{part}.fileids").write_text("".join(fileids))
        (root / "etc" / f"an4_{part}.transcription").write_text("".join(trans))
    written = prepare_an4(root, tmp_path / "data", dev_fraction=0.3)
    reports = {name: (d / "text_lost_chars.txt").read_text() for name, d in written.items()}
    texts_out = {name: (d / "text").read_text() for name, d in written.items()}
    assert "fbbh-an1-b OEUVRE\n" in texts_out["train"] + texts_out["dev"]
    assert reports["train"] + reports["dev"] == "mdms-an3-b\t数字\tENTER 数字\n"
    assert reports["test"] == "fcaw-an0-b\t日本\tRUBOUT 日本\n"
    assert texts_out["test"] == "fcaw-an0-b RUBOUT\n"
