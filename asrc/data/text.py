"""Transcript normalisation to the LibriSpeech convention.

LibriSpeech transcripts are upper-case letters ``A``-``Z``, the apostrophe and single spaces
(``HE'S GOING TO THE STATION``). :func:`normalize_text` brings other text there:

- Unicode is brought to NFKC (ligatures and superscripts unfolded), accents are dropped
  (``café`` -> ``CAFE``); typographic apostrophes (’ ‘ ` ´) become ``'``; letters are
  upper-cased.
- Other letters are transliterated with ``Unidecode`` (``ÆSIR`` -> ``AESIR``, ``ŒUVRE`` ->
  ``OEUVRE``, ``Straße`` -> ``STRASSE``, ``Москва`` -> ``MOSKVA``). Han characters are not:
  their reading depends on the language (日本語 is NIHONGO in Japanese, RI BEN YU in
  Mandarin), so they are dropped, like any letter with no ASCII spelling, and
  :func:`normalize_text_lost` names them so that callers can report every transcript that
  lost something (:func:`asrc.data.datadir.write_lost_chars`).
- Numbers are spelled out in words as a reader would say them: ``42`` -> ``FORTY TWO``,
  ``3.5`` -> ``THREE POINT FIVE``, ``1st``/``22nd`` -> ``FIRST``/``TWENTY SECOND``,
  ``1,000`` -> ``ONE THOUSAND``; ``%`` ``&`` ``+`` ``@`` -> ``PERCENT AND PLUS AT``. Years are not guessed
  (``1991`` -> ``ONE THOUSAND NINE HUNDRED NINETY ONE``); feed already-normalised text
  (e.g. LJ Speech's third column) when that matters.
- Hyphens, slashes and other punctuation separate words; an apostrophe survives only between
  letters or after a plural ``S`` (``DON'T``, ``JAMES'``), quotes around words are removed.
- Any other character (digits are already words by then) is dropped.

The result may be empty (``"..."``, ``"$"``): callers must treat an empty transcript as a
problem to report, never write it; :func:`normalize_or_raise` does that check.
"""

import re
import unicodedata
from typing import Tuple

from unidecode import unidecode

__all__ = ["normalize_text", "normalize_text_lost", "normalize_or_raise", "number_to_words", "is_normalized"]

_ONES = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN "
    "FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN"
).split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_SCALES = ((10**12, "TRILLION"), (10**9, "BILLION"), (10**6, "MILLION"), (1000, "THOUSAND"))
_ORDINAL_WORDS = {
    "ONE": "FIRST", "TWO": "SECOND", "THREE": "THIRD", "FIVE": "FIFTH", "EIGHT": "EIGHTH",
    "NINE": "NINTH", "TWELVE": "TWELFTH",
}  # fmt: skip

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
_NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)(st|nd|rd|th|ST|ND|RD|TH)?")
_SYMBOLS = {"%": " PERCENT ", "&": " AND ", "+": " PLUS ", "@": " AT "}
_NOT_KEPT = re.compile(r"[^A-Z' ]+")
_NORMALIZED = re.compile(r"[A-Z']+(?: [A-Z']+)*")
_SPELLED = re.compile(r"[A-Za-z0-9]")
_MUST_SPELL = ("Lu", "Ll", "Lt", "Lo", "Nd", "Nl", "No")  # letters and numbers: dropping one loses a sound


def number_to_words(n: int) -> str:
    """Cardinal number in upper-case words: ``1204`` -> ``ONE THOUSAND TWO HUNDRED FOUR``.

    No "AND" (as LibriSpeech's American readers mostly say); ``n`` must be ``0 <= n < 10**15``.
    """
    if not 0 <= n < 10**15:
        raise ValueError(f"number_to_words: {n} out of range [0, 10**15)")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " HUNDRED" + ("" if rest == 0 else " " + number_to_words(rest))
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            head = number_to_words(n // value) + " " + name
            return head + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError(n)


def ordinal_words(n: int) -> str:
    """``23`` -> ``TWENTY THIRD``."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("Y"):
        words[-1] = last[:-1] + "IETH"
    else:
        words[-1] = last + "TH"
    return " ".join(words)


def _spell_number(match: re.Match) -> str:
    digits, suffix = match.group(1), match.group(2)
    digits = digits.rstrip(",")
    integer, _, fraction = digits.replace(",", "").partition(".")
    if len(integer) > 15:  # an id or a long digit string: read digit by digit
        words = " ".join(_ONES[int(d)] for d in integer)
    elif suffix:
        words = ordinal_words(int(integer))
    else:
        words = number_to_words(int(integer))
    if fraction:
        words += " POINT " + " ".join(_ONES[int(d)] for d in fraction)
    return " " + words + " "


def _transliterate(text: str) -> Tuple[str, str]:
    """``text`` with accents dropped and other letters in ASCII; and the letters and numbers
    that have no ASCII spelling (each once, in order)."""
    if text.isascii():
        return text, ""
    out, lost = [], {}
    for c in text:
        if c.isascii():
            out.append(c)
        elif unicodedata.combining(c):
            continue  # an accent
        else:
            category = unicodedata.category(c)
            spelled = ""
            # Han ideographs ("CJK UNIFIED IDEOGRAPH-...") have no language-independent reading.
            if category[0] in "LMN" and not unicodedata.name(c, "").startswith("CJK "):
                spelled = unidecode(c)
            if _SPELLED.search(spelled):
                out.append(spelled)
            else:
                out.append(" " if category[0] in "LMN" else c)  # punctuation and symbols stay separators
                if category in _MUST_SPELL:
                    lost[c] = None
    return "".join(out), "".join(lost)


def normalize_text(text: str) -> str:
    """``text`` in LibriSpeech style: upper-case ``A``-``Z``, ``'`` and single spaces.

    See the module docstring for what happens to digits, symbols and punctuation. May
    return ``""``; use :func:`normalize_or_raise` where an empty result is an error.
    """
    return normalize_text_lost(text)[0]


def normalize_text_lost(text: str) -> Tuple[str, str]:
    """:func:`normalize_text` and the letters or numbers it dropped because they have no ASCII
    spelling (``"日本語 TOKYO"`` -> ``("TOKYO", "日本語")``); ``""`` when nothing was lost."""
    # NFKC, not NFKD: ligatures and superscripts are unfolded, while a kana with its voicing
    # mark (ご) or a Hangul syllable stays one character for the transliteration to read.
    text, lost = _transliterate(unicodedata.normalize("NFKC", text.translate(_APOSTROPHES)))
    if any(c.isdigit() for c in text):
        text = _NUMBER.sub(_spell_number, text)
    for symbol, words in _SYMBOLS.items():
        if symbol in text:
            text = text.replace(symbol, words)
    text = _NOT_KEPT.sub(" ", text.upper())
    words = []
    for word in text.split():
        # Keep apostrophes inside words (DON'T) and a plural possessive (JAMES'); drop quotes
        # ('DOGS' is read as quoted).
        stripped = word.strip("'")
        if not stripped:
            continue
        if word.endswith("'") and stripped.endswith("S") and not word.startswith("'"):
            stripped += "'"
        words.append(stripped)
    return " ".join(words), lost


def normalize_or_raise(text: str, what: str) -> str:
    """:func:`normalize_text`, raising ``ValueError`` naming ``what`` if nothing is left."""
    normalized = normalize_text(text)
    if not normalized:
        raise ValueError(f"{what}: transcript {text!r} is empty after normalisation")
    return normalized


def is_normalized(text: str) -> bool:
    """True if ``text`` already follows the convention (the fast check used on LibriSpeech)."""
    return _NORMALIZED.fullmatch(text) is not None
