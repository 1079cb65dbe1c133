"""Resumable, verified downloads and all-or-nothing archive extraction.

One helper for every corpus (LibriSpeech, AN4):

- :func:`download` fetches a URL (trying mirrors in turn) into ``<dest>.part`` with HTTP
  ``Range`` requests, so an interrupted transfer, in this run or a previous one, resumes
  where it stopped; the MD5 is computed while the bytes arrive. A wrong size or MD5 is
  reported, the file deleted and fetched once more from scratch; a second mismatch raises
  :class:`DownloadError`. Only a verified file is renamed to ``dest`` (and a ``<dest>.md5``
  stamp records the verification so later runs do not re-hash gigabytes).
- :func:`extract_archive` unpacks a tarball into a temporary directory next to the target,
  then moves the tree into place and only then writes the ``.done`` stamp: a crash or a
  corrupt archive never leaves a half-extracted tree that looks finished.
"""

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path

from asrc.core.files import atomic_write, is_gzip
from asrc.errors import AsrcError

__all__ = [
    "DownloadError",
    "CorruptArchiveError",
    "download",
    "file_md5",
    "verify_md5",
    "extract_archive",
    "fetch_and_extract",
    "fetch_lm",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "asrc-data/0.1 (+https://github.com/asrc)"


class DownloadError(AsrcError):
    """A download that failed on every mirror, or whose content is wrong twice."""


class CorruptArchiveError(AsrcError):
    """An archive that cannot be read to its end (truncated or damaged)."""


def file_md5(path, progress: bool = False) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    from tqdm import tqdm

    h = hashlib.md5()
    size = os.path.getsize(path)
    with open(path, "rb") as f, tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"md5 {Path(path).name}", disable=not progress
    ) as bar:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".md5")


def verify_md5(path, md5: str, progress: bool = True) -> bool:
    """True if ``path`` has MD5 ``md5``; a ``<path>.md5`` stamp (md5, size, mtime) skips re-hashing."""
    path = Path(path)
    st = path.stat()
    stamp = _stamp_path(path)
    expected_stamp = f"{md5} {st.st_size} {st.st_mtime_ns}\n"
    if stamp.is_file() and stamp.read_text() == expected_stamp:
        return True
    if file_md5(path, progress=progress) != md5:
        return False
    try:
        with atomic_write(stamp) as f:
            f.write(expected_stamp)
    except OSError:  # a read-only folder (e.g. a shared corpus): verified, just not remembered
        pass
    return True


def download(
    urls,
    dest,
    md5: str = None,
    size: int = None,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
) -> Path:
    """Download the first working URL of ``urls`` (a URL or a list of mirrors) to ``dest``.

    Args:
        urls: one URL or a list tried in order; a mirror that keeps failing gives way to the
            next, and wrong content is fetched again from the next mirror.
        dest: final file path; bytes go to ``<dest>.part`` first (kept across runs to resume).
        md5: expected hex MD5, or ``None`` to skip the check.
        size: expected size in bytes, or ``None``.
        retries: attempts per mirror for transient failures (connection dropped, timeouts,
            HTTP 5xx); each attempt resumes from the bytes already on disk.
        backoff: seconds to wait after the first failure, doubling up to 30 s.

    Returns ``dest``. An existing ``dest`` that verifies is not fetched again; one that does
    not is reported and replaced. Raises :class:`DownloadError` naming the URL(s) and the
    expected and actual MD5/size when no mirror gives the right bytes.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError("download: no URL given")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if _content_ok(dest, md5, size, progress):
            return dest
        logger.warning("%s: existing file has the wrong size or MD5; fetching it again", dest)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    failures = []
    order = urls
    for fresh_start in (False, True):
        if fresh_start:
            part.unlink(missing_ok=True)
        fetched = False
        for i, url in enumerate(order):
            try:
                hasher = _fetch_with_retries(url, part, retries, timeout, backoff, progress)
                fetched = True
                # A second fetch, if the content is wrong, starts with the next mirror.
                order = order[i + 1 :] + order[: i + 1]
                break
            except DownloadError as e:
                failures.append(str(e))
                logger.warning("%s", e)
        if not fetched:
            raise DownloadError(f"could not download {dest.name}:\n  " + "\n  ".join(failures))
        actual_size, actual_md5 = part.stat().st_size, hasher.hexdigest()
        if size is not None and actual_size != size:
            problem = f"size {actual_size} bytes, expected {size}"
        elif md5 is not None and actual_md5 != md5:
            problem = f"MD5 {actual_md5}, expected {md5}"
        else:
            os.replace(part, dest)
            if md5 is not None:
                st = dest.stat()
                with atomic_write(_stamp_path(dest)) as f:
                    f.write(f"{md5} {st.st_size} {st.st_mtime_ns}\n")
            return dest
        message = f"{url}: downloaded file is corrupt or truncated ({problem})"
        failures.append(message)
        if not fresh_start:
            logger.warning("%s; deleting it and fetching it again from scratch", message)
    part.unlink(missing_ok=True)
    raise DownloadError(f"{dest.name}: wrong content twice, giving up:\n  " + "\n  ".join(failures))


def _content_ok(path: Path, md5, size, progress) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return md5 is None or verify_md5(path, md5, progress)


def _fetch_with_retries(url, part: Path, retries, timeout, backoff, progress):
    """Fetch ``url`` into ``part``, resuming; returns the MD5 hasher of the whole file."""
    state = {"hasher": None, "hashed": 0}
    last_error = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
            logger.info("%s: retry %d/%d, resuming at byte %d", url, attempt, retries - 1, _size(part))
        try:
            return _fetch_once(url, part, timeout, progress, state)
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            last_error = f"HTTP {e.code} {e.reason}"
        except (urllib.error.URLError, HTTPException, OSError, _Incomplete) as e:  # OSError: resets, timeouts, TLS
            last_error = f"{type(e).__name__}: {e}"
        logger.warning("%s: transfer interrupted (%s)", url, last_error)
    raise DownloadError(f"{url}: failed after {max(1, retries)} attempt(s), last error: {last_error}")


class _Incomplete(Exception):
    pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fetch_once(url, part: Path, timeout, progress, state):
    from tqdm import tqdm

    have = _size(part)
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        total = _content_range_total(e.headers.get("Content-Range"))  # 416: "bytes */<size>"
        e.close()
        response = None
    if response is None:
        if total == have:  # nothing left to send: the part file is complete
            return _hash_existing(part, state)
        # Longer than the file, or its size unknown: not known to be a prefix of it.
        logger.warning("%s: %s has %d bytes, the file on the server %s; starting over", url, part, have,
                       "an unknown size" if total is None else f"{total}")
        part.unlink(missing_ok=True)
        state["hasher"], state["hashed"] = None, 0
        return _fetch_once(url, part, timeout, progress, state)  # no Range request now: no recursion
    with response:
        if have and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                raise _Incomplete(f"server resumed at byte {start}, expected {have}")
        elif have:
            logger.info("%s: server ignored the Range request; starting over", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        hasher = _hash_existing(part, state) if have else hashlib.md5()
        state["hasher"], state["hashed"] = hasher, have
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name[: -len(".part")],
            disable=not progress,
        ) as bar:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                f.write(block)
                hasher.update(block)
                state["hashed"] += len(block)
                bar.update(len(block))
        if total is not None and state["hashed"] < total:
            raise _Incomplete(f"connection closed at byte {state['hashed']} of {total}")
    return hasher


def _hash_existing(part: Path, state):
    """MD5 of the bytes already in ``part``, reusing the running hash when it covers them."""
    have = _size(part)
    if state["hasher"] is not None and state["hashed"] == have:
        return state["hasher"]
    h = hashlib.md5()
    with open(part, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    state["hasher"], state["hashed"] = h, have
    return h


def _content_range_start(value):
    # "bytes 100-999/1000"
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _content_range_total(value):
    # "bytes */1000" (a 416 answer) -> 1000; None when absent or unknown ("*")
    try:
        return int(value.rsplit("/", 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None


def extract_archive(archive, dest_dir, done_stamp, progress: bool = True) -> Path:
    """Unpack the tarball ``archive`` into ``dest_dir``, all or nothing; idempotent.

    Members are extracted (with tarfile's ``data`` filter: no absolute paths, no links out of
    the tree) into ``dest_dir/.extract-<archive>``, then moved into ``dest_dir`` (merging with
    directories already there, e.g. ``LibriSpeech/`` shared by the subsets), and only then is
    ``done_stamp`` written. If ``done_stamp`` exists nothing is done. Raises
    :class:`CorruptArchiveError` naming the archive if it cannot be read to the end; the
    temporary tree is removed and no stamp is written.
    """
    from tqdm import tqdm

    archive, dest_dir, done_stamp = Path(archive), Path(dest_dir), Path(done_stamp)
    if done_stamp.is_file():
        return dest_dir
    if not archive.is_file():
        raise FileNotFoundError(f"extract_archive: no archive {archive}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".extract-{archive.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(archive, "rb") as raw, tqdm.wrapattr(
            raw, "read", total=archive.stat().st_size, desc=f"extract {archive.name}", disable=not progress
        ) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # Python < 3.11.4
                tar.extractall(tmp)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        # Only errors of reading the archive; a full disk (OSError) must not look like a bad
        # archive, which would be deleted and fetched again.
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorruptArchiveError(f"{archive}: cannot be extracted, truncated or corrupt ({e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _move_tree(tmp, dest_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    done_stamp.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(done_stamp) as f:
        f.write(f"extracted from {archive.name}\n")
    return dest_dir


def _move_tree(src: Path, dst: Path) -> None:
    """Move the content of ``src`` into ``dst`` by renames, merging existing directories."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _move_tree(Path(entry.path), target)
        elif entry.is_dir(follow_symlinks=False) and target.exists():
            raise AsrcError(f"cannot extract {entry.name}: {target} exists and is not a directory")
        else:
            os.replace(entry.path, target)


def fetch_and_extract(
    urls, archive, dest_dir, done_stamp, md5=None, size=None, retries=5, backoff=2.0, progress=True
) -> Path:
    """:func:`download` then :func:`extract_archive`; an archive that fails to extract is
    reported, deleted and downloaded once more (what catches corruption when no MD5 is known).
    """
    if Path(done_stamp).is_file():
        return Path(dest_dir)
    for attempt in (1, 2):
        download(urls, archive, md5=md5, size=size, retries=retries, backoff=backoff, progress=progress)
        try:
            return extract_archive(archive, dest_dir, done_stamp, progress=progress)
        except CorruptArchiveError as e:
            if attempt == 2:
                sources = ", ".join([urls] if isinstance(urls, str) else list(urls))
                raise CorruptArchiveError(f"{e}; downloaded twice from {sources}{_looks_like_a_page(archive)}") from None
            logger.warning("%s; deleting it and downloading it again", e)
            Path(archive).unlink()
            _stamp_path(Path(archive)).unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _looks_like_a_page(path) -> str:
    """``"; it is an HTML page, not an archive"`` when ``path`` starts like one (a login or error
    page served with status 200 in place of the file), else ``""``."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024).lstrip().lower()
    except OSError:
        return ""
    return "; it is an HTML page, not an archive" if head.startswith((b"<!doctype html", b"<html", b"<?xml")) \
        or b"<html" in head else ""


class _NotAnLM(Exception):
    """The content of an LM file is unreadable or not ARPA (the message says how)."""


def _read_block(f, n: int) -> bytes:
    """``f.read(n)``, where a read error (a truncated or damaged .gz) is the content's fault."""
    try:
        return f.read(n)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _NotAnLM(f"cannot read it: {e}") from None


_TAIL = 1 << 16  # an ARPA file's last 64 KiB must hold its \end\ line


def _has_end_line(tail: bytes) -> bool:
    """True if ``tail`` (the end of an ARPA file) ends with the ``\\end\\`` line, then only whitespace."""
    lines = tail.rstrip().splitlines()
    return bool(lines) and lines[-1].strip() == b"\\end\\"


_TRUNCATED = "truncated: no \\end\\ line at its end"


def _arpa_to(local: Path, dest: Path) -> None:
    """Check that ``local`` (decompressed if it is gzip) is a whole ARPA file (a ``\\data\\``
    section in its first 64 KiB, the ``\\end\\`` line at its end) and write it to ``dest``
    (through ``<dest>.part``; nothing is written when ``local`` is ``dest``). Raises
    :class:`_NotAnLM` for bad content; errors writing ``dest`` (a full disk) stay ``OSError``."""
    gz = is_gzip(local)
    opener = gzip.open if gz else open
    with opener(local, "rb") as f:
        head = _read_block(f, 1 << 16)  # a damaged gzip file fails here, at its first read
    if b"\\data\\" not in head:
        raise _NotAnLM("not an ARPA file (no \\data\\ section in its first 64 KiB)")
    if local.resolve() == dest.resolve():
        if gz:
            raise AsrcError(f"LM {local}: is gzip-compressed and also the destination; "
                            f"give another destination for the decompressed ARPA file")
        with open(local, "rb") as f:
            f.seek(max(0, local.stat().st_size - _TAIL))
            if not _has_end_line(f.read()):
                raise _NotAnLM(_TRUNCATED)
        return
    part = dest.with_name(dest.name + ".part")
    tail = b""
    try:
        with opener(local, "rb") as fin, open(part, "wb") as fout:
            while True:
                block = _read_block(fin, 1 << 20)
                if not block:
                    break
                fout.write(block)
                tail = block[-_TAIL:] if len(block) >= _TAIL else (tail + block)[-_TAIL:]
        if not _has_end_line(tail):
            raise _NotAnLM(_TRUNCATED)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)


def _download_name(url: str, dest: Path) -> str:
    """The local name of a downloaded LM: the last part of the URL's path (no query), never
    ``dest``'s own name (the download is decompressed or copied to ``dest``)."""
    name = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    if name in ("", ".", "..") or name == dest.name:
        name = dest.name + ".download"
    return name


def _tie_to_url(target: Path, url: str, md5) -> None:
    """Make ``target`` and ``<target>.part`` (kept to resume) belong to ``url``: the sidecar
    ``<target>.url`` names the URL they came from; files of another URL are deleted, and so are
    files of unknown origin (from an older version) unless ``md5`` will check them."""
    sidecar = target.with_name(target.name + ".url")
    recorded = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
    if recorded == url:
        return
    if recorded is not None or md5 is None:
        for p in (target, target.with_name(target.name + ".part"), _stamp_path(target)):
            if p.is_file():
                logger.info("%s: from %s, not %s; deleting it", p, recorded or "an unknown URL", url)
                p.unlink()
    with atomic_write(sidecar) as f:
        f.write(url + "\n")


def _source_identity(src: str):
    """What the ``.done`` stamp records about ``src``: the URL, or a local file's absolute path,
    size and mtime (a rewritten file is fetched again); ``None`` for a missing local file."""
    if src.startswith(("http://", "https://")):
        return src
    path = Path(src)
    if not path.is_file():
        return None
    st = path.stat()
    return f"{path.resolve()}\nsize {st.st_size} mtime_ns {st.st_mtime_ns}"


def fetch_lm(src, dest, md5: str = None, progress: bool = True) -> Path:
    """An ARPA n-gram LM at ``dest`` from ``src``: an http(s) URL (downloaded resumably next to
    ``dest``, ``md5`` checked if given), or a local file; gzip is decompressed (told by its
    magic bytes). A finished ``dest`` is kept while its ``.done`` stamp matches ``src`` (the same
    URL, or a local file of the same path, size and mtime); otherwise it is made again. Raises
    :class:`AsrcError` naming ``src`` when it is missing or not a whole ARPA file (no
    ``\\data\\`` section, or no ``\\end\\`` line at its end: truncated), or when ``dest`` is a
    directory.

    A download that cannot be read (a truncated ``.gz`` or ARPA file, an HTML page served
    instead of the LM) is deleted and downloaded once more, as :func:`fetch_and_extract` does
    with archives; if the second copy is bad too it is deleted as well, and the error names the
    URL and the local file, so that a rerun (once the server is fixed) downloads afresh."""
    src, dest = str(src), Path(dest)
    if dest.is_dir():
        raise AsrcError(f"LM destination {dest} is a directory; give the ARPA file to write, "
                        f"e.g. {dest / 'lm.arpa'}")
    is_url = src.startswith(("http://", "https://"))
    identity = _source_identity(src)
    stamp = dest.with_name(dest.name + ".done")
    if dest.is_file() and stamp.is_file():
        done = stamp.read_text(encoding="utf-8").strip()
        if done == identity:
            return dest
        if identity is None and done.split("\n", 1)[0] == str(Path(src).resolve()):
            logger.warning("LM %s no longer exists; keeping %s, made from it", src, dest)
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_url:
        target = dest.with_name(_download_name(src, dest))
        _tie_to_url(target, src, md5)
        for attempt in (1, 2):
            local = download(src, target, md5=md5, progress=progress)
            try:
                _arpa_to(local, dest)
                break
            except _NotAnLM as e:
                local.unlink(missing_ok=True)
                _stamp_path(local).unlink(missing_ok=True)
                if attempt == 2:
                    raise AsrcError(f"LM {src}: downloaded file {local}: {e}; deleted it, so that a rerun "
                                    f"downloads it again") from None
                logger.warning("LM %s: downloaded file %s: %s; deleting it and downloading it again", src, local, e)
    else:
        local = Path(src)
        if identity is None:
            raise FileNotFoundError(f"LM {src} does not exist")
        if md5 is not None and not verify_md5(local, md5, progress=progress):
            raise DownloadError(f"LM {src}: MD5 is not {md5}")
        try:
            _arpa_to(local, dest)
        except _NotAnLM as e:
            raise AsrcError(f"LM {src}: {e}") from None
    with atomic_write(stamp) as f:
        f.write(identity + "\n")
    return dest
