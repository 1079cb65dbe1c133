"""Kaldi-style tables, the utterances of a data directory, and token lists: reading them,
and writing token lists.

A table is one ``KEY VALUE`` line per entry; key and value are separated by spaces or tabs
(as Kaldi reads them). A data directory (see :mod:`asrc.data.datadir` for its files and how
asrc writes and validates one) has at least ``wav.scp``, ``text`` and ``utt2spk``.

A token list is a Python list of strings whose index is the output row of the CTC head; on
disk it is ``tokens.txt``, one token per line, line ``i`` (from 0) = index ``i``
(:func:`write_tokens` / :func:`read_tokens`; ESPnet writes the same format).
"""

import os
import re
import unicodedata
from pathlib import Path
from typing import Dict, NamedTuple, Tuple

from asrc.core.audio_info import audio_info
from asrc.core.constants import MAX_SEGMENT_OVERSHOOT
from asrc.core.files import atomic_write
from asrc.errors import AsrcError

__all__ = ["REQUIRED_FILES", "BOM", "DataDirError", "Utterance", "odd_space", "char_name", "split_line",
           "read_table", "read_data_dir", "parse_segment", "segment_outside", "read_segments", "read_tokens",
           "write_tokens"]

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")
_FIELD_SEP = re.compile(r"[ \t]+")


class DataDirError(AsrcError, ValueError):
    """A malformed table in a data directory; the message names the file, line and id."""


class Utterance(NamedTuple):
    """One utterance as a data directory records it."""

    utt_id: str
    speaker: str
    audio: str  # absolute path (or a Kaldi pipe command ending in "|")
    text: str  # normalised transcript, non-empty
    num_samples: int  # per channel
    sample_rate: int


BOM = "\ufeff"


def odd_space(text: str):
    """The first whitespace character of ``text`` other than an ASCII space or tab (the only
    separators of Kaldi tables and sclite, e.g. U+00A0 NO-BREAK SPACE), or None."""
    return next((c for c in text if c.isspace() and c not in " \t"), None)


def char_name(c: str) -> str:
    """``U+00A0 NO-BREAK SPACE``: a character as an error message names it."""
    return f"U+{ord(c):04X}" + (f" {unicodedata.name(c)}" if unicodedata.name(c, "") else "")


def split_line(line: str):
    """``(key, value)`` of a table line (any run of spaces/tabs separates them, as in Kaldi);
    ``None`` for a blank line."""
    fields = _FIELD_SEP.split(line.strip(" \t\r\n"), 1)
    if not fields[0]:
        return None
    return fields[0], fields[1] if len(fields) > 1 else ""


def read_table(path) -> dict:
    """``{key: value}`` of a Kaldi table (values may be ``""``), in file order.

    Raises :class:`DataDirError` naming the file, line and key for a duplicate key, a blank
    line or a line that is not UTF-8, and when ``path`` is a directory; use
    :func:`asrc.data.datadir.validate_data_dir` to get every fault instead of the first.
    """
    table, first_line = {}, {}
    for lineno, line in _table_lines(path):
        entry = split_line(line)
        if entry is None:
            raise DataDirError(f"{path}:{lineno}: blank line (a table has one 'id value' entry per line)")
        key, value = entry
        if key in table:
            raise DataDirError(f"{path}:{lineno}: id {key!r} occurs twice (lines {first_line[key]} and {lineno})")
        table[key] = value
        first_line[key] = lineno
    return table


def _table_lines(path):
    """``(line number, text)`` of each line of a table file, decoded as UTF-8; a directory or a
    line that is not UTF-8 is a :class:`DataDirError` naming the file (and line)."""
    if Path(path).is_dir():
        raise DataDirError(f"{path}: is a directory, not a table file")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                first = (raw[3:].decode("utf-8", "replace").split(maxsplit=1) or [""])[0]
                raise DataDirError(f"{path}:1: starts with a UTF-8 byte-order mark, which would become part of "
                                   f"utterance id {first!r}; save the file without it "
                                   f"(sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataDirError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)


def _rate_from_duration(num_samples: int, duration: str) -> int:
    """The sample rate that ``num_samples`` and a rounded ``utt2dur`` entry imply.

    ``utt2dur`` keeps a few decimals, so ``samples / duration`` is only known within the
    rounding interval (0.6246 s for 9994 samples gives 16000.6 Hz): a common rate inside that
    interval is the answer, else the nearest whole Hz.
    """
    d = float(duration)
    if d <= 0:
        return 0
    decimals = len(duration.split(".")[1]) if "." in duration else 0
    # a little more than half a unit: a duration that rounded half-up (10348 samples = 0.64675 s
    # -> "0.6468") puts the true rate exactly on the interval's edge, where float division
    # may land either side of it
    half = 0.5 * 10.0 ** -decimals * (1 + 1e-6)
    low, high = num_samples / (d + half), num_samples / max(d - half, 1e-12)
    for rate in COMMON_RATES:
        if low <= rate <= high:
            return rate
    return round(num_samples / d)


def read_data_dir(data_dir, require_text: bool = True) -> list:
    """The :class:`Utterance` list of a data directory (sorted by id).

    With ``require_text=False`` the ``text`` file may be absent or leave utterances out
    (untranscribed audio, for distillation): their ``text`` is ``None``.

    ``num_samples``/``sample_rate`` come from ``utt2num_samples`` and ``utt2dur`` when present
    (rate = the common rate that samples / rounded duration allows, see
    :func:`_rate_from_duration`), else from the audio headers.
    Raises ``ValueError`` naming the id when the tables disagree.
    """
    data_dir = Path(data_dir)
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file() and (require_text or name != "text"):
            raise FileNotFoundError(f"{data_dir}: no {name}")
    wav, utt2spk = read_table(data_dir / "wav.scp"), read_table(data_dir / "utt2spk")
    text = read_table(data_dir / "text") if (data_dir / "text").is_file() else {}
    nsamp = read_table(data_dir / "utt2num_samples") if (data_dir / "utt2num_samples").is_file() else None
    dur = read_table(data_dir / "utt2dur") if (data_dir / "utt2dur").is_file() else None
    utts = []
    for utt, audio in wav.items():
        if (require_text and utt not in text) or utt not in utt2spk:
            raise ValueError(f"{data_dir}: utterance {utt!r} is in wav.scp but not in text/utt2spk")
        if nsamp is not None and dur is not None and utt in nsamp and utt in dur:
            n = int(nsamp[utt])
            rate = _rate_from_duration(n, dur[utt])
        else:
            info = audio_info(audio)
            n, rate = info.num_samples, info.sample_rate
        utts.append(Utterance(utt, utt2spk[utt], audio, text.get(utt), n, rate))
    return sorted(utts)


def write_tokens(path, tokens) -> None:
    """Write ``tokens`` one per line (line number = index), atomically.

    Raises ``ValueError`` for an empty list, a duplicate, or a token that is empty or
    contains whitespace (it would not survive the round trip).
    """
    tokens = list(tokens)
    _check_tokens(tokens, str(path))
    with atomic_write(path) as f:
        f.write("".join(t + "\n" for t in tokens))


def parse_segment(fields, wav_scp):
    """``((recording, start, end), None)`` for the fields of a ``segments`` line
    (``utt recording start end``), or ``(None, problem)``: what is wrong with it, in words that
    :func:`read_segments` and :func:`asrc.data.datadir.validate_data_dir` both report."""
    if len(fields) != 4:
        return None, f"expected 'utterance recording start end', got {' '.join(fields)!r}"
    rec = fields[1]
    try:
        start, end = float(fields[2]), float(fields[3])
    except ValueError:
        return None, f"start {fields[2]!r} / end {fields[3]!r} is not a number"
    if not (start >= 0 and (end > start or end == -1)):
        return None, (f"start {fields[2]} and end {fields[3]} (seconds) do not make a segment (need 0 <= start < end, "
                      f"or end -1 for the rest of the recording)")
    if rec not in wav_scp:
        return None, f"recording {rec!r} is not in wav.scp"
    return (rec, start, end), None


def segment_outside(start: float, end: float, num_samples: int, sample_rate: int):
    """Whether the segment ``start``-``end`` s (``end`` -1: to the end) of a recording of
    ``num_samples`` at ``sample_rate`` Hz is refused: ``"start"`` if it starts at or after the
    end of the recording, ``"end"`` if it ends more than ``MAX_SEGMENT_OVERSHOOT`` s after it
    (Kaldi's ``extract-segments --max-overshoot``), else None; rounded to samples as the cut is.
    ``asrc-decode`` cuts by this rule and ``asrc-data validate`` reports by it."""
    if int(round(start * sample_rate)) >= num_samples:
        return "start"
    if end >= 0 and int(round(end * sample_rate)) > num_samples + MAX_SEGMENT_OVERSHOOT * sample_rate:
        return "end"
    return None


def read_segments(path, wav_scp) -> Dict[str, Tuple[str, float, float]]:
    """A Kaldi ``segments`` file: ``utt recording start end`` per line (seconds; ``end`` -1: to
    the end of the recording), in file order, checked line by line.

    Raises:
        DataDirError: naming the file and line: a line without four fields, a time that is not a
            number, a start below 0 or an end not after it, a recording not in ``wav.scp``, a
            repeated utterance id.
    """
    path = Path(path)
    out: Dict[str, Tuple[str, float, float]] = {}
    for lineno, line in _table_lines(path):
        fields = line.split()
        if not fields:
            continue
        where, utt = f"{path}:{lineno}", fields[0]
        segment, problem = parse_segment(fields, wav_scp)
        if problem:
            raise DataDirError(f"{where}: segment {utt}: {problem}")
        if utt in out:
            raise DataDirError(f"{where}: segment {utt} appears twice")
        out[utt] = segment
    if not out:
        raise DataDirError(f"{path} is empty")
    return out


def read_tokens(path) -> list:
    """Read a token list written by :func:`write_tokens` (or by ESPnet: same format).

    Raises ``ValueError`` naming the file for text that is not UTF-8, an empty list, a
    duplicate, or a token that is empty or contains whitespace.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            tokens = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    while tokens and tokens[-1] == "":
        tokens.pop()
    _check_tokens(tokens, path)
    return tokens


def _check_tokens(tokens, where: str) -> None:
    if not tokens:
        raise ValueError(f"{where}: empty token list")
    seen = {}
    for i, token in enumerate(tokens):
        if not token or token != token.strip() or any(c.isspace() for c in token):
            raise ValueError(f"{where}: token {i} ({token!r}) is empty or contains whitespace")
        if token in seen:
            raise ValueError(f"{where}: token {token!r} appears at index {seen[token]} and {i}")
        seen[token] = i
