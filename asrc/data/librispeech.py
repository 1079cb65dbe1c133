"""LibriSpeech: download (openslr 12) and preparation into Kaldi-style data directories.

Layout read by :func:`prepare_librispeech` (also what :mod:`asrc.data.synth` writes)::

    <corpus>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <corpus>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("<utt-id> TEXT" lines)

Output: ``<out>/<set>/`` for each subset (``train-clean-100`` -> ``train_clean_100``) and the
combined sets ``train_960`` (the three training subsets) and ``dev`` (dev-clean + dev-other)
when their parts are there. Typical use::

    root = download_librispeech(SUBSETS, "downloads")          # -> downloads/LibriSpeech
    prepare_librispeech(root, "data", nj=4)

Durations come from the 42-byte FLAC STREAMINFO header (or the WAV header), never from
a full decode; the speakers are scanned in ``nj`` processes. A file cut short must not
pass as shorter audio: a WAV's data size is compared with the file's, and each FLAC's last
frame is decoded, which costs about 0.2 ms per file (about a minute of CPU for the full
corpus, 292,367 utterances, against seconds for the headers alone); see
``asrc-bench librispeech-prep``.
"""

import codecs
import logging
import multiprocessing
import os
from pathlib import Path

from asrc.core.audio_info import AudioInfo, checked_or_reason
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import Utterance
from asrc.data.datadir import combine_data_dirs, format_speaker, write_blocks, write_lost_chars, write_skipped
from asrc.data.download import extract_archive, fetch_and_extract, verify_md5
from asrc.data.text import is_normalized, normalize_text_lost
from asrc.errors import AsrcError

__all__ = [
    "SUBSETS",
    "LIBRISPEECH_MD5",
    "LIBRISPEECH_BYTES",
    "LIBRISPEECH_UTTERANCES",
    "OPENSLR_URL",
    "MIRRORS",
    "COMBINED_SETS",
    "set_name",
    "download_librispeech",
    "prepare_librispeech",
]

logger = logging.getLogger(__name__)

SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
# Published MD5 sums, archive sizes and utterance counts (openslr.org/12).
LIBRISPEECH_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
LIBRISPEECH_BYTES = {
    "dev-clean": 337926286,
    "dev-other": 314305928,
    "test-clean": 346663984,
    "test-other": 328757843,
    "train-clean-100": 6387309499,
    "train-clean-360": 23049477885,
    "train-other-500": 30593501606,
}
LIBRISPEECH_UTTERANCES = {
    "dev-clean": 2703,
    "dev-other": 2864,
    "test-clean": 2620,
    "test-other": 2939,
    "train-clean-100": 28539,
    "train-clean-360": 104014,
    "train-other-500": 148688,
}
OPENSLR_URL = "https://www.openslr.org/resources/12"
MIRRORS = (
    "https://us.openslr.org/resources/12",
    "https://openslr.elda.org/resources/12",
    "https://openslr.magicdatatech.com/resources/12",
)
COMBINED_SETS = {
    "train_960": ("train-clean-100", "train-clean-360", "train-other-500"),
    "dev": ("dev-clean", "dev-other"),
}
_AUDIO_SUFFIXES = (".flac", ".wav")


def set_name(subset: str) -> str:
    """Data directory name of a subset: ``train-clean-100`` -> ``train_clean_100``."""
    return subset.replace("-", "_")


# --------------------------------------------------------------------------------------------
# download


def download_librispeech(
    subsets=SUBSETS,
    dest="downloads",
    base_url: str = OPENSLR_URL,
    mirrors=MIRRORS,
    source=None,
    md5s=None,
    sizes=None,
    keep_archives: bool = True,
    retries: int = 5,
    backoff: float = 2.0,
    progress: bool = True,
) -> Path:
    """Fetch and unpack LibriSpeech subsets into ``<dest>/LibriSpeech/<subset>``; returns that root.

    Args:
        subsets: names from :data:`SUBSETS` (or others your ``base_url``, mirrors or ``source``
            serve; from OpenSLR alone, another name is an error listing the known ones).
        dest: folder for the archives (``<subset>.tar.gz``) and the extracted ``LibriSpeech/``.
        base_url, mirrors: ``<url>/<subset>.tar.gz`` is tried on ``base_url`` then each mirror.
        source: a local folder or tarball instead of the network. A folder may hold
            ``<subset>.tar.gz`` archives (verified, then extracted) or an extracted tree
            (``<source>/LibriSpeech/<subset>`` or ``<source>/<subset>``, linked, not copied);
            a tarball must be named ``<subset>.tar.gz`` unless one subset is asked for.
        md5s, sizes: ``{subset: md5}`` / ``{subset: bytes}``; default the published ones
            (:data:`LIBRISPEECH_MD5`, :data:`LIBRISPEECH_BYTES`; with your own ``md5s``, sizes
            default to unchecked). A subset without an entry is not checked.
        keep_archives: keep downloaded ``.tar.gz`` after extraction (default) or delete them.

    A subset whose ``LibriSpeech/<subset>/.done`` stamp exists (next to speaker folders) is
    skipped. Raises :class:`asrc.data.download.DownloadError` (wrong MD5 twice, every mirror
    failing), :class:`FileNotFoundError` (a subset not found in ``source``), naming the subset,
    or :class:`AsrcError` (an archive without ``LibriSpeech/<subset>/<speaker>/``).
    """
    subsets = SUBSETS if subsets is None else [subsets] if isinstance(subsets, str) else list(subsets)
    if source is None and base_url == OPENSLR_URL and set(mirrors) <= set(MIRRORS):
        # OpenSLR serves these alone: a misspelt name would try every mirror before failing.
        unknown = [s for s in subsets if s not in SUBSETS]
        if unknown:
            raise AsrcError(f"unknown LibriSpeech subset{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(repr(s) for s in unknown)} (known: {', '.join(SUBSETS)})")
    if sizes is None:  # the published sizes belong with the published sums
        sizes = LIBRISPEECH_BYTES if md5s is None else {}
    md5s = LIBRISPEECH_MD5 if md5s is None else md5s
    dest = Path(dest)
    root = dest / "LibriSpeech"
    for subset in subsets:
        stamp = root / subset / ".done"
        if stamp.is_file():
            if _has_folders(root / subset) or (root / subset).is_symlink():
                logger.info("%s: already extracted (%s)", subset, stamp)
                continue
            # A stamp over no speaker folders (left by an archive without LibriSpeech/<subset>):
            # not trusted; the archive is extracted and checked again.
            stamp.unlink()
        if source is not None:
            _from_local(Path(source), subset, len(subsets), dest, root, stamp, md5s.get(subset), progress)
            continue
        archive = dest / f"{subset}.tar.gz"
        urls = [f"{url.rstrip('/')}/{subset}.tar.gz" for url in (base_url, *mirrors)]
        fetch_and_extract(
            urls,
            archive,
            dest,
            stamp,
            md5=md5s.get(subset),
            size=sizes.get(subset),
            retries=retries,
            backoff=backoff,
            progress=progress,
        )
        _check_extracted(archive, root, subset, stamp)
        if not keep_archives:
            archive.unlink()
            archive.with_name(archive.name + ".md5").unlink(missing_ok=True)
    return root


def _from_local(source: Path, subset, n_subsets, dest: Path, root: Path, stamp: Path, md5, progress):
    if source.is_file():
        if source.name != f"{subset}.tar.gz" and n_subsets != 1:
            raise FileNotFoundError(f"source {source} is one tarball; it cannot provide {subset}")
        archive = source
    elif (source / f"{subset}.tar.gz").is_file():
        archive = source / f"{subset}.tar.gz"
    else:
        for tree in (source / "LibriSpeech" / subset, source / subset):
            if tree.is_dir():
                link = root / subset
                if not link.exists():
                    root.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(tree.resolve(), target_is_directory=True)
                elif link.resolve() != tree.resolve():
                    raise AsrcError(f"{link} exists and is not {tree}; remove it or choose another dest")
                return
        raise FileNotFoundError(
            f"{subset}: not in source {source} (looked for {subset}.tar.gz, LibriSpeech/{subset}/, {subset}/)"
        )
    if md5 is not None and not verify_md5(archive, md5, progress=progress):
        raise AsrcError(f"{archive}: MD5 differs from the published {md5}; the archive is corrupt or truncated")
    extract_archive(archive, dest, stamp, progress=progress)
    _check_extracted(archive, root, subset, stamp)


def _has_folders(path) -> bool:
    """Whether the folder ``path`` holds a (non-hidden) folder: a subset's speakers."""
    try:
        with os.scandir(path) as entries:
            return any(e.is_dir() and not e.name.startswith(".") for e in entries)
    except OSError:
        return False


def _check_extracted(archive, root: Path, subset, stamp: Path):
    """An archive that brought no ``LibriSpeech/<subset>/<speaker>/`` is an error; the stamp
    that extraction wrote (and the folder made only to hold it) are removed."""
    if _has_folders(root / subset):
        return
    stamp.unlink(missing_ok=True)
    try:
        (root / subset).rmdir()  # only if empty: never anything the archive brought
    except OSError:
        pass
    raise AsrcError(f"{archive}: holds no LibriSpeech/{subset} folder with speaker folders in it "
                    f"(is it the {subset} archive?)")


# --------------------------------------------------------------------------------------------
# preparation


def prepare_librispeech(
    corpus_dir,
    out_dir,
    subsets=None,
    nj: int = 2,
    combine: bool = True,
    expected_sr: int = SAMPLE_RATE,
    progress: bool = True,
) -> dict:
    """Write a Kaldi-style data directory per subset (and the combined sets); returns ``{set: path}``.

    Args:
        corpus_dir: the ``LibriSpeech`` folder (or its parent) holding ``<subset>/`` folders.
        out_dir: where ``<set>/`` directories go (``data``).
        subsets: subset folder names; default every folder of :data:`SUBSETS` present, or, if
            none is, every folder in ``corpus_dir`` (e.g. a synthetic corpus' ``train``).
        nj: worker processes (the speakers of all subsets are shared among them).
        combine: also write :data:`COMBINED_SETS` whose parts are all in ``out_dir``.
        expected_sr: audio at another rate (or not mono) is skipped, with the reason.

    Every utterance of the corpus ends up either in the tables or in ``<set>/skipped.txt``
    with a reason (no audio, no transcript line, unreadable, truncated or wrong-rate audio,
    NaN/Inf samples in a float file, empty transcript, id not matching its folder, a transcript
    line that is not UTF-8, a second transcript line or audio file for an id, audio outside
    the ``<subset>/<speaker>/<chapter>/`` folders). A ``corpus_dir`` that is itself a subset
    folder (its folders are numeric speaker ids) is an error.
    Transcripts already in LibriSpeech style are kept verbatim; others go through
    :func:`asrc.data.text.normalize_text_lost`, and those that lost characters with no ASCII
    spelling are listed in ``<set>/text_lost_chars.txt``.
    """
    corpus_dir = Path(os.path.abspath(corpus_dir))
    if (corpus_dir / "LibriSpeech").is_dir():
        corpus_dir = corpus_dir / "LibriSpeech"
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"prepare_librispeech: no corpus folder {corpus_dir}")
    subsets = _find_subsets(corpus_dir, subsets)
    out_dir = Path(out_dir)
    tasks = []
    stray = {}  # subset -> [(utt-id, reason)] for audio files directly in the subset folder
    for subset in subsets:
        subset_dir = os.path.join(corpus_dir, subset)
        speakers, stray[subset] = [], []
        for e in os.scandir(subset_dir):
            if e.name.startswith("."):
                continue
            if e.is_dir():
                speakers.append(e.name)
            elif e.name.endswith(_AUDIO_SUFFIXES):
                stray[subset].append((e.name.rsplit(".", 1)[0], f"{e.path}: audio directly in the subset folder, "
                                      f"not read; expected in {subset}/<speaker>/<chapter>/"))
        if not speakers:
            raise AsrcError(f"prepare_librispeech: {subset_dir} has no speaker folders")
        tasks.extend((subset, subset_dir, spk, expected_sr) for spk in sorted(speakers))
    written = {}
    remaining = {s: 0 for s in subsets}
    for task in tasks:
        remaining[task[0]] += 1
    collected = {s: ([], stray[s], []) for s in subsets}
    in_memory = {}  # blocks kept for the combined sets
    keep = {p for parts in COMBINED_SETS.values() for p in parts} if combine else set()
    with _pool(nj) as pool, _progress(len(tasks), progress) as bar:
        results = pool.imap_unordered(_scan_speaker, tasks, chunksize=4) if pool else map(_scan_speaker, tasks)
        for subset, block, skipped, lost in results:
            if block is not None:
                collected[subset][0].append(block)
            collected[subset][1].extend(skipped)
            collected[subset][2].extend(lost)
            bar.update(1)
            remaining[subset] -= 1
            if remaining[subset] == 0:
                blocks, skipped, lost = collected.pop(subset)
                name = set_name(subset)
                if not blocks:
                    report = write_skipped(out_dir / name, skipped)
                    write_lost_chars(out_dir / name, lost)
                    raise AsrcError(f"prepare_librispeech: no usable utterance in {corpus_dir / subset}; "
                                    f"the reasons are in {report}")
                written[name] = write_blocks(out_dir / name, blocks, skipped=skipped, lost=lost)
                logger.info("%s: %d utterances, %d skipped", name, sum(len(b.utt_ids) for b in blocks), len(skipped))
                if subset in keep:
                    in_memory[subset] = (blocks, skipped, lost)
    for name, parts in (COMBINED_SETS.items() if combine else ()):
        if all(p in in_memory for p in parts):
            blocks = [b for p in parts for b in in_memory[p][0]]
            skipped = [s for p in parts for s in in_memory[p][1]]
            lost = [x for p in parts for x in in_memory[p][2]]
            written[name] = write_blocks(out_dir / name, blocks, skipped=skipped, lost=lost)
        elif any(p in in_memory for p in parts) and all((out_dir / set_name(p) / "wav.scp").is_file() for p in parts):
            written[name] = combine_data_dirs(out_dir / name, [out_dir / set_name(p) for p in parts])
    return written


def _find_subsets(corpus_dir: Path, subsets):
    if subsets is None:
        subsets = [s for s in SUBSETS if (corpus_dir / s).is_dir()]
        if not subsets:
            subsets = sorted(e.name for e in os.scandir(corpus_dir) if e.is_dir() and not e.name.startswith("."))
        if not subsets:
            raise FileNotFoundError(f"prepare_librispeech: no subset folders in {corpus_dir}")
        if all(s.isdigit() for s in subsets):  # speaker folders: the subset folder itself was given
            raise AsrcError(f"prepare_librispeech: {corpus_dir} looks like a subset folder (its folders "
                            f"{', '.join(subsets[:3])}{', ...' if len(subsets) > 3 else ''} are speakers); "
                            f"pass the folder above it, {corpus_dir.parent} (--subsets {corpus_dir.name} "
                            f"for this subset alone)")
        return subsets
    subsets = [subsets] if isinstance(subsets, str) else list(subsets)
    for s in subsets:
        if not (corpus_dir / s).is_dir():
            raise FileNotFoundError(f"prepare_librispeech: subset {s} not found ({corpus_dir / s})")
    return subsets


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _pool(nj: int):
    if nj <= 1:
        return _NoPool()
    return multiprocessing.get_context("fork").Pool(nj)


def _progress(total, enabled):
    from tqdm import tqdm

    return tqdm(total=total, unit="spk", desc="librispeech", disable=not enabled, mininterval=0.5)


def _scan_speaker(task):
    """One speaker folder -> (subset, SpeakerBlock or None, [(utt-id, reason)],
    [(utt-id, lost characters, original text)]). Runs in a worker."""
    subset, subset_dir, speaker, expected_sr = task
    utts, skipped, lost = [], [], []
    speaker_dir = subset_dir + "/" + speaker
    for chapter_entry in os.scandir(speaker_dir):
        name = chapter_entry.name
        if name.startswith("."):
            continue
        if chapter_entry.is_dir():
            _scan_chapter(chapter_entry.path, speaker, name, expected_sr, utts, skipped, lost)
        elif name.endswith(_AUDIO_SUFFIXES):
            skipped.append((name.rsplit(".", 1)[0], f"{chapter_entry.path}: audio directly in the speaker folder, "
                            f"not read; expected in a chapter folder {speaker}/<chapter>/"))
    block = format_speaker(speaker, utts, where=speaker_dir) if utts else None
    return subset, block, skipped, lost


def _scan_chapter(chapter_dir, speaker, chapter, expected_sr, utts, skipped, lost):
    prefix = f"{speaker}-{chapter}"
    trans_name = prefix + ".trans.txt"
    audio = {}
    has_trans = False
    path_prefix = chapter_dir + "/"
    dir_fd = os.open(chapter_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for entry in os.scandir(dir_fd):
            name = entry.name
            if name.endswith(_AUDIO_SUFFIXES):
                utt = name.rsplit(".", 1)[0]
                other = audio.setdefault(utt, name)
                if other != name:  # X.flac and X.wav: the FLAC (LibriSpeech's format) is read
                    used, extra = (other, name) if other.endswith(".flac") else (name, other)
                    audio[utt] = used
                    skipped.append((utt, f"{path_prefix}{extra}: a second audio file for this id, not read; "
                                         f"{used} is used"))
            elif name == trans_name:
                has_trans = True
            elif not name.startswith(".") and entry.is_dir():
                _misplaced(path_prefix + name, f"directly in the chapter folder {speaker}/{chapter}/", skipped)
        trans_path = path_prefix + trans_name
        if not has_trans:
            skipped.extend((utt, f"no transcript file {trans_path}") for utt in audio)
            return
        with open(trans_path, "rb") as f:
            data = f.read()
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        id_prefix = prefix + "-"
        seen = {}  # utt-id -> line number
        for lineno, line in enumerate(data.splitlines(), 1):
            try:
                line = line.decode("utf-8")
                bad_utf8 = False
            except UnicodeDecodeError:
                line, bad_utf8 = line.decode("utf-8", errors="replace"), True
            fields = line.split(None, 1)  # any whitespace: a tab must not end up in the id
            if not fields:
                continue
            utt = fields[0]
            if utt in seen:
                skipped.append((utt, f"a second transcript line for this id, {trans_path}:{lineno} "
                                     f"(the first is line {seen[utt]}), not read"))
                continue
            seen[utt] = lineno
            name = audio.pop(utt, None)
            if bad_utf8:
                skipped.append((utt, f"transcript line {lineno} of {trans_path} is not valid UTF-8"))
                continue
            if name is None:
                skipped.append((utt, f"no audio file for {trans_path}:{lineno}"))
                continue
            text = fields[1] if len(fields) > 1 else ""
            path = path_prefix + name
            if not utt.startswith(id_prefix):
                skipped.append((utt, f"id does not belong to folder {speaker}/{chapter} ({path})"))
                continue
            lost_chars = ""
            if not is_normalized(text):
                normalized, lost_chars = normalize_text_lost(text)
                if not normalized:
                    skipped.append((utt, f"transcript {text!r} is empty after normalisation ({trans_path}:{lineno})"))
                    continue
                text, original = normalized, text
            # Opening relative to the chapter's fd spares the kernel the full path walk.
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                try:
                    head = os.read(fd, 42)
                finally:
                    os.close(fd)
            except OSError:
                head = b""
            # FLAC STREAMINFO inline (the common case, 280k times): rate (20 bits) |
            # channels - 1 (3) | bits - 1 (5) | total samples (36), big-endian at bytes 18..25.
            info = None
            if head[:4] == b"fLaC" and len(head) == 42 and head[4] & 0x7F == 0:
                bits = int.from_bytes(head[18:26], "big")
                if bits & 0xFFFFFFFFF:
                    info = AudioInfo(bits >> 44, bits & 0xFFFFFFFFF, ((bits >> 41) & 7) + 1)
            checked, reason = checked_or_reason(path, info=info, expected_sr=expected_sr)
            if reason:
                skipped.append((utt, reason))
                continue
            rate, samples, _ = checked
            utts.append(Utterance(utt, speaker, path, text, samples, rate))
            if lost_chars:
                lost.append((utt, lost_chars, original))
        for utt in audio:
            skipped.append((utt, f"no transcript line in {trans_path}"))
    finally:
        os.close(dir_fd)


def _misplaced(folder, expected, skipped):
    """List every audio file under ``folder`` (not read) in ``skipped``, saying where it was expected."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(_AUDIO_SUFFIXES):
                skipped.append((name.rsplit(".", 1)[0], f"{dirpath}/{name}: in a subfolder, not read; "
                                                        f"audio is expected {expected}"))
