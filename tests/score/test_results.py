"""RESULTS.md in ESPnet's layout with size and RTF columns."""

import json

from asrc.score.align import Counts
from asrc.score.results import ResultRecord, collect_environment, record_from_decode_dir, render_results
from asrc.score.scorer import score_dir

ENV = {"date": "Mon Jan 01 00:00:00 UTC 2026", "python": "3.11.7", "espnet": "202511", "torch": "2.9.1",
       "git_hash": "abc123", "git_date": "Mon Jan 01 2026"}


def test_render():
    wer = Counts(snt=3, wrd=13, corr=7, sub=1, dele=5, ins=1, s_err=3)
    cer = Counts(snt=3, wrd=34, corr=20, sub=1, dele=13, ins=2, s_err=3)
    text = render_results([
        ResultRecord("teacher", "test", wer, cer, params=94_400_000, size_mb=377.6, rtf=0.3),
        ResultRecord("teacher", "dev", wer),
        ResultRecord("student_int8", "test", wer, None, params=23_456, size_mb=0.1, rtf=0.01234),
    ], env=ENV)
    lines = text.splitlines()
    assert lines[1] == "# RESULTS" and "- espnet version: `espnet 202511`" in lines
    assert "- Git hash: `abc123`" in lines
    header = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|Params|MB|RTF|"
    assert lines.count(header) == 3  # teacher WER + CER, student WER
    assert "|test|3|13|53.8|7.7|38.5|7.7|53.8|100.0|94.40M|377.6|0.3000|" in lines
    assert "|dev|3|13|53.8|7.7|38.5|7.7|53.8|100.0|-|-|-|" in lines
    assert "|test|3|34|58.8|2.9|38.2|5.9|47.1|100.0|94.40M|377.6|0.3000|" in lines
    assert "|test|3|13|53.8|7.7|38.5|7.7|53.8|100.0|23.5k|0.1|0.0123|" in lines
    assert lines.index("## student_int8") > lines.index("## teacher")


def test_record_from_decode_dir(tmp_path):
    refs, hyps = {"u": "A B"}, {"u": "A C"}
    score_dir(refs, hyps, tmp_path / "score_wer", use_sclite=False)
    score_dir(refs, hyps, tmp_path / "score_cer", unit="char", use_sclite=False)
    (tmp_path / "rtf.json").write_text(json.dumps({"rtf": 0.05, "model": {"params": 1000, "size_mb": 0.004}}))
    rec = record_from_decode_dir("m", "d", tmp_path)
    assert (rec.wer.sub, rec.cer.wrd, rec.rtf, rec.params, rec.size_mb) == (1, 3, 0.05, 1000, 0.004)


def test_environment_has_the_keys():
    env = collect_environment()
    assert set(ENV) <= set(env) and env["torch"] != "not installed"


def test_write_results_wer_and_cer_json(tmp_path, capsys):
    """--wer-json / --cer-json: {model: error %} of one dataset; a model scored without CER is
    left out of the CER file."""
    from asrc.bin.results import main

    refs = {"u1": "AB CD", "u2": "EF"}
    rows = []
    for model, hyp, cer in (("teacher", {"u1": "AB CD", "u2": "EX"}, True),
                            ("pruned_0.7", {"u1": "AB", "u2": "EF"}, False)):
        for dataset in ("test", "dev"):
            out = tmp_path / model / dataset
            decoded = hyp if dataset == "test" else refs  # dev: no errors (the files hold test's alone)
            score_dir(refs, decoded, out / "score_wer", use_sclite=False)
            if cer:
                score_dir(refs, decoded, out / "score_cer", unit="char", use_sclite=False)
            rows += ["--row", model, dataset, str(out)]
    assert main(["--out", str(tmp_path / "R.md"), *rows, "--wer-json", str(tmp_path / "w.json"),
                 "--cer-json", str(tmp_path / "c.json"), "--wer-dataset", "test"]) == 0
    # WER: teacher 1 of 3 words, pruned_0.7 1 deletion of 3; CER: teacher 1 of 7 characters ("AB CD" is 5:
    # sclite counts the space)
    assert json.loads((tmp_path / "w.json").read_text()) == {"teacher": 33.33, "pruned_0.7": 33.33}
    assert json.loads((tmp_path / "c.json").read_text()) == {"teacher": 14.29}
    # no row of the dataset scored with CER: an error naming it, and nothing written (was '{}')
    (tmp_path / "teacher" / "test" / "score_cer" / "score.json").unlink()
    for f in ("R.md", "c.json"):
        (tmp_path / f).unlink()
    assert main(["--out", str(tmp_path / "R.md"), *rows, "--cer-json", str(tmp_path / "c.json"),
                 "--wer-dataset", "test"]) == 1
    err = capsys.readouterr().err
    assert "c.json" in err and "no row of dataset 'test' was scored with CER" in err
    assert not (tmp_path / "R.md").exists() and not (tmp_path / "c.json").exists()


def test_score_older_than_the_hypotheses_is_an_error(tmp_path, capsys):
    """Decoded again into the same directory after scoring: the old score would be reported
    next to the new run's RTF. A score_*/score.json older than ``text`` that scores other
    hypotheses is an error naming the directory and asrc-score."""
    import os

    import pytest

    from asrc.bin.results import main
    from asrc.errors import AsrcError

    refs, hyps = {"u": "A B", "v-1": "C D"}, {"u": "A C", "v-1": "C D"}
    utt2spk = {"u": "s", "v-1": "v"}  # hyp.trn ids: s-u, v-v-1
    (tmp_path / "text").write_text("u A C\nv-1 C D\n")
    score_dir(refs, hyps, tmp_path / "score_wer", utt2spk=utt2spk, use_sclite=False)
    score_dir(refs, hyps, tmp_path / "score_cer", unit="char", utt2spk=utt2spk, use_sclite=False)
    t = 1_700_000_000

    def decoded_at(when, text=None):
        if text is not None:
            (tmp_path / "text").write_text(text)
        os.utime(tmp_path / "text", (when, when))

    for name in ("score_wer", "score_cer"):
        os.utime(tmp_path / name / "score.json", (t + 10, t + 10))
    decoded_at(t)
    assert record_from_decode_dir("m", "d", tmp_path).wer.sub == 1  # scored after decoding: fine
    # Decoded again to the same words (e.g. another --nj), or copied without the mtimes: the
    # score is that of these hypotheses.
    decoded_at(t + 20, "v-1 C D\nu A C\n")
    assert record_from_decode_dir("m", "d", tmp_path).wer.sub == 1

    decoded_at(t + 20, "u A B\nv-1 C D\n")  # decoded again with other options, not scored again
    with pytest.raises(AsrcError) as e:
        record_from_decode_dir("m", "d", tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "score_wer/score.json is older than" in msg and "rerun asrc-score" in msg
    assert main(["--out", str(tmp_path / "R.md"), "--row", "m", "d", str(tmp_path)]) == 1
    assert "rerun asrc-score" in capsys.readouterr().err and not (tmp_path / "R.md").exists()

    # Only the CER score is stale (WER scored again alone): still an error, naming score_cer.
    score_dir(refs, {"u": "A B", "v-1": "C D"}, tmp_path / "score_wer", utt2spk=utt2spk, use_sclite=False)
    os.utime(tmp_path / "score_wer" / "score.json", (t + 30, t + 30))
    with pytest.raises(AsrcError, match="score_cer/score.json is older than"):
        record_from_decode_dir("m", "d", tmp_path)
    # hyp.trn gone: an old score counts as stale.
    score_dir(refs, {"u": "A B", "v-1": "C D"}, tmp_path / "score_cer", unit="char", utt2spk=utt2spk,
              use_sclite=False)
    os.utime(tmp_path / "score_cer" / "score.json", (t + 10, t + 10))
    assert record_from_decode_dir("m", "d", tmp_path).cer.err == 0
    (tmp_path / "score_cer" / "hyp.trn").unlink()
    with pytest.raises(AsrcError, match="score_cer/score.json is older than"):
        record_from_decode_dir("m", "d", tmp_path)
