"""egs/an4/local/int8_summary.py (stage 18's table) on synthetic scoring outputs: its figures are
the ones RESULTS.md prints for the same decode dirs, and its differences are of those figures."""

import subprocess
import sys
from pathlib import Path

import pytest

from asrc.score.results import record_from_decode_dir, render_results
from asrc.score.scorer import score_dir

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "egs" / "an4" / "local" / "int8_summary.py"
ENV = {"date": "-", "python": "-", "espnet": "-", "torch": "-", "git_hash": "-", "git_date": "-"}
# 6 reference characters (sclite counts the space): one error is 16.7 %, two 33.3 %.
REFS = {"u1": "A B C", "u2": "D"}
HYPS = {"student_kd_s42": {"u1": "A B X", "u2": "D"},   # 1 error
        "int8_conv": {"u1": "A B X", "u2": "Y"},        # 2
        "ft_float": {"u1": "A B C", "u2": "D"},         # 0
        "ft_qat": {"u1": "A B X", "u2": "D"}}           # 1


@pytest.fixture
def rows(tmp_path):
    rows = []
    for model, hyp in HYPS.items():
        out = tmp_path / model / "decode_test"
        score_dir(REFS, hyp, out / "score_wer", use_sclite=False)
        score_dir(REFS, hyp, out / "score_cer", unit="char", use_sclite=False)
        rows += ["--row", model, "test", str(out)]
    return rows


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_summary_differences_are_those_of_the_tables(tmp_path, rows):
    r = run("--out", tmp_path / "s.md", "--reference", "student_kd_s42", "--control", "ft_qat", "ft_float",
            "--what", "int8_conv", "asrc-quantize --mode static-conv", "--what", "ft_qat", "QAT | int8", *rows)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "s.md").read_text()
    assert text in r.stdout
    assert "### test: 6 characters, one is 17 points" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table == ["|model|what|CER|CER - student_kd_s42|CER - control|", "|---|---|---|---|---|",
                     "|student_kd_s42|-|16.7|+0.0|-|",
                     # 33.3 - 16.7 as printed: +16.6 (the unrounded rates differ by 16.67)
                     "|int8_conv|asrc-quantize --mode static-conv|33.3|+16.6|-|",
                     "|ft_float|-|0.0|-16.7|-|",
                     "|ft_qat|QAT \\| int8|16.7|+0.0|+16.7 (ft_float)|"]
    # The CER column is the Err cell of RESULTS.md's CER table for the same decode dirs.
    records = [record_from_decode_dir(*rows[i + 1:i + 4]) for i in range(0, len(rows), 4)]
    results = render_results(records, ENV)
    for line in table[2:]:
        model, cer = line.split("|")[1], line.split("|")[-4]
        cer_table = results.split(f"## {model}\n", 1)[1].split("### CER", 1)[1]
        assert next(row for row in cer_table.splitlines() if row.startswith("|test|")).split("|")[8] == cer


def test_help_and_one_line_errors(tmp_path, rows):
    r = run("--help")
    assert r.returncode == 0 and "--reference MODEL" in r.stdout and "--control MODEL CONTROL" in r.stdout
    for args, message in [
        (["--reference", "float"], "--reference float: no --row of that model"),
        (["--reference", "ft_float", "--control", "ft_qat", "ft_flaot"], "--control ft_flaot: no --row"),
        (["--reference", "ft_float", "--row", "other", "test", tmp_path / "none"], "score_wer/score.json"),
        (["--reference", "ft_float", "--row", "ft_qat", "test", tmp_path / "ft_float" / "decode_test"], "given twice"),
    ]:
        r = run("--out", tmp_path / "bad.md", *rows, *args)
        errors = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(errors) == 1 and errors[0].startswith("int8_summary.py: error: "), r.stderr
        assert message in errors[0], errors
    (tmp_path / "ft_qat" / "decode_test" / "score_cer" / "score.json").unlink()
    r = run("--out", tmp_path / "bad.md", "--reference", "ft_float", *rows)
    assert r.returncode != 0 and "no score_cer/score.json (score with asrc-score --cer)" in r.stderr
    assert not (tmp_path / "bad.md").exists()
