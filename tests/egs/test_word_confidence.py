"""egs/an4/local/word_confidence.py: the ROC area it reports, and a run on a few AN4 utterances."""

import re
from pathlib import Path

import pytest
from recipe_copy import REPO, load_local_script


@pytest.fixture(scope="module")
def wc():
    return load_local_script("word_confidence")


def test_roc_area(wc):
    assert wc.auc([0.9, 0.8], [0.1, 0.2, 0.3]) == 1.0
    assert wc.auc([0.1], [0.9, 0.95]) == 0.0
    assert wc.auc([0.5, 0.5], [0.5]) == 0.5  # ties count half
    assert wc.auc([0.9, 0.4], [0.5, 0.1]) == 0.75  # 3 of the 4 right-wrong pairs ordered
    assert wc.auc([0.9], []) != wc.auc([0.9], [])  # nan: nothing to compare


def test_report_on_an4_utterances(wc, tmp_path, an4_root):
    wavs = sorted((Path(an4_root) / "wav" / "an4test_clstk" / "fcaw").glob("*.sph"))[:4]
    refs = {"an406": "RUBOUT G M E F THREE NINE", "an407": "ERASE C Q Q F SEVEN", "an408": "B A O Z FIVE THREE",
            "an409": "GO"}
    data = tmp_path / "data"
    data.mkdir()
    ids = [w.stem.split("-")[0] for w in wavs]
    (data / "wav.scp").write_text("".join(f"fcaw-{i} {w}\n" for i, w in zip(ids, wavs)))
    (data / "text").write_text("".join(f"fcaw-{i} {refs[i]}\n" for i in ids))
    out = tmp_path / "wc.md"
    assert wc.main(["--model", str(REPO / "egs" / "an4" / "teacher"), "--data", str(data), "--out", str(out)]) == 0
    table = out.read_text()
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| 0") or line.startswith("| 1")]
    head = table.splitlines()[0]
    n_right, n_wrong = (int(n) for n in re.search(r"(\d+) right and (\d+) wrong", head).groups())
    assert sum(int(r[2]) for r in rows) == n_right + n_wrong > 0
    assert "Area under the ROC curve: " in table
