"""Scoring a set: files written, CER convention, missing/extra utterances, the CLI."""

import json

import pytest

from asrc.bin.score import main as score_main
from asrc.errors import AsrcError
from asrc.score.sclite import parse_report
from asrc.score.scorer import builtin_report, score, score_dir
from asrc.score.trn import SPACE_TOKEN, read_trn, tokenize, write_trn

REFS = {"u1": "A B C D", "u2": "THE CAT SAT ON THE MAT", "u3": "X Y Z"}
HYPS = {"u1": "A X C D E", "u2": "THE CAT ON MAT", "u3": ""}


def test_word_totals():
    r = score(REFS, HYPS)
    # u1: C3 S1 I1; u2: C4 D2; u3: D3
    assert r.total.as_dict() == {"snt": 3, "wrd": 13, "corr": 7, "sub": 1, "del": 5, "ins": 1, "err": 7, "s_err": 3}
    assert r.error_rate == pytest.approx(700 / 13)
    assert r.summary().startswith("%WER 53.85 [ 7 / 13, 1 ins, 5 del, 1 sub ]")


def test_char_tokens_mark_word_boundaries():
    assert tokenize("  AB  CD ", "char") == ["A", "B", SPACE_TOKEN, "C", "D"]
    r = score({"u": "AB CD"}, {"u": "AB D"}, unit="char")
    assert (r.total.corr, r.total.sub, r.total.dele, r.total.ins) == (4, 0, 1, 0)
    # A missing word boundary is one character error.
    r = score({"u": "AB CD"}, {"u": "ABCD"}, unit="char")
    assert (r.total.wrd, r.total.dele, r.total.err) == (5, 1, 1)


def test_missing_and_extra_hypotheses(tmp_path):
    with pytest.raises(AsrcError, match=r"no hypothesis for 1 of 3.*'u3'"):
        score(REFS, {"u1": "A", "u2": "B"})
    r = score(REFS, {"u1": "A B C D", "u2": "THE CAT SAT ON THE MAT"}, allow_missing=True)
    assert r.missing_hyp == ["u3"] and r.total.dele == 3
    with pytest.raises(AsrcError, match="not in the reference.*'zz'"):
        score(REFS, {**HYPS, "zz": "X"})


def test_score_dir_files(tmp_path):
    utt2spk = {"u1": "s1", "u2": "s1", "u3": "s2"}
    r = score_dir(REFS, HYPS, tmp_path, utt2spk=utt2spk, use_sclite=False, worst=2)
    assert read_trn(tmp_path / "ref.trn")["s1-u2"] == "THE CAT SAT ON THE MAT".split()
    assert read_trn(tmp_path / "hyp.trn")["s2-u3"] == []
    info = json.loads((tmp_path / "score.json").read_text())
    assert info["scorer"] == "builtin" and info["total"]["err"] == 7
    worst = (tmp_path / "alignments_worst.txt").read_text()
    # u3 and u1 have 3 errors each (u3 at the higher rate), u2 has 2 and is cut by worst=2.
    assert worst.index("(s2-u3)") < worst.index("(s1-u1)") and "(s1-u2)" not in worst
    assert (tmp_path / "per_utt.tsv").read_text().splitlines()[1] == "s1-u1\t4\t3\t1\t0\t1\t2"
    # The built-in report reads back like sclite's.
    back = parse_report((tmp_path / "result.txt").read_text())
    assert back.total.as_dict() == r.total.as_dict()
    assert back.per_utt["s1-u1"].as_dict() == r.utts[0].counts.as_dict()
    assert parse_report(builtin_report(r)).total.as_dict() == r.total.as_dict()


def test_trn_rejects_parentheses(tmp_path):
    with pytest.raises(AsrcError, match=r"'u1'.*'\(HI\)'"):
        write_trn(tmp_path / "x.trn", [("u1", ["(HI)"])])


def test_cli(tmp_path, capsys):
    (tmp_path / "ref").write_text("".join(f"{u} {t}\n" for u, t in REFS.items()))
    (tmp_path / "hyp").write_text("".join(f"{u} {t}\n".replace(" \n", "\n") for u, t in HYPS.items()))
    assert score_main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--out", str(tmp_path / "o"),
                       "--cer", "--sclite", "no"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("%WER 53.85") and out[1].startswith("%CER")
    assert json.loads((tmp_path / "o/score_cer/score.json").read_text())["unit"] == "char"
