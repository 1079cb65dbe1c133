"""Levenshtein alignment of a reference and a hypothesis, the way sclite aligns them.

sclite (NIST SCTK 2.4, ``sclite -r ref.trn trn -h hyp.trn trn``) aligns by dynamic programming
with costs correct 0, substitution 4, insertion 3, deletion 3, and resolves ties
(checked against the installed binary by ``tests/score/test_sclite_parity.py``):

- the diagonal move (correct or substitution) wins whenever it is no worse than both others;
- otherwise a deletion wins only if strictly cheaper than the insertion.

Because substitutions cost less than an insertion plus a deletion but more than either alone,
equally cheap alignments can differ in their Corr/Sub/Del/Ins counts (three substitutions cost
12, as do two insertions and two deletions), so matching the tie rule is what makes the counts,
not only the error total, equal to sclite's.

Words are compared case-insensitively for ASCII letters only, as sclite does by default
(without ``-s``, and without ``-e`` so bytes above 127 are left alone).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

SUB_COST = 4
INS_COST = 3
DEL_COST = 3

CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Back-pointer codes of the DP table.
_DIAG, _DEL, _INS = 0, 1, 2


def fold_case(token: str) -> str:
    """Lower-case ASCII letters only (sclite's default comparison)."""
    return token.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class AlignedPair:
    """One column of an alignment: ``op`` is C, S, D or I; ``ref``/``hyp`` is None for I/D."""

    op: str
    ref: Optional[str]
    hyp: Optional[str]


@dataclass
class Counts:
    """Corr/Sub/Del/Ins counts of one utterance or a whole set, as sclite's ``rsum`` table.

    ``snt`` is the number of sentences, ``wrd`` the number of reference tokens (``corr + sub +
    dele``), ``s_err`` the number of sentences with at least one error.
    """

    snt: int = 0
    wrd: int = 0
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    s_err: int = 0

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    def __iadd__(self, other: "Counts") -> "Counts":
        for name in ("snt", "wrd", "corr", "sub", "dele", "ins", "s_err"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def percentages(self) -> dict:
        """Corr/Sub/Del/Ins/Err as percent of ``wrd`` and S.Err as percent of ``snt``.

        An empty reference set gives 0.0 everywhere except Err, which counts insertions per
        zero reference words and is reported as 0.0 if there were none and ``inf`` otherwise.
        """

        def pct(x, n):
            if n:
                return 100.0 * x / n
            return 0.0 if x == 0 else float("inf")

        return {
            "corr": pct(self.corr, self.wrd),
            "sub": pct(self.sub, self.wrd),
            "del": pct(self.dele, self.wrd),
            "ins": pct(self.ins, self.wrd),
            "err": pct(self.err, self.wrd),
            "s_err": pct(self.s_err, self.snt),
        }

    def as_dict(self) -> dict:
        return {
            "snt": self.snt,
            "wrd": self.wrd,
            "corr": self.corr,
            "sub": self.sub,
            "del": self.dele,
            "ins": self.ins,
            "err": self.err,
            "s_err": self.s_err,
        }


def align(ref: Sequence[str], hyp: Sequence[str], *, case_sensitive: bool = False) -> List[AlignedPair]:
    """Align two token sequences with sclite's costs and tie rules.

    Args:
        ref: reference tokens (words, or characters for CER).
        hyp: hypothesis tokens.
        case_sensitive: compare tokens exactly (sclite ``-s``); default folds ASCII case.

    Returns:
        The alignment, left to right. Tokens are returned as given (not case-folded).
    """
    n, m = len(ref), len(hyp)
    key = (lambda t: t) if case_sensitive else fold_case
    vocab = {}
    ref_ids = np.array([vocab.setdefault(key(t), len(vocab)) for t in ref], dtype=np.int64)
    hyp_ids = np.array([vocab.setdefault(key(t), len(vocab)) for t in hyp], dtype=np.int64)

    # Row by row: cost[i, j] = min(diag, del, ins) where ins depends on cost[i, j-1]; the ins
    # recursion is a prefix minimum with a linear offset, so each row is a few numpy calls.
    back = np.empty((n + 1, m + 1), dtype=np.int8)
    back[0, 0] = _DIAG
    back[0, 1:] = _INS
    offsets = INS_COST * np.arange(m + 1)
    prev = offsets.astype(np.int64)  # row 0: insertions only
    for i in range(1, n + 1):
        diag = np.empty(m + 1, dtype=np.int64)
        diag[0] = np.iinfo(np.int64).max // 2
        diag[1:] = prev[:-1] + np.where(hyp_ids == ref_ids[i - 1], 0, SUB_COST)
        dele = prev + DEL_COST
        best_no_ins = np.minimum(diag, dele)
        row = offsets + np.minimum.accumulate(best_no_ins - offsets)
        ins = np.empty(m + 1, dtype=np.int64)
        ins[0] = np.iinfo(np.int64).max // 2
        ins[1:] = row[:-1] + INS_COST
        choice = np.where((diag <= dele) & (diag <= ins), _DIAG, np.where(dele < ins, _DEL, _INS))
        back[i] = choice
        prev = row

    pairs = []
    i, j = n, m
    while i > 0 or j > 0:
        move = back[i, j] if i > 0 else _INS
        if move == _DIAG:
            op = CORRECT if ref_ids[i - 1] == hyp_ids[j - 1] else SUBSTITUTION
            pairs.append(AlignedPair(op, ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif move == _DEL:
            pairs.append(AlignedPair(DELETION, ref[i - 1], None))
            i -= 1
        else:
            pairs.append(AlignedPair(INSERTION, None, hyp[j - 1]))
            j -= 1
    pairs.reverse()
    return pairs


def count(pairs: Sequence[AlignedPair]) -> Counts:
    """Counts of one aligned sentence (``snt`` = 1)."""
    c = Counts(snt=1)
    for p in pairs:
        if p.op == CORRECT:
            c.corr += 1
        elif p.op == SUBSTITUTION:
            c.sub += 1
        elif p.op == DELETION:
            c.dele += 1
        else:
            c.ins += 1
    c.wrd = c.corr + c.sub + c.dele
    c.s_err = int(c.err > 0)
    return c


def format_alignment(pairs: Sequence[AlignedPair]) -> List[str]:
    """sclite-style ``REF:``/``HYP:``/``Eval:`` lines; errors upper-cased, gaps as ``*``."""
    ref_cols, hyp_cols, eval_cols = [], [], []
    for p in pairs:
        r = "*" * len(p.hyp) if p.ref is None else p.ref
        h = "*" * len(p.ref) if p.hyp is None else p.hyp
        if p.op != CORRECT:
            r, h = r.upper(), h.upper()
        width = max(len(r), len(h))
        ref_cols.append(r.ljust(width))
        hyp_cols.append(h.ljust(width))
        eval_cols.append(("" if p.op == CORRECT else p.op).ljust(width))
    return [
        "REF:  " + " ".join(ref_cols),
        "HYP:  " + " ".join(hyp_cols),
        "Eval: " + " ".join(eval_cols),
    ]
