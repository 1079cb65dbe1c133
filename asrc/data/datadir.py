"""Kaldi-style data directories: write, read, validate, combine.

A data directory describes a set of utterances in plain-text tables, one ``KEY VALUE`` line
per entry, sorted by key in C-locale byte order (as ``LC_ALL=C sort``; for UTF-8 this is
Python's code-point order, so ``sorted()`` gives it):

=================== ==================================================================
``wav.scp``         ``utt-id /abs/path/audio.flac`` (a path; a Kaldi ``cmd |`` pipe is
                    accepted by :func:`validate_data_dir` but its audio is not checked)
``text``            ``utt-id TRANSCRIPT`` (normalised, non-empty)
``utt2spk``         ``utt-id speaker-id``
``spk2utt``         ``speaker-id utt-id utt-id ...`` (utt ids sorted)
``utt2dur``         ``utt-id seconds`` (4 decimals)
``utt2num_samples`` ``utt-id samples`` (per channel; ESPnet's ``speech_shape``)
=================== ==================================================================

Key and value are separated by spaces or tabs (as Kaldi reads them); asrc writes one space.
Speaker ids must be prefixes of their utterance ids (``1089-134686-0000`` of speaker
``1089``), so that sorting by utterance also groups speakers (Kaldi's rule).
Preparation functions also leave ``skipped.txt`` (``utt-id<TAB>reason`` per line, possibly
empty) in the directory: everything that was in the corpus but is not in the tables; and
``text_lost_chars.txt`` (``utt-id<TAB>characters<TAB>original transcript``, possibly empty):
every transcript that lost letters with no ASCII spelling in normalisation
(:func:`asrc.data.text.normalize_text_lost`).
"""

import functools
import heapq
import logging
import math
from pathlib import Path
from typing import Iterable, NamedTuple

from asrc.core.constants import MAX_SEGMENT_OVERSHOOT, SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.core.tables import (BOM, REQUIRED_FILES, DataDirError, Utterance, char_name, odd_space, parse_segment,
                              segment_outside, split_line)
from asrc.errors import AsrcError

__all__ = [
    "DATA_FILES",
    "SKIPPED_FILE",
    "LOST_CHARS_FILE",
    "PER_UTT_FILES",
    "SpeakerBlock",
    "Problem",
    "format_speaker",
    "write_data_dir",
    "write_blocks",
    "write_skipped",
    "write_lost_chars",
    "validate_data_dir",
    "segment_outside",
    "refuse_segments",
    "combine_data_dirs",
    "copy_data_dir",
]

logger = logging.getLogger(__name__)

DATA_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "utt2num_samples")
SKIPPED_FILE = "skipped.txt"
LOST_CHARS_FILE = "text_lost_chars.txt"
PER_UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "utt2num_samples")
_DURATION_TOLERANCE = 0.01  # seconds; utt2dur has 4 decimals, other tools round to 2-3


class Problem(NamedTuple):
    """A fault found by :func:`validate_data_dir`; ``str()`` gives ``file: utt-id: message``."""

    file: str
    utt_id: str  # "" when the fault concerns the file, not one utterance
    message: str

    def __str__(self):
        return f"{self.file}: {self.utt_id}: {self.message}" if self.utt_id else f"{self.file}: {self.message}"


class SpeakerBlock(NamedTuple):
    """The formatted lines of one speaker's utterances, ids sorted.

    The unit that parallel preparation passes between processes and that combination
    concatenates: ``tables[i]`` is the text (``"\\n"``-terminated lines) of
    ``PER_UTT_FILES[i]`` for these utterances.
    """

    speaker: str
    utt_ids: list
    tables: tuple


def format_speaker(speaker: str, utterances, where="") -> SpeakerBlock:
    """Check and format the utterances of one speaker into a :class:`SpeakerBlock`.

    Raises ``ValueError`` naming ``where`` and the utterance for a duplicate id, an empty
    transcript, an id or speaker with whitespace, a speaker that is not a prefix of its
    utterance id (or not ``speaker``), or a non-positive sample count or rate.
    """
    utts = sorted(utterances)
    if not speaker or speaker.split() != [speaker]:
        raise ValueError(f"{where}: speaker id {speaker!r} is empty or contains whitespace")
    previous = None
    for u in utts:
        if u.utt_id == previous:
            raise ValueError(f"{where}: duplicate utterance id {u.utt_id!r}")
        previous = u.utt_id
        if u.speaker != speaker:
            raise ValueError(f"{where}: utterance {u.utt_id!r} has speaker {u.speaker!r}, expected {speaker!r}")
        if u.utt_id.split() != [u.utt_id] or not u.utt_id.startswith(speaker):
            raise ValueError(f"{where}: utterance id {u.utt_id!r} contains whitespace or does not start "
                             f"with its speaker {speaker!r}")
        if not u.text.strip():
            raise ValueError(f"{where}: utterance {u.utt_id!r} has an empty transcript")
        if u.num_samples <= 0 or u.sample_rate <= 0:
            raise ValueError(f"{where}: utterance {u.utt_id!r}: {u.num_samples} samples at {u.sample_rate} Hz")
    tables = (
        "".join([f"{u.utt_id} {u.audio}\n" for u in utts]),
        "".join([f"{u.utt_id} {u.text}\n" for u in utts]),
        "".join([f"{u.utt_id} {speaker}\n" for u in utts]),
        "".join([f"{u.utt_id} {u.num_samples / u.sample_rate:.4f}\n" for u in utts]),
        "".join([f"{u.utt_id} {u.num_samples}\n" for u in utts]),
    )
    return SpeakerBlock(speaker, [u.utt_id for u in utts], tables)


def write_data_dir(out_dir, utterances: Iterable[Utterance], skipped=None, lost=None) -> Path:
    """Write ``utterances`` as a sorted data directory (all six files), atomically per file.

    ``skipped``, if given, is a list of ``(utt_id, reason)`` written to ``skipped.txt``;
    ``lost`` one of ``(utt_id, characters, original_text)`` written to ``text_lost_chars.txt``.
    Raises ``ValueError`` as :func:`format_speaker` does.
    """
    by_speaker = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u)
    blocks = [format_speaker(spk, utts, where=str(out_dir)) for spk, utts in by_speaker.items()]
    return write_blocks(out_dir, blocks, skipped=skipped, lost=lost)


def write_blocks(out_dir, blocks, skipped=None, lost=None) -> Path:
    """Write :class:`SpeakerBlock` s as a sorted data directory; see :func:`write_data_dir`.

    Blocks whose id ranges do not overlap (the usual case: ids start with ``<speaker>-``) are
    concatenated in order; otherwise the lines are sorted as a whole. Raises ``ValueError``
    naming the id if two blocks hold the same utterance.
    """
    out_dir = Path(out_dir)
    blocks = sorted((b for b in blocks if b.utt_ids), key=lambda b: b.utt_ids[0])
    if not blocks:
        raise ValueError(f"{out_dir}: no utterances to write")
    disjoint = all(a.utt_ids[-1] < b.utt_ids[0] for a, b in zip(blocks, blocks[1:]))
    speakers = {}
    for b in blocks:
        speakers.setdefault(b.speaker, []).extend(b.utt_ids)
    for i, name in enumerate(PER_UTT_FILES):
        with atomic_write(out_dir / name) as f:
            if disjoint:
                for b in blocks:
                    f.write(b.tables[i])
            else:
                lines = sorted(((_line_key(line), line) for b in blocks for line in b.tables[i].splitlines(True)))
                for (key, _), (next_key, _) in zip(lines, lines[1:]):
                    if key == next_key:
                        raise ValueError(f"{out_dir}: utterance {key!r} occurs twice")
                f.write("".join(line for _, line in lines))
    with atomic_write(out_dir / "spk2utt") as f:
        f.write("".join(f"{spk} {' '.join(sorted(ids))}\n" for spk, ids in sorted(speakers.items())))
    if skipped is not None:
        write_skipped(out_dir, skipped)
    if lost is not None:
        write_lost_chars(out_dir, lost)
    return out_dir


def write_skipped(out_dir, skipped) -> Path:
    """Write ``skipped.txt`` (``utt-id<TAB>reason``, sorted) into ``out_dir``; returns its path."""
    path = Path(out_dir) / SKIPPED_FILE
    with atomic_write(path) as f:
        f.write("".join(f"{utt}\t{' '.join(str(reason).split())}\n" for utt, reason in sorted(skipped)))
    if skipped:
        logger.warning("%s: %d utterance(s) skipped, listed in %s", out_dir, len(skipped), path)
    return path


def write_lost_chars(out_dir, lost) -> Path:
    """Write ``text_lost_chars.txt`` (``utt-id<TAB>characters<TAB>original transcript``,
    sorted) into ``out_dir`` from ``(utt_id, characters, original_text)`` triples; returns its path."""
    path = Path(out_dir) / LOST_CHARS_FILE
    with atomic_write(path) as f:
        f.write("".join(f"{utt}\t{chars}\t{' '.join(text.split())}\n" for utt, chars, text in sorted(lost)))
    if lost:
        logger.warning("%s: %d transcript(s) lost characters that have no ASCII spelling, listed in %s",
                       out_dir, len(lost), path)
    return path


# --------------------------------------------------------------------------------------------
# validation


def validate_data_dir(data_dir, token_list=None, expected_sr: int = SAMPLE_RATE, check_audio: bool = True, nj: int = 1,
                      deep: bool = False, require_text: bool = True, mix_channels: bool = False):
    """Every fault of a data directory, as a list of :class:`Problem` (empty = valid).

    Checks: required files (``wav.scp``, ``text``, ``utt2spk``) present; a ``segments`` file, if
    there is one (utterances cut from the recordings of ``wav.scp``: the other tables are then
    keyed by its utterances), every bad line of it (as :func:`asrc.core.tables.read_segments`
    refuses them) and, with ``check_audio``, segments that start after the end of their recording
    or end more than ``MAX_SEGMENT_OVERSHOOT`` s after it (what ``asrc-decode`` refuses); in each
    table, a UTF-8 byte-order mark, blank or malformed lines, an id followed by a space that is
    not an ASCII space or tab (Kaldi does not split there), duplicate ids and C-order sorting;
    the same ids in every per-utterance table; ``spk2utt`` the inverse of ``utt2spk``; speakers
    grouped by the id order; empty transcripts, transcripts with such spaces; characters outside
    ``token_list`` (a list of tokens, see :func:`asrc.data.tokens.token_characters`); and with
    ``check_audio`` each audio file: present, readable, complete, with finite samples, at
    ``expected_sr`` Hz (``None`` = any), mono (``mix_channels=True`` accepts several channels,
    which ``asrc-decode --mix-channels`` averages), agreeing with
    ``utt2num_samples``/``utt2dur`` (:func:`asrc.core.audio_info.check_audio`: headers, the
    last frame of FLAC files, float files in full). ``deep`` decodes every file in full and
    runs the ``cmd |`` pipes, which are otherwise not checked. Audio is checked in ``nj``
    processes. ``require_text=False`` accepts untranscribed utterances (no ``text``, or one that
    leaves some out), as distillation does.
    """
    data_dir = Path(data_dir)
    problems = []
    if not data_dir.is_dir():
        return [Problem(str(data_dir), "", "not a directory")]
    tables = {}
    for name in DATA_FILES:
        path = data_dir / name
        if path.is_dir():
            problems.append(Problem(name, "", f"is a directory, not a table file ({path})"))
            continue
        if not path.is_file():
            if name in REQUIRED_FILES and (require_text or name != "text"):
                problems.append(Problem(name, "", f"missing ({path})"))
            continue
        tables[name] = _check_table(path, name, problems)
    if "wav.scp" not in tables:
        return problems
    ids = tables["wav.scp"]
    recordings = ids
    segments = None
    if (data_dir / "segments").is_file():
        # utterances cut from the recordings of wav.scp: the other tables are keyed by segment
        segments, ids = _check_segments(data_dir / "segments", recordings, problems)
        if not ids:
            return problems
    for name in PER_UTT_FILES[1:]:
        if name in tables:
            _check_same_ids(ids, tables[name], name, problems, subset_ok=name == "text" and not require_text,
                            reference_name="wav.scp" if segments is None else "segments")
    if "utt2spk" in tables:
        _check_speakers(tables["utt2spk"], tables.get("spk2utt"), problems)
    if "text" in tables:
        allowed = None
        if token_list is not None:
            from asrc.data.tokens import token_characters

            allowed = token_characters(token_list)
        for utt, transcript in tables["text"].items():
            odd = odd_space(transcript)
            if not transcript.strip():
                problems.append(Problem("text", utt, "empty transcript"))
            elif odd:
                problems.append(Problem("text", utt, f"{char_name(odd)} between the words, which is not a "
                                                     f"space to Kaldi tools, ESPnet or sclite; use an ASCII space"))
            elif allowed is not None:
                bad = sorted(set(transcript) - allowed)
                if bad:
                    problems.append(Problem("text", utt, f"characters not in the token list: {''.join(bad)!r}"))
    for name, kind in (("utt2dur", float), ("utt2num_samples", int)):
        for utt, value in tables.get(name, {}).items():
            try:
                ok = kind(value) > 0 and math.isfinite(kind(value))
            except ValueError:
                ok = False
            if not ok:
                problems.append(Problem(name, utt, f"not a positive {kind.__name__}: {value!r}"))
    if check_audio:
        nsamp, dur = tables.get("utt2num_samples", {}), tables.get("utt2dur", {})
        if segments is not None:  # with segments the lengths are the segments', not the recordings'
            nsamp, dur = {}, {}
        audio_problems, infos = _check_audio(recordings, nsamp, dur, expected_sr, nj, deep, mix_channels)
        problems.extend(audio_problems)
        if segments is not None:
            _check_segment_ends(segments, infos, problems)
    return problems


def _without_bom(name, lineno, line, problems) -> str:
    """``line`` without a UTF-8 byte-order mark at the start of the file, reported."""
    if lineno == 1 and line.startswith(BOM):
        line = line.lstrip(BOM)
        entry = split_line(line)
        problems.append(Problem(name, entry[0] if entry else "", "line 1 starts with a UTF-8 byte-order mark, which "
                                "Kaldi tools and asrc read as part of the first id; save the file without it"))
    return line


def _table_entry(name, lineno, line, problems):
    """``(key, value)`` of a line (``None`` for a blank one, reported), reporting a byte-order
    mark on line 1 and an id that runs into its value through an odd space; the key is then
    what the line meant, so that the other checks do not repeat the fault."""
    entry = split_line(_without_bom(name, lineno, line, problems))
    if entry is None:
        problems.append(Problem(name, "", f"line {lineno} is blank"))
        return None
    key, value = entry
    odd = odd_space(key)
    if odd:
        key, _, rest = key.partition(odd)
        key = key.split()[0] if key.split() else key
        problems.append(Problem(name, key, f"line {lineno}: {char_name(odd)} after the id, which Kaldi tools do not "
                                           f"read as a separator; use a space or tab"))
        value = " ".join([rest, value]).strip()
    return key, value


def _check_table(path, name, problems) -> dict:
    table, first_line = {}, {}
    previous, unsorted, first_unsorted = None, 0, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            entry = _table_entry(name, lineno, line, problems)
            if entry is None:
                continue
            key, value = entry
            if "\ufffd" in line:
                problems.append(Problem(name, key, f"line {lineno} is not valid UTF-8"))
            if key in table:
                problems.append(Problem(name, key, f"duplicate id (lines {first_line[key]} and {lineno})"))
                continue
            if not value and name in ("wav.scp", "utt2spk", "utt2dur", "utt2num_samples"):
                problems.append(Problem(name, key, f"line {lineno} has an id but no value"))
            if previous is not None and key < previous:
                unsorted += 1
                if first_unsorted is None:
                    first_unsorted = (key, lineno, previous)
            previous = key
            table[key] = value
            first_line[key] = lineno
    if unsorted:
        key, lineno, before = first_unsorted
        problems.append(
            Problem(
                name,
                key,
                f"not sorted in C byte order: line {lineno} comes after {before!r} "
                f"({unsorted} line(s) out of order; sort with LC_ALL=C sort)",
            )
        )
    return table


def _check_segments(path, recordings: dict, problems):
    """``(segments, ids)`` of a Kaldi ``segments`` file: ``{utt: (recording, start, end, line)}``
    of its good lines, and every utterance id it names (the keys of the other tables, so that a
    bad segment line is not also reported as missing there). Every bad line is reported, in the
    terms of :func:`asrc.core.tables.read_segments`, which ``asrc-decode`` uses."""
    segments, ids, first_line = {}, {}, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = _without_bom("segments", lineno, line, problems).split()
            if not fields:
                continue
            utt = fields[0]

            def bad(message):
                problems.append(Problem("segments", utt, f"line {lineno}: {message}"))

            if "\ufffd" in line:
                bad("not valid UTF-8")
                continue
            if utt in first_line:
                bad(f"appears twice (lines {first_line[utt]} and {lineno})")
                continue
            first_line[utt] = lineno
            ids[utt] = None
            segment, problem = parse_segment(fields, recordings)
            if problem:
                bad(problem)
            else:
                segments[utt] = (*segment, lineno)
    if not first_line:
        problems.append(Problem("segments", "", f"is empty ({path})"))
    return segments, ids


def _check_segment_ends(segments: dict, infos: dict, problems) -> None:
    for utt, (rec, start, end, lineno) in segments.items():
        info = infos.get(rec)
        if info is None:  # unreadable (reported) or a pipe that was not run
            continue
        length = f"recording {rec!r} ({info.duration:.2f} s long)"
        outside = segment_outside(start, end, info.num_samples, info.sample_rate)
        if outside == "start":
            problems.append(Problem("segments", utt, f"line {lineno}: segment starts at {start:g} s, at or after "
                                                     f"the end of {length}"))
        elif outside == "end":
            problems.append(Problem(
                "segments", utt,
                f"line {lineno}: segment {start:g}-{end:g} s ends {end - info.duration:.2f} s after the end of "
                f"{length}; asrc-decode allows at most {MAX_SEGMENT_OVERSHOOT:g} s (Kaldi's extract-segments "
                f"--max-overshoot)",
            ))


def _check_same_ids(reference: dict, table: dict, name: str, problems, subset_ok: bool = False,
                    reference_name: str = "wav.scp") -> None:
    for utt in () if subset_ok else reference.keys() - table.keys():
        problems.append(Problem(name, utt, f"in {reference_name} but missing here"))
    for utt in table.keys() - reference.keys():
        problems.append(Problem(name, utt, f"not in {reference_name}"))


def _check_speakers(utt2spk: dict, spk2utt, problems) -> None:
    expected = {}
    for utt, spk in utt2spk.items():
        if not spk or len(spk.split()) != 1:
            problems.append(Problem("utt2spk", utt, f"speaker must be one field, got {spk!r}"))
            continue
        expected.setdefault(spk, []).append(utt)
    by_utt = sorted(utt2spk)
    by_spk = sorted(utt2spk, key=lambda u: (utt2spk[u], u))
    if by_utt != by_spk:
        first = next(u for u, v in zip(by_utt, by_spk) if u != v)
        problems.append(
            Problem(
                "utt2spk",
                first,
                f"sorting by speaker does not keep the utterance order (speaker {utt2spk[first]!r}); "
                "make speaker ids prefixes of utterance ids",
            )
        )
    if spk2utt is None:
        return
    for spk in expected.keys() - spk2utt.keys():
        problems.append(Problem("spk2utt", spk, "speaker of utt2spk missing"))
    for spk, utts in spk2utt.items():
        if spk not in expected:
            problems.append(Problem("spk2utt", spk, "speaker not in utt2spk"))
        elif utts.split() != sorted(expected[spk]):
            problems.append(Problem("spk2utt", spk, "utterance list differs from utt2spk"))


def _audio_check_one(item, deep=False):
    from asrc.core.audio_info import AudioFileError, AudioHeaderError, check_audio

    utt, audio = item
    if not audio:
        return utt, None, None  # reported by _check_table
    if audio.endswith("|"):
        return (utt, *_check_pipe(audio)) if deep else (utt, None, None)  # run only when asked
    try:
        return utt, check_audio(audio, deep=deep), None
    except FileNotFoundError:
        return utt, None, f"audio file missing: {audio}"
    except AudioHeaderError as e:
        return utt, None, f"unreadable audio: {e}"
    except AudioFileError as e:
        return utt, None, str(e)
    except OSError as e:
        return utt, None, f"unreadable audio: {audio}: {e}"


def _check_pipe(spec: str):
    """``(AudioInfo, None)`` of a ``cmd |`` entry, decoded in full, or ``(None, error)``."""
    from asrc.core.audio_info import AudioInfo
    from asrc.core.audio import decode_audio

    try:
        data, rate = decode_audio(spec, what="the pipe")
    except (AsrcError, OSError) as e:
        return None, str(e)
    return AudioInfo(rate, data.shape[0], data.shape[1]), None


def _check_audio(wav: dict, nsamp: dict, dur: dict, expected_sr, nj: int, deep: bool = False,
                 mix_channels: bool = False):
    """``(problems, {id: AudioInfo})`` of the audio of ``wav`` (the infos of what could be read)."""
    problems, infos = [], {}
    items = list(wav.items())
    check = functools.partial(_audio_check_one, deep=deep)
    if nj > 1 and len(items) > (10 if deep else 1000):
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(nj) as pool:
            results = pool.map(check, items, chunksize=8 if deep else 256)
    else:
        results = map(check, items)
    for utt, info, error in results:
        if error:
            problems.append(Problem("wav.scp", utt, error))
            continue
        if info is None:
            continue
        infos[utt] = info
        if expected_sr is not None and info.sample_rate != expected_sr:
            problems.append(Problem("wav.scp", utt, f"sample rate {info.sample_rate} Hz, expected {expected_sr} Hz"))
        if info.channels != 1 and not mix_channels:
            problems.append(Problem("wav.scp", utt, f"{info.channels} channels, expected mono (asrc-decode "
                                                    f"needs --mix-channels to average them; asrc-data validate "
                                                    f"--mix-channels accepts them)"))
        if utt in nsamp and nsamp[utt].isdigit() and int(nsamp[utt]) != info.num_samples:
            problems.append(
                Problem("utt2num_samples", utt, f"says {nsamp[utt]} samples, the audio has {info.num_samples}")
            )
        if utt in dur:
            try:
                stated = float(dur[utt])
            except ValueError:
                continue
            if abs(stated - info.duration) > _DURATION_TOLERANCE:
                problems.append(Problem("utt2dur", utt, f"says {stated} s, the audio lasts {info.duration:.4f} s"))
    return problems, infos


# --------------------------------------------------------------------------------------------
# combination


def _line_key(line: str) -> str:
    entry = split_line(line)
    return entry[0] if entry else ""


def _sorted_lines(path):
    """Lines of a table, checking on the fly that keys are sorted and unique."""
    previous = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.endswith("\n"):
                line += "\n"
            key = _line_key(line)
            if not key:
                raise DataDirError(f"{path}:{lineno}: blank line; run asrc-data validate")
            if previous is not None and key <= previous:
                what = "duplicate id" if key == previous else "not sorted"
                raise DataDirError(f"{path}:{lineno}: {what} ({key!r} after {previous!r}); run asrc-data validate")
            previous = key
            yield key, line


def refuse_segments(data_dir, what: str) -> None:
    """An error for a data directory with a ``segments`` file, which ``what`` (an operation on
    per-utterance ``wav.scp`` entries) would silently get wrong: its ``wav.scp`` lists recordings,
    not utterances."""
    if (Path(data_dir) / "segments").is_file():
        raise AsrcError(f"{data_dir}/segments: {what} works on data directories without segments (wav.scp "
                        f"entries as utterances); write each segment to its own file first (Kaldi's extract-segments)")


def combine_data_dirs(out_dir, src_dirs, untranscribed_ok: bool = False) -> Path:
    """Union of the data directories ``src_dirs`` into ``out_dir`` (e.g. ``train_960``).

    Each per-utterance table present in every source is merged (a streaming merge of the
    sorted files: memory does not grow with the corpus); ``spk2utt`` is rebuilt from the
    merged ``utt2spk``; the sources' ``skipped.txt`` and ``text_lost_chars.txt`` are
    concatenated. A table present in only some sources is not written, with a warning naming
    them. Raises ``ValueError`` naming the id and both directories if an utterance id occurs
    in two sources, and for unsorted input.

    ``untranscribed_ok`` (distillation data): sources without ``text`` are untranscribed; the
    ``text`` written holds the transcripts of the others (ESPnet-side, asrc then gives the
    untranscribed utterances the teacher's losses only; :mod:`asrc.espnet.data`).
    """
    out_dir = Path(out_dir)
    src_dirs = [Path(d) for d in src_dirs]
    if not src_dirs:
        raise ValueError("combine_data_dirs: no source directories")
    for d in src_dirs:
        if not (d / "wav.scp").is_file():
            raise FileNotFoundError(f"combine_data_dirs: {d} is not a data directory (no wav.scp)")
        refuse_segments(d, "combine")
    if out_dir.resolve() in {d.resolve() for d in src_dirs}:
        raise ValueError(f"combine_data_dirs: output {out_dir} is one of the sources")
    for name in REQUIRED_FILES:  # before anything is written
        missing = [str(d) for d in src_dirs if not (d / name).is_file()]
        if missing and not (name == "text" and untranscribed_ok):
            raise FileNotFoundError(f"combine_data_dirs: {name} missing in {', '.join(missing)}"
                                    + ("; --untranscribed-ok combines untranscribed audio" if name == "text" else ""))
    for name in PER_UTT_FILES:
        present = [d for d in src_dirs if (d / name).is_file()]
        if name == "text" and untranscribed_ok:
            if len(present) != len(src_dirs):
                logger.info("combine: no text in %s: untranscribed in %s",
                            ", ".join(str(d) for d in src_dirs if d not in present), out_dir)
            if present:
                _merge_table(out_dir / name, [d / name for d in present])
            else:
                (out_dir / name).unlink(missing_ok=True)
            continue
        if len(present) != len(src_dirs):
            if present:
                missing = [str(d) for d in src_dirs if d not in present]
                logger.warning("combine: %s missing in %s; not written to %s", name, ", ".join(missing), out_dir)
            (out_dir / name).unlink(missing_ok=True)
            continue
        _merge_table(out_dir / name, [d / name for d in src_dirs])
    spk2utt = {}
    for key, line in _sorted_lines(out_dir / "utt2spk"):
        spk2utt.setdefault(line.split()[1], []).append(key)
    with atomic_write(out_dir / "spk2utt") as f:
        f.write("".join(f"{spk} {' '.join(utts)}\n" for spk, utts in sorted(spk2utt.items())))
    skipped, lost = [], []
    for d in src_dirs:
        if (d / SKIPPED_FILE).is_file():
            with open(d / SKIPPED_FILE, encoding="utf-8") as f:
                skipped.extend(tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip())
        if (d / LOST_CHARS_FILE).is_file():
            with open(d / LOST_CHARS_FILE, encoding="utf-8") as f:
                lost.extend(tuple(line.rstrip("\n").split("\t", 2)) for line in f if line.strip())
    write_skipped(out_dir, skipped)
    write_lost_chars(out_dir, lost)
    return out_dir


def copy_data_dir(src_dir, out_dir, prefix: str, drop_text: bool = False) -> Path:
    """Copy of the data directory ``src_dir`` whose utterance and speaker ids start with ``prefix``.

    Kaldi's ``utils/copy_data_dir.sh --utt-prefix P --spk-prefix P``: the audio is shared, the
    ids are new, so a corpus can be combined with itself (e.g. to weight a small in-domain set
    more heavily against a large synthetic one; on-the-fly augmentation makes each copy sound
    different). Per-utterance tables and ``spk2utt`` are rewritten; prefixing keeps the sort
    order. ``skipped.txt`` and ``text_lost_chars.txt`` carry over with prefixed ids.
    ``drop_text`` leaves ``text`` out: untranscribed audio for distillation.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not prefix or any(c.isspace() for c in prefix):
        raise ValueError(f"copy_data_dir: prefix {prefix!r} must be non-empty and without whitespace")
    if not (src_dir / "wav.scp").is_file():
        raise FileNotFoundError(f"copy_data_dir: {src_dir} is not a data directory (no wav.scp)")
    refuse_segments(src_dir, "copy")
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError(f"copy_data_dir: output {out_dir} is the source")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in PER_UTT_FILES + ("spk2utt",):
        path = src_dir / name
        if not path.is_file() or (drop_text and name == "text"):
            (out_dir / name).unlink(missing_ok=True)
            continue
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
        rows = []
        for line in lines:
            entry = split_line(line)
            key, rest = entry[0], entry[1] if len(entry) > 1 else ""
            if name == "utt2spk":
                rest = prefix + rest
            elif name == "spk2utt":
                rest = " ".join(prefix + u for u in rest.split())
            rows.append(f"{prefix}{key} {rest}\n")
        with atomic_write(out_dir / name) as f:
            f.write("".join(rows))
    for name in (SKIPPED_FILE, LOST_CHARS_FILE):
        rows = []
        if (src_dir / name).is_file():
            with open(src_dir / name, encoding="utf-8") as f:
                rows = [prefix + line for line in f if line.strip()]
        with atomic_write(out_dir / name) as f:
            f.write("".join(rows))
    return out_dir


def _tagged_lines(path, tag):
    for key, line in _sorted_lines(path):
        yield key, tag, line


def _merge_table(out_path: Path, sources) -> None:
    streams = [_tagged_lines(p, i) for i, p in enumerate(sources)]
    with atomic_write(out_path) as f:
        previous, previous_src = None, None
        buffer = []
        for key, i, line in heapq.merge(*streams):
            if key == previous:
                raise ValueError(
                    f"combine_data_dirs: utterance {key!r} is in both {sources[previous_src]} and {sources[i]}"
                )
            previous, previous_src = key, i
            buffer.append(line)
            if len(buffer) >= 65536:
                f.write("".join(buffer))
                buffer.clear()
        f.write("".join(buffer))
