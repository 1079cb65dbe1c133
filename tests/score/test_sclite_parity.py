"""The built-in scorer gives sclite's numbers, utterance by utterance, for WER and CER."""

import os
import random

import pytest

from asrc.score.align import align, count
from asrc.score.sclite import find_sclite, run_sclite
from asrc.score.scorer import score, score_dir
from asrc.score.trn import write_trn


@pytest.fixture(autouse=True)
def sclite():
    """Skip without sclite, except where ASRC_REQUIRE_SCLITE=1 (CI, .ci/run): fail there."""
    if find_sclite() is None:
        if os.environ.get("ASRC_REQUIRE_SCLITE") == "1":
            pytest.fail("sclite (Debian package sctk) is not installed, and ASRC_REQUIRE_SCLITE=1 requires it: "
                        "tools/install.sh installs it when run as root on Debian/Ubuntu (apt-get install sctk)")
        pytest.skip("sclite (Debian sctk) not installed")


def random_sets(seed, n=400):
    rng = random.Random(seed)
    refs, hyps = {}, {}
    for k in range(n):
        vocab = rng.choice(["ab", "abc", "abcd"])  # small vocabularies make equal-cost alignments common
        refs[f"u{k:04d}"] = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 8)))
        hyps[f"u{k:04d}"] = " ".join(rng.choice(vocab + vocab.upper()) for _ in range(rng.randint(0, 8)))
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1])
def test_per_utterance_counts_equal_sclite(tmp_path, seed):
    refs, hyps = random_sets(seed)
    ids = {u: f"s{int(u[1:]) % 5}-{u}" for u in refs}
    write_trn(tmp_path / "ref.trn", ((ids[u], refs[u].split()) for u in refs))
    write_trn(tmp_path / "hyp.trn", ((ids[u], hyps[u].split()) for u in refs))
    report = run_sclite(tmp_path / "ref.trn", tmp_path / "hyp.trn", tmp_path / "result.txt")
    assert len(report.per_utt) == len(refs)
    for u in refs:
        ours = count(align(refs[u].split(), hyps[u].split()))
        theirs = report.per_utt[ids[u]]
        assert (ours.corr, ours.sub, ours.dele, ours.ins) == (theirs.corr, theirs.sub, theirs.dele, theirs.ins), (
            u, refs[u], hyps[u])
    builtin = score(refs, hyps)
    assert builtin.total.as_dict() == report.total.as_dict()


@pytest.mark.parametrize("unit", ["word", "char"])
def test_score_dir_with_sclite_agrees(tmp_path, unit):
    refs = {"a1": "HELLO WORLD", "a2": "THE CAT SAT ON THE MAT", "a3": "X Y Z", "a4": "", "a5": "IT'S A TEST",
            "a6": "CAF\u00c9 NA\u00cfVE \u00dcBER"}
    hyps = {"a1": "HELO WORLD", "a2": "THE CAT ON MAT", "a3": "", "a4": "", "a5": "ITS A TEST TOO",
            "a6": "caf\u00e9 NA\u00cfVE \u00fcber"}  # only ASCII case is folded, by both
    utt2spk = {u: "spk" + u[1] for u in refs}
    with_sclite = score_dir(refs, hyps, tmp_path / "s", unit=unit, utt2spk=utt2spk, use_sclite=True)
    builtin = score_dir(refs, hyps, tmp_path / "b", unit=unit, utt2spk=utt2spk, use_sclite=False)
    assert with_sclite.scorer == "sclite" and builtin.scorer == "builtin"
    assert with_sclite.total.as_dict() == builtin.total.as_dict()
    assert "Sum" in (tmp_path / "s" / "result.txt").read_text()
