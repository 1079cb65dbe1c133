"""Notes appended to RESULTS.md quote no earlier run: static text has no figures, and the
computed comparison says what the tables of the same run say."""

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from asrc.score.align import Counts
from asrc.score.results import ResultRecord, comparison_note, render_results
from asrc.score.scorer import score_dir

REPO = Path(__file__).resolve().parents[2]
STATIC_NOTES = [REPO / "egs" / "demo" / "local" / "notes.md", REPO / "egs" / "an4" / "local" / "experiment_notes.md"]
ENV = {"date": "-", "python": "-", "espnet": "-", "torch": "-", "git_hash": "-", "git_date": "-"}


def figures(text: str):
    """Numbers left in ``text`` once code spans, comments, names (AN4, int8) and references
    that are not measurements (wav2vec 2.0, stage numbers, T^2) are taken out."""
    text = re.sub(r"`[^`]*`|<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"wav2vec 2\.0|\bstages? [\d-]+|T\^2|\b\w*[A-Za-z_]\w*\d\w*\b", " ", text)
    return re.findall(r"\d[\d.,]*\s*%?", text)


@pytest.mark.parametrize("path", STATIC_NOTES, ids=lambda p: p.parent.parent.name)
def test_static_notes_have_no_figures(path):
    assert figures(path.read_text(encoding="utf-8")) == []


def test_figure_finder_finds_quoted_results():
    quoted = "ends 2.7 CER points behind (teacher 18.9 / 14.1 %) after 400 updates on 857 utterances"
    assert figures(quoted) == ["2.7 ", "18.9 ", "14.1 %", "400 ", "857 "]
    assert figures("`conv_groups: 2` in AN4's int8 wav2vec 2.0 model, stages 8-10") == []


def table_err(table: str, model: str, metric: str, dataset: str) -> str:
    """The Err cell of ``dataset`` in ``model``'s ``metric`` table of a rendered RESULTS.md."""
    section = table.split(f"## {model}\n", 1)[1].split("\n## ", 1)[0]
    rows = section.split(f"### {metric}\n", 1)[1].split("\n### ", 1)[0]
    return next(line for line in rows.splitlines() if line.startswith(f"|{dataset}|")).split("|")[8]


def test_comparison_note_says_what_the_tables_say():
    def counts(wrd, err):
        return Counts(snt=10, wrd=wrd, corr=wrd - err, sub=err, dele=0, ins=0, s_err=5)

    records = [ResultRecord("teacher", "an4_test", counts(773, 309), counts(2565, 485)),
               ResultRecord("student", "an4_test", counts(773, 333), counts(2565, 554)),
               ResultRecord("student_int8", "an4_test", counts(773, 331), counts(2565, 549)),
               ResultRecord("teacher", "synth_test", counts(311, 40), counts(1541, 217)),
               ResultRecord("student", "synth_test", counts(311, 52), counts(1541, 279))]
    note = comparison_note(records, [("student", "teacher", "compression"), ("student_int8", "student", "int8")])
    table = render_results(records, ENV)
    for model, reference, dataset in [("student", "teacher", "an4_test"), ("student", "teacher", "synth_test"),
                                      ("student_int8", "student", "an4_test")]:
        for metric in ("CER", "WER"):
            a, b = (table_err(table, m, metric, dataset) for m in (model, reference))
            diff = f"{Decimal(a) - Decimal(b):+}"
            assert f"{metric} {a} % vs {b} % ({diff} points)" in note, (model, dataset, metric)
    assert "CER 21.6 % vs 18.9 % (+2.7 points)" in note  # 554 / 2565 and 485 / 2565, by hand
    assert "2565 characters, one is 0.039 points; 773 words" in note
    assert "student_int8** against **student** (int8)" in note and "synth_test" not in note.split("int8)")[1]


def test_demo_compare_script_reads_this_runs_scores(tmp_path):
    refs = {"u1": "A B C D", "u2": "E F"}
    rows = []
    for model, hyp in (("teacher", {"u1": "A B C D", "u2": "E X"}), ("student", {"u1": "A B D", "u2": "E X"})):
        out = tmp_path / model
        score_dir(refs, hyp, out / "score_wer", use_sclite=False)
        score_dir(refs, hyp, out / "score_cer", unit="char", use_sclite=False)
        rows += ["--row", model, "test", str(out)]
    script = REPO / "egs" / "demo" / "local" / "compare.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "c.md"), *rows], check=True)
    text = (tmp_path / "c.md").read_text()
    # CER 3/10 vs 1/10 (sclite counts the spaces), WER 2/6 vs 1/6: the tables' 33.3 and 16.7 differ by 16.6
    assert "- test: CER 30.0 % vs 10.0 % (+20.0 points), WER 33.3 % vs 16.7 % (+16.6 points)" in text
