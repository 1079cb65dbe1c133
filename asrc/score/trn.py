"""sclite's ``trn`` transcript format and the word/character tokenisation used for WER/CER.

A trn line is ``TOKEN TOKEN ... (ID)``; following ESPnet, ``ID`` is ``spk-utt``.

CER convention (ESPnet's ``--token_type char`` scoring): every character is a token and each
word boundary is the token ``<space>``, so ``"AB CD"`` scores as ``A B <space> C D``. Runs of
whitespace count as one boundary; leading/trailing whitespace is ignored. A missing or extra
word boundary is therefore one character error, as in ESPnet's CER tables.
"""

from typing import Dict, Iterable, List, Tuple

from asrc.core.files import atomic_write
from asrc.errors import AsrcError

SPACE_TOKEN = "<space>"
UNITS = ("word", "char")


def tokenize(text: str, unit: str) -> List[str]:
    """Split ``text`` into scoring tokens: words (``unit="word"``) or characters (``"char"``)."""
    words = text.split()
    if unit == "word":
        return words
    if unit == "char":
        tokens = []
        for k, word in enumerate(words):
            if k:
                tokens.append(SPACE_TOKEN)
            tokens.extend(word)
        return tokens
    raise ValueError(f"unknown scoring unit {unit!r}; expected one of {UNITS}")


def trn_id(spk: str, utt: str) -> str:
    """ESPnet's trn id: ``spk-utt``."""
    return f"{spk}-{utt}"


def write_trn(path, entries: Iterable[Tuple[str, List[str]]]) -> None:
    """Write ``(trn_id, tokens)`` entries as a trn file (atomically).

    Raises:
        AsrcError: a token contains ``(`` or ``)`` (sclite would read it as an utterance id or
            an optionally-deletable word), or an id contains whitespace or parentheses.
    """
    with atomic_write(path) as f:
        for ident, tokens in entries:
            if any(c in ident for c in "() \t"):
                raise AsrcError(f"{path}: utterance id {ident!r} contains whitespace or parentheses")
            for t in tokens:
                if "(" in t or ")" in t:
                    raise AsrcError(
                        f"{path}: utterance {ident!r} has token {t!r} with a parenthesis, which sclite "
                        f"would misread; normalise the text first"
                    )
            f.write(" ".join(tokens) + f" ({ident})\n")


def read_trn(path) -> Dict[str, List[str]]:
    """Read a trn file into ``{id: tokens}``.

    Raises:
        AsrcError: a line without a trailing ``(id)`` or a duplicate id, naming file and line.
    """
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip()
            if not line:
                continue
            start = line.rfind("(")
            if start < 0 or not line.endswith(")"):
                raise AsrcError(f"{path}:{lineno}: no '(id)' at the end of the line")
            ident = line[start + 1 : -1]
            if ident in out:
                raise AsrcError(f"{path}:{lineno}: duplicate id {ident!r}")
            out[ident] = line[:start].split()
    return out
