"""asrc-score on bad input: one line naming the user's file (--ref/--hyp/--utt2spk) and the
utterance id as written there, never the generated trn files; an empty hypothesis still scores."""

import json
import stat

import pytest

from asrc.bin.score import main as score_main
from asrc.errors import AsrcError
from asrc.score.sclite import find_sclite, run_sclite
from asrc.score.scorer import check_transcripts, score

REF = "fcaw-an406-b RUBOUT G M E F THREE NINE\nfcaw-an407-b ERASE C Q Q F SEVEN\nfcaw-an408-b B A O Z FIVE THREE\n"
UTT2SPK = "fcaw-an406-b fcaw\nfcaw-an407-b fcaw\nfcaw-an408-b fcaw\n"
IDS_ONLY = "fcaw-an406-b\nfcaw-an407-b\nfcaw-an408-b\n"

# the built-in scorer always; sclite too where it is installed
SCLITE = ["no"] + (["yes"] if find_sclite() is not None else [])


def run(tmp_path, capsys, ref=REF, hyp=REF, utt2spk=None, extra=()):
    (tmp_path / "ref").write_bytes(ref.encode("utf-8") if isinstance(ref, str) else ref)
    (tmp_path / "hyp").write_bytes(hyp.encode("utf-8") if isinstance(hyp, str) else hyp)
    args = ["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--out", str(tmp_path / "out"), *extra]
    if utt2spk is not None:
        (tmp_path / "utt2spk").write_text(utt2spk)
        args += ["--utt2spk", str(tmp_path / "utt2spk")]
    status = score_main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asrc-score: error: "), err
    assert "Traceback" not in err and ".trn" not in err
    return lines[0][len("asrc-score: error: "):]


@pytest.mark.parametrize("sclite", SCLITE)
@pytest.mark.parametrize("ref", [IDS_ONLY, "", "fcaw-an406-b   \n"], ids=["ids only", "zero bytes", "blank text"])
@pytest.mark.parametrize("hyp", [IDS_ONLY, REF], ids=["empty hyp", "hyp"])
def test_reference_without_words_is_an_error(tmp_path, capsys, sclite, ref, hyp):
    status, out, err = run(tmp_path, capsys, ref=ref, hyp=hyp, extra=["--sclite", sclite, "--allow-missing"])
    message = one_error(err)
    assert status == 1 and out == ""
    assert message.startswith(f"{tmp_path / 'ref'}: ")
    assert "no words" in message or "no utterances" in message
    assert not (tmp_path / "out" / "score_wer").exists()


@pytest.mark.parametrize("sclite", SCLITE)
@pytest.mark.parametrize("hyp, missing", [(IDS_ONLY, False), ("", True)], ids=["ids only", "zero bytes"])
def test_empty_hypothesis_scores_as_deletions(tmp_path, capsys, sclite, hyp, missing):
    extra = ["--sclite", sclite, "--cer"] + (["--allow-missing"] if missing else [])
    status, out, err = run(tmp_path, capsys, hyp=hyp, extra=extra)
    assert status == 0, err
    assert out.startswith("%WER 100.00 [ 19 / 19, 0 ins, 19 del, 0 sub ]")
    info = json.loads((tmp_path / "out" / "score_wer" / "score.json").read_text())
    assert info["total"]["del"] == 19 and info.get("agree", True)


@pytest.mark.parametrize("where", ["ref", "hyp"])
@pytest.mark.parametrize("word", ["(SEVEN)", "SEV(EN", "{", "A}", "@"])
def test_sclite_markup_names_the_users_file_and_utterance(tmp_path, capsys, where, word):
    bad = REF.replace("SEVEN", word)
    status, _, err = run(tmp_path, capsys, utt2spk=UTT2SPK, **{where: bad})
    message = one_error(err)
    assert status == 1
    assert message.startswith(f"{tmp_path / where}: utterance 'fcaw-an407-b': word {word!r}: sclite reads")
    assert "fcaw-fcaw" not in message


def test_at_inside_a_word_is_only_markup_for_cer(tmp_path, capsys):
    hyp = REF.replace("SEVEN", "SEV@N")
    status, out, err = run(tmp_path, capsys, hyp=hyp, extra=["--sclite", "no"])
    assert status == 0 and out.startswith("%WER 5.26"), err
    status, _, err = run(tmp_path, capsys, hyp=hyp, extra=["--sclite", "no", "--cer"])
    assert status == 1 and "'SEV@N'" in one_error(err)
    assert not (tmp_path / "out" / "score_cer").exists()


@pytest.mark.parametrize("where", ["ref", "hyp"])
def test_byte_order_mark_names_the_file_it_is_in(tmp_path, capsys, where):
    status, _, err = run(tmp_path, capsys, **{where: b"\xef\xbb\xbf" + REF.encode()})
    message = one_error(err)
    assert status == 1
    assert message.startswith(f"{tmp_path / where}:1: starts with a UTF-8 byte-order mark")
    assert "'fcaw-an406-b'" in message


@pytest.mark.parametrize("line, where", [
    ("fcaw-an408-b\u00a0B A O Z FIVE THREE", "after the id"),
    ("fcaw-an408-b B\u00a0A O Z FIVE THREE", "between the words"),
    ("fcaw-an408-b B A O Z FIVE\u3000THREE", "between the words"),
])
def test_non_ascii_space_names_file_line_and_utterance(tmp_path, capsys, line, where):
    ref = REF.replace("fcaw-an408-b B A O Z FIVE THREE", line)
    status, _, err = run(tmp_path, capsys, ref=ref)
    message = one_error(err)
    assert status == 1
    assert message.startswith(f"{tmp_path / 'ref'}:3: utterance 'fcaw-an408-b': U+")
    assert where in message


def test_speaker_with_parenthesis_names_utt2spk(tmp_path, capsys):
    status, _, err = run(tmp_path, capsys, utt2spk=UTT2SPK.replace("fcaw-an407-b fcaw", "fcaw-an407-b fc(aw"))
    assert status == 1
    assert one_error(err).startswith(f"{tmp_path / 'utt2spk'}: utterance 'fcaw-an407-b': speaker 'fc(aw'")


def test_python_api_names(tmp_path):
    with pytest.raises(AsrcError, match=r"^refs\.txt: the reference has no words"):
        score({"u1": "", "u2": " "}, {"u1": "A"}, ref_name="refs.txt")
    with pytest.raises(AsrcError, match=r"^hyps\.txt: utterance id 'u 1' contains whitespace"):
        check_transcripts({"u1": "A"}, {"u 1": "A"}, hyp_name="hyps.txt")
    with pytest.raises(AsrcError, match=r"^spk\.txt: no speaker for utterance 'u1'"):
        check_transcripts({"u1": "A"}, {}, utt2spk={}, utt2spk_name="spk.txt")


def test_crashing_sclite_is_reported_as_a_signal(tmp_path):
    fake = tmp_path / "sclite"
    fake.write_text("#!/bin/sh\nkill -SEGV $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "r.trn").write_text("A (u1)\n")
    with pytest.raises(AsrcError, match=r"sclite was killed by signal 11 .*: no output$"):
        run_sclite(tmp_path / "r.trn", tmp_path / "r.trn", tmp_path / "result.txt", sclite=str(fake))
