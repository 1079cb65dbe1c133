"""WER/CER scoring of a hypothesis ``text`` against a reference ``text``.

:func:`score` is the built-in scorer (sclite's alignment, see :mod:`asrc.score.align`).
:func:`score_dir` writes what ESPnet's scoring stage writes into ``OUT/score_{wer,cer}/``:

- ``ref.trn``, ``hyp.trn``: sclite input, ids ``spk-utt``;
- ``result.txt``: sclite's report (``-o all stdout``) when sclite is installed, otherwise a
  report of the built-in scorer with the same count table and ``id:``/``Scores:`` lines;
- ``alignments_worst.txt``: the alignments of the utterances with the most errors;
- ``per_utt.tsv``: counts of every utterance;
- ``score.json``: totals, percentages, which scorer produced them, and whether sclite and the
  built-in scorer agreed (they should; a disagreement is logged as a warning and kept here).

Input that sclite would misread, or that would score as something else than what was meant, is
refused with an error naming the user's file (``ref_name``, ``hyp_name``, ``utt2spk_name``) and
the utterance id as written there, never the generated trn files:

- a reference without a single word (nothing to measure an error rate against; sclite
  crashes on it). An empty *hypothesis* is fine: all its words are deletions;
- a word with sclite's trn markup: ``(`` or ``)`` (the utterance id, optionally deletable
  words), ``{`` or ``}`` (alternatives ``{ a / b }``) or the word ``@`` (the empty word in them);
  asrc does not escape them, as the trn format has no escape: normalise the text instead;
- an utterance or speaker id with parentheses or whitespace (it would not survive as a trn id);
- in the files (:func:`read_text`), a UTF-8 byte-order mark, or a space that is not an ASCII
  space or tab (e.g. U+00A0 NO-BREAK SPACE): Kaldi and sclite do not split on them, so the id
  or words would silently differ from what the file seems to say.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from asrc.core.config_files import read_json_object
from asrc.core.files import atomic_write
from asrc.core.tables import char_name, odd_space, read_table
from asrc.errors import AsrcError
from asrc.score.align import INS_COST, SUB_COST, AlignedPair, Counts, align, count, format_alignment
from asrc.score.sclite import find_sclite, run_sclite
from asrc.score.trn import UNITS, tokenize, write_trn
from asrc.score.trn import trn_id as make_trn_id

log = logging.getLogger(__name__)


@dataclass
class UttScore:
    """One utterance: its tokens, alignment and counts."""

    utt: str
    spk: str
    ref: List[str]
    hyp: List[str]
    pairs: List[AlignedPair]
    counts: Counts

    @property
    def trn_id(self) -> str:
        return make_trn_id(self.spk, self.utt)


@dataclass
class ScoreResult:
    """Scores of a set. ``total`` holds the numbers to report (sclite's when it ran)."""

    unit: str
    total: Counts
    utts: List[UttScore]
    scorer: str = "builtin"
    missing_hyp: List[str] = field(default_factory=list)
    out_dir: Optional[str] = None

    @property
    def error_rate(self) -> float:
        """WER or CER in percent."""
        return self.total.percentages()["err"]

    def summary(self) -> str:
        """One line in Kaldi's ``%WER`` style, e.g. ``%WER 12.50 [ 5 / 40, 1 ins, 2 del, 2 sub ]``."""
        name = "WER" if self.unit == "word" else "CER"
        t = self.total
        return (
            f"%{name} {self.error_rate:.2f} [ {t.err} / {t.wrd}, {t.ins} ins, {t.dele} del, {t.sub} sub ] "
            f"S.Err {t.percentages()['s_err']:.2f} [ {t.s_err} / {t.snt} ] ({self.scorer})"
        )


#: Characters that sclite reads as trn markup wherever they are in a word, and the word ``@``.
_MARKUP_CHARS = "(){}"
_NULL_WORD = "@"
_MARKUP_HELP = ("sclite reads ( ) as an utterance id or an optionally deletable word, { } as alternatives and "
                "the word @ as an empty one, and a trn file cannot escape them: remove or replace them in the text")


def read_text(path) -> Dict[str, str]:
    """A Kaldi ``text`` (or ``utt2spk``) file for scoring: :func:`asrc.core.tables.read_table`,
    refusing what would silently change its ids or words.

    Raises:
        AsrcError: naming the file, line and utterance (besides :func:`read_table`'s
            errors, a byte-order mark among them): whitespace other than ASCII spaces and
            tabs (e.g. U+00A0 NO-BREAK SPACE: Kaldi does not split the id from the words there,
            Python's ``split()`` would split the words there, sclite would not).
    """
    table = read_table(path)
    # read_table refuses blank lines, so entry k is on line k
    for lineno, (key, value) in enumerate(table.items(), 1):
        odd = odd_space(key + value)
        if odd is not None:
            utt = (key.split() or [key])[0]
            where = "after the id" if odd in key else "between the words"
            raise AsrcError(
                f"{path}:{lineno}: utterance {utt!r}: {char_name(odd)} {where}, which Kaldi tables and sclite "
                f"do not read as a space; replace it by an ASCII space"
            )
    return table


def _bad_id(ident: str) -> bool:
    return not ident or any(c in "()" or c.isspace() for c in ident)


def check_transcripts(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    units: Sequence[str] = ("word",),
    *,
    utt2spk: Optional[Mapping[str, str]] = None,
    ref_name: str = "reference",
    hyp_name: str = "hypothesis",
    utt2spk_name: str = "utt2spk",
) -> None:
    """Refuse what cannot be scored, or what sclite would misread (see the module docstring).

    Raises:
        AsrcError: naming the file (``*_name``) and the utterance id as written there: a
            reference with no utterance or no word at all; an utterance id (or its speaker in
            ``utt2spk``) with whitespace or parentheses, or without a speaker; a word with
            sclite's markup (with ``"char"`` in ``units`` also ``@`` inside a word, as each
            character is then a word of the trn file).
    """
    if not refs:
        raise AsrcError(f"{ref_name}: no utterances; score against the reference text of the decoded data")
    if not any(text.split() for text in refs.values()):
        raise AsrcError(
            f"{ref_name}: the reference has no words (all {len(refs)} transcript(s) are empty), so there is no "
            f"error rate to measure; score against transcribed data"
        )
    for name, texts in ((ref_name, refs), (hyp_name, hyps)):
        for utt, text in texts.items():
            if _bad_id(utt):
                raise AsrcError(f"{name}: utterance id {utt!r} contains whitespace or parentheses, which a trn id "
                                f"cannot hold")
            for word in text.split():
                if word == _NULL_WORD or any(c in _MARKUP_CHARS for c in word) or ("char" in units and "@" in word):
                    raise AsrcError(f"{name}: utterance {utt!r}: word {word!r}: {_MARKUP_HELP}")
    if utt2spk is not None:
        for utt in refs:
            if utt not in utt2spk:
                raise AsrcError(f"{utt2spk_name}: no speaker for utterance {utt!r}")
            if _bad_id(utt2spk[utt]):
                raise AsrcError(f"{utt2spk_name}: utterance {utt!r}: speaker {utt2spk[utt]!r} contains whitespace "
                                f"or parentheses, which a trn id cannot hold")


def _check_ids(refs: Mapping[str, str], hyps: Mapping[str, str], allow_missing: bool, hyp_name: str):
    extra = [u for u in hyps if u not in refs]
    if extra:
        raise AsrcError(
            f"{hyp_name}: {len(extra)} utterance(s) not in the reference, e.g. {extra[:5]}; "
            f"score against the matching reference"
        )
    missing = [u for u in refs if u not in hyps]
    if missing and not allow_missing:
        raise AsrcError(
            f"{hyp_name}: no hypothesis for {len(missing)} of {len(refs)} reference utterance(s), "
            f"e.g. {missing[:5]}; decode them, or score them as empty with asrc-score --allow-missing "
            f"(allow_missing=True in Python)"
        )
    return missing


def score(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    *,
    unit: str = "word",
    utt2spk: Optional[Mapping[str, str]] = None,
    allow_missing: bool = False,
    hyp_name: str = "hypothesis",
    ref_name: str = "reference",
    utt2spk_name: str = "utt2spk",
) -> ScoreResult:
    """Score hypotheses against references with the built-in scorer.

    Args:
        refs: ``{utt: reference text}``.
        hyps: ``{utt: hypothesis text}``; every key must be in ``refs``.
        unit: ``"word"`` (WER) or ``"char"`` (CER with ``<space>`` word boundaries, see
            :mod:`asrc.score.trn`).
        utt2spk: speaker of each utterance (for trn ids); default: the utterance id itself.
        allow_missing: score reference utterances without a hypothesis as empty hypotheses
            (listed in ``ScoreResult.missing_hyp``) instead of raising.
        hyp_name, ref_name, utt2spk_name: how to name the hypotheses, references and ``utt2spk``
            in error messages (e.g. their files).

    Raises:
        AsrcError: what :func:`check_transcripts` refuses; hypotheses for unknown utterances, or
            missing ones without ``allow_missing``.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown scoring unit {unit!r}; expected one of {UNITS}")
    check_transcripts(refs, hyps, (unit,), utt2spk=utt2spk, ref_name=ref_name, hyp_name=hyp_name,
                      utt2spk_name=utt2spk_name)
    missing = _check_ids(refs, hyps, allow_missing, hyp_name)
    total = Counts()
    utts = []
    for utt, ref_text in refs.items():
        spk = utt2spk[utt] if utt2spk is not None else utt
        ref = tokenize(ref_text, unit)
        hyp = tokenize(hyps.get(utt, ""), unit)
        pairs = align(ref, hyp)
        c = count(pairs)
        total += c
        utts.append(UttScore(utt=utt, spk=spk, ref=ref, hyp=hyp, pairs=pairs, counts=c))
    return ScoreResult(unit=unit, total=total, utts=utts, missing_hyp=missing)


def worst_utterances(result: ScoreResult, n: int) -> List[UttScore]:
    """The ``n`` utterances with the most errors (ties: higher error rate, then id)."""

    def key(u: UttScore):
        rate = u.counts.err / max(u.counts.wrd, 1)
        return (-u.counts.err, -rate, u.utt)

    return sorted((u for u in result.utts if u.counts.err > 0), key=key)[:n]


def _count_row(label: str, c: Counts, width: int) -> str:
    return (
        f"| {label:<{width}} | {c.snt:5d} {c.wrd:6d} | {c.corr:6d} {c.sub:6d} {c.dele:6d} "
        f"{c.ins:6d} {c.err:6d} {c.s_err:6d} |"
    )


def builtin_report(result: ScoreResult) -> str:
    """A plain-text report with sclite's count table (per speaker, ``Sum``) and alignment dump."""
    by_spk: Dict[str, Counts] = {}
    for u in result.utts:
        by_spk.setdefault(u.spk, Counts())
        by_spk[u.spk] += u.counts
    width = max([4] + [len(s) for s in by_spk])
    lines = [
        f"asrc built-in scorer (sclite costs sub {SUB_COST}, ins/del {INS_COST}; ASCII case folded); "
        f"unit: {result.unit}",
        "",
        f"| {'SPKR':<{width}} | # Snt  # Wrd |   Corr    Sub    Del    Ins    Err  S.Err |",
    ]
    lines += [_count_row(spk, c, width) for spk, c in sorted(by_spk.items())]
    lines += [_count_row("Sum", result.total, width), "", ""]
    for u in sorted(result.utts, key=lambda u: (u.spk, u.utt)):
        c = u.counts
        lines.append(f"id: ({u.trn_id})")
        lines.append(f"Scores: (#C #S #D #I) {c.corr} {c.sub} {c.dele} {c.ins}")
        lines += format_alignment(u.pairs)
        lines.append("")
    return "\n".join(lines) + "\n"


def score_dir(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    out_dir,
    *,
    unit: str = "word",
    utt2spk: Optional[Mapping[str, str]] = None,
    allow_missing: bool = False,
    use_sclite: Union[str, bool] = "auto",
    worst: int = 50,
    hyp_name: str = "hypothesis",
    ref_name: str = "reference",
    utt2spk_name: str = "utt2spk",
) -> ScoreResult:
    """Score and write ESPnet's scoring files into ``out_dir`` (see the module docstring).

    Args:
        refs, hyps, unit, utt2spk, allow_missing, hyp_name, ref_name, utt2spk_name: as for
            :func:`score`.
        out_dir: directory to write (created).
        use_sclite: ``"auto"`` runs sclite when installed; ``True`` requires it; ``False`` uses
            only the built-in scorer.
        worst: how many utterances go into ``alignments_worst.txt``.

    Returns:
        The result; ``total`` is sclite's when sclite ran (it agrees with the built-in scorer,
        which is checked and recorded in ``score.json``).
    """
    out_dir = Path(out_dir)
    result = score(refs, hyps, unit=unit, utt2spk=utt2spk, allow_missing=allow_missing, hyp_name=hyp_name,
                   ref_name=ref_name, utt2spk_name=utt2spk_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.out_dir = str(out_dir)
    write_trn(out_dir / "ref.trn", ((u.trn_id, u.ref) for u in result.utts))
    write_trn(out_dir / "hyp.trn", ((u.trn_id, u.hyp) for u in result.utts))

    sclite = None
    if use_sclite:
        sclite = find_sclite()
        if sclite is None and use_sclite is True:
            raise FileNotFoundError("sclite was required but not found (install Debian's sctk or set ASRC_SCLITE)")
    builtin_total = result.total
    info = {"unit": unit, "scorer": "builtin", "builtin_total": builtin_total.as_dict()}
    if sclite is not None:
        report = run_sclite(out_dir / "ref.trn", out_dir / "hyp.trn", out_dir / "result.txt", sclite=sclite)
        result.total = report.total
        result.scorer = "sclite"
        info.update(scorer="sclite", sclite=sclite, sclite_total=report.total.as_dict())
        info["agree"] = report.total.as_dict() == builtin_total.as_dict()
        if not info["agree"]:
            log.warning(
                "sclite and the built-in scorer disagree on %s: sclite %s, built-in %s (reporting sclite's)",
                out_dir,
                report.total.as_dict(),
                builtin_total.as_dict(),
            )
    else:
        with atomic_write(out_dir / "result.txt") as f:
            f.write(builtin_report(result))

    info["total"] = result.total.as_dict()
    info["percent"] = {k: round(v, 4) for k, v in result.total.percentages().items()}
    info["missing_hyp"] = result.missing_hyp
    with atomic_write(out_dir / "score.json") as f:
        json.dump(info, f, indent=2)
        f.write("\n")

    with atomic_write(out_dir / "per_utt.tsv") as f:
        f.write("id\twrd\tcorr\tsub\tdel\tins\terr\n")
        for u in result.utts:
            c = u.counts
            f.write(f"{u.trn_id}\t{c.wrd}\t{c.corr}\t{c.sub}\t{c.dele}\t{c.ins}\t{c.err}\n")

    chosen = worst_utterances(result, worst)
    with atomic_write(out_dir / "alignments_worst.txt") as f:
        f.write(f"# {len(chosen)} utterances with the most errors (of {len(result.utts)}), unit: {unit}\n")
        if result.missing_hyp:
            f.write(f"# scored as empty (no hypothesis): {' '.join(result.missing_hyp)}\n")
        for u in chosen:
            c = u.counts
            rate = 100.0 * c.err / c.wrd if c.wrd else float("inf")
            f.write(
                f"\nid: ({u.trn_id})  err {c.err} / {c.wrd} = {rate:.1f} %  "
                f"(C {c.corr} S {c.sub} D {c.dele} I {c.ins})\n"
            )
            f.write("\n".join(format_alignment(u.pairs)) + "\n")
    return result


#: What to do about a damaged JSON file that an asrc command wrote.
RERUN = "rerun the command that wrote it"


def read_score_json(score_dir_path) -> Counts:
    """The reported totals of a directory written by :func:`score_dir`."""
    path = Path(score_dir_path) / "score.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run asrc-score first)")
    total = read_json_object(path, hint=RERUN).get("total")
    try:
        return Counts(
            snt=total["snt"],
            wrd=total["wrd"],
            corr=total["corr"],
            sub=total["sub"],
            dele=total["del"],
            ins=total["ins"],
            s_err=total["s_err"],
        )
    except (KeyError, TypeError) as e:
        raise AsrcError(f"{path}: 'total' lacks the counts asrc-score writes ({e}); rerun asrc-score") from e
