"""CMU AN4 (census): download and preparation into Kaldi-style data directories.

The corpus in its original ``an4_sphere`` layout::

    an4/wav/an4_clstk/<spk>/<id>.sph          training speech (74 speakers, 948 utterances)
    an4/wav/an4test_clstk/<spk>/<id>.sph      test speech (10 other speakers, 130 utterances)
    an4/etc/an4_{train,test}.fileids          "an4_clstk/fash/an251-fash-b" per line
    an4/etc/an4_{train,test}.transcription    "<s> YES </s> (an251-fash-b)" per line
                                              (the test file has no <s> </s>)

16 kHz 16-bit PCM NIST SPHERE, which soundfile (libsndfile) reads directly, so ``wav.scp``
points at the ``.sph`` files. Utterance ids put the speaker first, as Kaldi wants
(``an251-fash-b`` -> ``fash-an251-b``). :func:`prepare_an4` writes ``train``, ``dev`` (a
deterministic ~10 % of the training speakers, both genders) and ``test``.
"""

import logging
import os
import re
import shutil
from pathlib import Path

from asrc.core.audio_info import checked_or_reason
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import Utterance
from asrc.data.datadir import write_data_dir
from asrc.data.download import extract_archive, fetch_and_extract
from asrc.data.text import normalize_text_lost
from asrc.errors import AsrcError

__all__ = ["AN4_URL", "AN4_MIRRORS", "download_an4", "prepare_an4", "split_speakers"]

logger = logging.getLogger(__name__)

AN4_URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
AN4_MIRRORS = ("https://dldata-public.s3.us-east-2.amazonaws.com/an4_sphere.tar.gz",)
_TRANSCRIPT = re.compile(r"^\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^()\s]+)\)\s*$")


def download_an4(dest="downloads", url: str = AN4_URL, mirrors=AN4_MIRRORS, source=None, md5=None,
                 retries: int = 5, backoff: float = 2.0, progress: bool = True) -> Path:
    """Fetch and unpack ``an4_sphere.tar.gz`` into ``<dest>/an4``; returns that folder.

    ``source`` replaces the network: an extracted ``an4`` folder (linked, not copied), a
    folder holding ``an4_sphere.tar.gz`` or ``an4/``, or the tarball itself. No checksum is
    published for AN4, so ``md5`` defaults to ``None``; a truncated archive is still caught
    (extraction fails), reported, deleted and fetched again. Idempotent via ``an4/.done``.
    An archive that holds no ``an4/`` tree is an :class:`AsrcError`; what it unpacked (and,
    when downloaded, the archive itself) is removed, so a rerun fails the same way.
    """
    dest = Path(dest)
    root = dest / "an4"
    stamp = root / ".done"
    if (stamp.is_file() or root.is_symlink()) and _is_an4_root(root):
        return root
    if stamp.is_file():
        stamp.unlink()  # left by an extraction that gave no AN4 tree: unpack and check again
    before = set(os.listdir(dest)) if dest.is_dir() else set()
    if source is not None:
        source = Path(source)
        for tree in (source, source / "an4"):
            if _is_an4_root(tree):
                if root.exists() and root.resolve() != tree.resolve():
                    raise AsrcError(f"{root} exists and is not {tree}; remove it or choose another dest")
                dest.mkdir(parents=True, exist_ok=True)
                if not root.exists():
                    root.symlink_to(tree.resolve(), target_is_directory=True)
                return root
        archive = source if source.is_file() else source / "an4_sphere.tar.gz"
        if not archive.is_file():
            raise FileNotFoundError(f"download_an4: {source} holds neither an4/ (wav/, etc/) nor an4_sphere.tar.gz")
        extract_archive(archive, dest, stamp, progress=progress)
    else:
        archive = dest / "an4_sphere.tar.gz"
        fetch_and_extract([url, *mirrors], archive, dest, stamp, md5=md5,
                          retries=retries, backoff=backoff, progress=progress)
    if not _is_an4_root(root):
        stamp.unlink(missing_ok=True)
        junk = set(os.listdir(dest)) - before  # what the wrong archive unpacked
        if source is None:
            junk.add(archive.name)  # downloaded, and not AN4: fetch it afresh next time
        for name in sorted(junk):
            path = dest / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        raise AsrcError(f"{archive}: is not the AN4 archive: it did not produce {root}/wav and {root}/etc")
    return root


def _is_an4_root(path: Path) -> bool:
    return (path / "wav").is_dir() and (path / "etc").is_dir()


def prepare_an4(an4_root, out_dir, dev_fraction: float = 0.1) -> dict:
    """Write ``<out_dir>/{train,dev,test}`` from the AN4 corpus; returns ``{name: path}``.

    ``dev`` holds the training speakers chosen by :func:`split_speakers` (``dev_fraction`` of
    each gender, evenly spaced in sorted order: deterministic, no random state). Each
    utterance listed in ``.fileids`` or ``.transcription`` ends up in a table or in
    ``skipped.txt`` with the reason (missing audio or transcript, an id on two lines of a file,
    unreadable or truncated audio, audio that is not 16 kHz mono, empty transcript);
    transcripts that lost characters with no ASCII spelling are listed in
    ``text_lost_chars.txt``. A list file that is not UTF-8 is an :class:`AsrcError` naming the
    line; a byte-order mark at its start is ignored.
    """
    an4_root = Path(an4_root)
    if not _is_an4_root(an4_root) and _is_an4_root(an4_root / "an4"):
        an4_root = an4_root / "an4"
    if not _is_an4_root(an4_root):
        raise FileNotFoundError(f"prepare_an4: {an4_root} is not an AN4 folder (needs wav/ and etc/)")
    an4_root = an4_root.resolve()
    out_dir = Path(out_dir)
    train_utts, train_skipped, train_lost = _read_part(an4_root, "train")
    test_utts, test_skipped, test_lost = _read_part(an4_root, "test")
    train_speakers = {u.speaker for u in train_utts}
    dev_speakers = set(split_speakers(sorted(train_speakers), dev_fraction))
    if not dev_speakers:
        raise AsrcError(f"prepare_an4: {len(train_speakers)} training speaker(s) in {an4_root}: too few to hold "
                        "out a dev set")
    overlap = train_speakers & {u.speaker for u in test_utts}
    if overlap:
        raise AsrcError(f"prepare_an4: speakers in both train and test: {sorted(overlap)}")
    written = {
        "train": write_data_dir(
            out_dir / "train", [u for u in train_utts if u.speaker not in dev_speakers],
            skipped=[s for s in train_skipped if s[0].split("-", 1)[0] not in dev_speakers],
            lost=[x for x in train_lost if x[0].split("-", 1)[0] not in dev_speakers],
        ),
        "dev": write_data_dir(
            out_dir / "dev", [u for u in train_utts if u.speaker in dev_speakers],
            skipped=[s for s in train_skipped if s[0].split("-", 1)[0] in dev_speakers],
            lost=[x for x in train_lost if x[0].split("-", 1)[0] in dev_speakers],
        ),
        "test": write_data_dir(out_dir / "test", test_utts, skipped=test_skipped, lost=test_lost),
    }
    logger.info("an4: dev speakers %s", " ".join(sorted(dev_speakers)))
    return written


def split_speakers(speakers, fraction: float):
    """Deterministic held-out speakers: ``fraction`` of each gender group, evenly spaced.

    AN4 speaker ids start with ``f`` or ``m``; each group (by first letter) contributes
    ``max(1, round(fraction * size))`` speakers at evenly spaced positions of its sorted list.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"split_speakers: fraction must be in (0, 1), got {fraction}")
    groups = {}
    for spk in sorted(speakers):
        groups.setdefault(spk[:1], []).append(spk)
    chosen = []
    for group in groups.values():
        n = max(1, round(fraction * len(group)))
        if n >= len(group):
            continue  # a lone speaker of its group stays in training
        chosen.extend(group[int((i + 0.5) * len(group) / n)] for i in range(n))
    return sorted(chosen)


def _read_part(root: Path, part: str):
    """(utterances, skipped, lost characters) of ``train`` or ``test``; ids are ``<spk>-<rest>``."""
    fileids_path = root / "etc" / f"an4_{part}.fileids"
    trans_path = root / "etc" / f"an4_{part}.transcription"
    for p in (fileids_path, trans_path):
        if not p.is_file():
            raise FileNotFoundError(f"prepare_an4: missing {p}")
    files, file_lines = {}, {}
    for lineno, line in _read_lines(fileids_path):
        rel = line.strip()
        if rel:
            files[os.path.basename(rel)] = rel
            file_lines.setdefault(os.path.basename(rel), []).append(lineno)
    transcripts, trans_lines, skipped, lost = {}, {}, [], []
    for lineno, line in _read_lines(trans_path):
        if not line.strip():
            continue
        m = _TRANSCRIPT.match(line)
        if m is None:
            skipped.append((f"{trans_path.name}:{lineno}", f"unparsable transcription line {line.strip()!r}"))
            continue
        transcripts[m.group(2)] = m.group(1)
        trans_lines.setdefault(m.group(2), []).append(lineno)
    utts = []
    for base in sorted(files.keys() | transcripts.keys()):
        rel = files.get(base)
        speaker = os.path.basename(os.path.dirname(rel)) if rel else _speaker_from_id(base)
        utt_id = _utt_id(base, speaker)
        repeated = (_repeated(file_lines.get(base, ()), fileids_path)
                    or _repeated(trans_lines.get(base, ()), trans_path))
        if repeated:
            skipped.append((utt_id, repeated))
            continue
        if rel is None:
            skipped.append((utt_id, f"in {trans_path.name} but not in {fileids_path.name}"))
            continue
        if base not in transcripts:
            skipped.append((utt_id, f"no transcript in {trans_path}"))
            continue
        path = root / "wav" / f"{rel}.sph"
        info, reason = checked_or_reason(path, expected_sr=SAMPLE_RATE)  # AN4 is 16 kHz mono
        if reason:
            skipped.append((utt_id, reason))
            continue
        text, lost_chars = normalize_text_lost(transcripts[base])
        if not text:
            skipped.append((utt_id, f"transcript {transcripts[base]!r} is empty after normalisation"))
            continue
        utts.append(Utterance(utt_id, speaker, str(path), text, info.num_samples, info.sample_rate))
        if lost_chars:
            lost.append((utt_id, lost_chars, transcripts[base]))
    return utts, skipped, lost


def _read_lines(path: Path):
    """``(line number, text)`` of each line of an AN4 list; a UTF-8 byte-order mark at the start
    is dropped (``utf-8-sig``), a line that is not UTF-8 is an :class:`AsrcError` naming it."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise AsrcError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                                "AN4 lists are plain ASCII") from None


def _repeated(linenos, path: Path):
    """The skip reason for an id on more than one line of ``path``, else ``None``."""
    if len(linenos) < 2:
        return None
    where = ", ".join(map(str, linenos[:-1])) + f" and {linenos[-1]}"
    return f"{len(linenos)} lines ({where}) of {path} give this utterance"


def _speaker_from_id(base: str) -> str:
    parts = base.split("-")
    return parts[1] if len(parts) == 3 else parts[0]


def _utt_id(base: str, speaker: str) -> str:
    """``an251-fash-b`` of speaker ``fash`` -> ``fash-an251-b``."""
    rest = [p for p in base.split("-") if p != speaker]
    return "-".join([speaker, *rest])
