"""egs/an4 stage 20's pieces: local/train_lm.sh writes an ARPA LM that asrc's beam search loads
(and that prefers the sentences it was trained on), local/lm_tune.py picks the best grid point."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asrc.decode.ctc import BeamSearchDecoder, arpa_unigrams, write_letter_lexicon
from asrc.score.scorer import score_dir

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "egs" / "an4" / "local"
LETTERS = ["<blank>", "<pad>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def find_tlm():
    for c in (os.environ.get("IRSTLM", "") + "/bin/tlm", "/usr/lib/irstlm/bin/tlm", shutil.which("tlm") or ""):
        if c and os.access(c, os.X_OK):
            return c
    if os.environ.get("ASRC_REQUIRE_IRSTLM") == "1":
        pytest.fail("IRSTLM's tlm is missing and ASRC_REQUIRE_IRSTLM=1 (tools/install.sh installs the Debian package irstlm)")
    pytest.skip("IRSTLM's tlm is not installed (Debian package irstlm)")


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def test_train_lm_writes_an_arpa_the_beam_search_uses(tmp_path):
    find_tlm()
    text = tmp_path / "text"
    text.write_text("u1 GO A B\nu2 GO B A\nu3 STOP\nu4\nu5 GO A B\n")
    arpa = tmp_path / "lm" / "lm.arpa"
    r = run(LOCAL / "train_lm.sh", text, 2, arpa)
    assert r.returncode == 0, r.stderr
    assert "from 4 sentences (wb)" in r.stdout  # u4 has no words
    assert "too small for modified shift-beta smoothing; using Witten-Bell" in r.stderr
    assert set(arpa_unigrams(arpa)) >= {"GO", "A", "B", "STOP", "<s>", "</s>"}
    lexicon = tmp_path / "lexicon.txt"
    write_letter_lexicon(arpa_unigrams(arpa), LETTERS, lexicon)
    dec = BeamSearchDecoder(LETTERS, lexicon=lexicon, lm=arpa, lm_weight=2.0)
    # frames spelling G O | A | B (two frames each, a blank after each token), the rest unlikely
    ids = [LETTERS.index(c) for c in "GO|A|B"]
    frames = [i for t in ids for i in (t, t, 0)]
    logits = torch.full((1, len(frames), len(LETTERS)), -30.0)
    for t, i in enumerate(frames):
        logits[0, t, i] = 0.0
    assert dec(logits)[0].text == "GO A B"


def test_train_lm_smooths_a_real_text_with_modified_shift_beta(tmp_path):
    find_tlm()
    import random

    rng = random.Random(0)
    # Zipf-like word frequencies, as in real text: many words seen once or twice
    words = [f"W{chr(65 + i % 26)}{chr(65 + i // 26)}" for i in range(300)]
    weights = [1 / (r + 1) for r in range(len(words))]
    text = tmp_path / "text"
    text.write_text("".join(f"u{i} " + " ".join(rng.choices(words, weights, k=rng.randint(2, 8))) + "\n"
                            for i in range(300)))
    arpa = tmp_path / "lm.arpa"
    r = run(LOCAL / "train_lm.sh", text, 3, arpa)
    assert r.returncode == 0, r.stderr
    assert "from 300 sentences (msb)" in r.stdout and "ngram 3=" in r.stdout
    assert "\\3-grams:" in arpa.read_text()


def test_train_lm_errors_name_the_culprit(tmp_path):
    find_tlm()
    r = run(LOCAL / "train_lm.sh", tmp_path / "missing", 3, tmp_path / "lm.arpa")
    assert r.returncode == 1 and "missing is missing or empty" in r.stderr
    empty = tmp_path / "text"
    empty.write_text("u1\nu2\n")
    r = run(LOCAL / "train_lm.sh", empty, 3, tmp_path / "lm.arpa")
    assert r.returncode == 1 and "no transcribed utterance" in r.stderr
    r = run(LOCAL / "train_lm.sh", empty, "x", tmp_path / "lm.arpa")
    assert r.returncode == 1 and "ORDER must be a positive integer" in r.stderr
    assert not (tmp_path / "lm.arpa").exists()


def scored(path: Path, ref: str, hyp: str) -> Path:
    score_dir({"u1": ref}, {"u1": hyp}, path / "score_wer", use_sclite=False)
    score_dir({"u1": ref}, {"u1": hyp}, path / "score_cer", unit="char", use_sclite=False)
    return path


def test_lm_tune_picks_lowest_wer_then_cer(tmp_path):
    ref = "GO A B STOP"
    grid = {("1", "0"): "GO A STOP", ("1", "2"): "GO A B STAP", ("2", "2"): "GO A B STOP X", ("2", "4"): "GO A BE STOP"}
    args = []
    for (lw, ws), hyp in grid.items():
        args += [lw, ws, scored(tmp_path / f"{lw}_{ws}", ref, hyp)]
    out = tmp_path / "tuning.md"
    r = run(sys.executable, LOCAL / "lm_tune.py", "--out", out, *args, cwd=REPO)
    assert r.returncode == 0, r.stderr
    # three grid points at 25 % WER; of them "GO A B STAP" has the fewest character errors (1)
    assert r.stdout.split() == ["1", "2"]
    table = out.read_text()
    assert "| 1 | 2 | **25.00** |" in table and "Best: LM weight 1, word score 2" in table
    r = run(sys.executable, LOCAL / "lm_tune.py", "--out", out, "1", "2", tmp_path / "nowhere", cwd=REPO)
    assert r.returncode != 0 and "nowhere/score_wer/score.json does not exist" in r.stderr
    assert "Traceback" not in r.stderr
