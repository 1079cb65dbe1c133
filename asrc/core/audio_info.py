"""Audio facts read from file headers, and the checks a header cannot answer.

:func:`audio_info` answers "how many samples at which rate" for FLAC, WAV and NIST SPHERE
files by reading their first bytes (42 for FLAC), which is what lets
:func:`asrc.data.librispeech.prepare_librispeech` handle 280k files in seconds.  Any other
format, and the rare header these parsers decline (FLAC behind an ID3 tag, FLAC with an
unknown total, WAV without a ``data`` chunk in its first 64 KiB), goes through
``soundfile.info``. A WAV or SPHERE file shorter than its header promises is an error
(libsndfile would silently read the part that is there).

:func:`check_audio` adds what only decoding shows: a FLAC file cut short (its last frame
is decoded), NaN/Inf samples in float files, and with ``deep`` a full decode.
"""

import os
from typing import NamedTuple

__all__ = ["AudioInfo", "AudioFileError", "AudioHeaderError", "audio_info", "read_header_info", "check_audio",
           "checked_or_reason", "count_nonfinite", "stated_length"]

_FLAC_MAGIC = b"fLaC"
_STREAMINFO_BYTES = 42  # "fLaC" + 4-byte block header + 34-byte STREAMINFO
_TOTAL_MASK = (1 << 36) - 1
_WAV_PROBE_BYTES = 4096
_WAV_MAX_PROBE = 1 << 16
# Data sizes that mean "unknown, read to the end": unset, streamed, and SoX's MS_UNSPEC.
_WAV_UNSET_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000)
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


class AudioInfo(NamedTuple):
    """What the header says. ``duration`` is ``num_samples / sample_rate`` seconds."""

    sample_rate: int
    num_samples: int  # per channel
    channels: int

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


class AudioFileError(ValueError):
    """Audio that is not what it claims (truncated, corrupt, NaN/Inf samples); the message
    names the file and the fault."""


class AudioHeaderError(AudioFileError):
    """A file whose header cannot be read, or that is shorter than its header promises; the
    message names the file and the reason."""


def audio_info(path) -> AudioInfo:
    """Sample rate, samples per channel and channel count of the audio file ``path``.

    Fast header parsers for FLAC, WAV (RIFF/RF64 PCM and float) and NIST SPHERE; anything
    else, or a header they cannot decide on, falls back to ``soundfile.info`` (and, if that
    reports no length, to decoding). Raises :class:`AudioHeaderError` naming the file when
    the file is not readable audio, :class:`FileNotFoundError` when it does not exist.
    """
    info = read_header_info(path)
    if info is not None:
        return info
    return _soundfile_info(path)


def read_header_info(path, head: bytes = None):
    """The fast path of :func:`audio_info`: an :class:`AudioInfo`, or ``None`` to fall back.

    ``head`` may hold the file's first bytes if the caller already read them. Raises
    :class:`AudioHeaderError` for a header that is recognisably broken (e.g. a FLAC
    STREAMINFO giving a zero sample rate, a file too short to hold its header, a WAV or
    SPHERE file holding fewer samples than its header promises).
    """
    if head is None:
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, _STREAMINFO_BYTES)
            if head[:4] == b"RIFF" or head[:4] == b"RF64" or head[:4] == b"NIST":
                head += os.read(fd, _WAV_PROBE_BYTES - len(head))
        except IsADirectoryError:
            raise AudioHeaderError(f"{path}: is a directory, not an audio file") from None
        finally:
            os.close(fd)
    magic = head[:4]
    if magic == _FLAC_MAGIC:
        return parse_flac_streaminfo(head, path)
    if magic in (b"RIFF", b"RF64"):
        return _parse_wav(head, path)
    if magic == b"NIST":
        return _parse_nist(head, path)
    if not head:
        raise AudioHeaderError(f"{path}: empty file")
    return None


def parse_flac_streaminfo(head: bytes, path="<bytes>"):
    """Decode the STREAMINFO block that must follow ``fLaC`` (FLAC spec, section 8.2).

    Returns ``None`` when the total sample count is 0 ("unknown", allowed by the spec for
    streams) so the caller can fall back to counting.
    """
    if len(head) < _STREAMINFO_BYTES:
        raise AudioHeaderError(f"{path}: truncated FLAC header ({len(head)} bytes, need 42)")
    if head[4] & 0x7F != 0 or int.from_bytes(head[5:8], "big") != 34:
        raise AudioHeaderError(f"{path}: FLAC file does not start with a 34-byte STREAMINFO block")
    # 64 bits: sample rate (20) | channels - 1 (3) | bits per sample - 1 (5) | total samples (36)
    bits = int.from_bytes(head[18:26], "big")
    sample_rate = bits >> 44
    if sample_rate == 0:
        raise AudioHeaderError(f"{path}: FLAC STREAMINFO gives sample rate 0")
    total = bits & _TOTAL_MASK
    if total == 0:
        return None
    return AudioInfo(sample_rate, total, ((bits >> 41) & 7) + 1)


def _parse_wav(head: bytes, path):
    """RIFF/RF64 WAVE: ``fmt `` gives rate and block size, ``data`` (or ``ds64``) the length."""
    if len(head) < 12 or head[8:12] != b"WAVE":
        raise AudioHeaderError(f"{path}: RIFF file is not WAVE")
    pos, fmt, data_size, ds64_size = 12, None, None, None
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk_id == b"fmt ":
            if body + 16 > len(head):
                break
            fmt_tag = int.from_bytes(head[body : body + 2], "little")
            channels = int.from_bytes(head[body + 2 : body + 4], "little")
            sample_rate = int.from_bytes(head[body + 4 : body + 8], "little")
            block_align = int.from_bytes(head[body + 12 : body + 14], "little")
            fmt = (fmt_tag, channels, sample_rate, block_align)
        elif chunk_id == b"ds64" and body + 24 <= len(head):
            ds64_size = int.from_bytes(head[body + 8 : body + 16], "little")
        elif chunk_id == b"data":
            data_size = ds64_size if (size == 0xFFFFFFFF and ds64_size is not None) else size
            break
        pos = body + size + (size & 1)
    if fmt is None or data_size is None:
        if len(head) < _WAV_MAX_PROBE and isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as f:
                longer = f.read(_WAV_MAX_PROBE)
            if len(longer) > len(head):
                return _parse_wav(longer, path)
        return None
    fmt_tag, channels, sample_rate, block_align = fmt
    if fmt_tag not in (1, 3, 0xFFFE) or block_align == 0 or sample_rate == 0:
        return None  # compressed or odd WAV: let libsndfile decide
    if not isinstance(path, (str, os.PathLike)):
        return None if data_size in _WAV_UNSET_SIZES else AudioInfo(sample_rate, data_size // block_align, channels)
    held = os.path.getsize(path) - (pos + 8)
    if data_size in _WAV_UNSET_SIZES:
        data_size = held  # streaming writers leave the size unset: the data runs to the end
    elif data_size > held:
        # libsndfile clamps to what is there and reads on without a word.
        raise AudioHeaderError(f"{path}: truncated WAV: the header promises {data_size // block_align} samples, "
                               f"the file holds {max(held, 0) // block_align}")
    return AudioInfo(sample_rate, data_size // block_align, channels)


def _parse_nist(head: bytes, path):
    """NIST SPHERE: a text header (``name -type value`` lines) up to ``end_head``."""
    text = head.split(b"end_head", 1)[0].decode("ascii", "replace").split("\n")
    fields = {}
    for line in text[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2].strip()
    coding = fields.get("sample_coding", "pcm")
    if not coding.startswith("pcm") or "shorten" in coding or "wavpack" in coding:
        return None  # compressed SPHERE: libsndfile reports it properly
    try:
        info = AudioInfo(int(fields["sample_rate"]), int(fields["sample_count"]), int(fields.get("channel_count", 1)))
        header_bytes, sample_bytes = int(text[1]), int(fields["sample_n_bytes"])
    except (KeyError, ValueError, IndexError):
        return None
    if sample_bytes <= 0 or info.channels <= 0:
        return None
    if isinstance(path, (str, os.PathLike)):
        held = (os.path.getsize(path) - header_bytes) // (sample_bytes * info.channels)
        if held < info.num_samples:
            raise AudioHeaderError(f"{path}: truncated SPHERE file: the header promises {info.num_samples} "
                                   f"samples, the file holds {max(held, 0)}")
    return info


def _soundfile_info(path) -> AudioInfo:
    import soundfile

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such audio file")
    try:
        info = soundfile.info(str(path))
        frames = info.frames
        if frames <= 0:
            frames = len(soundfile.read(str(path), dtype="int16", always_2d=True)[0])
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioHeaderError(f"{path}: not readable audio ({e})") from None
    return AudioInfo(info.samplerate, frames, info.channels)


_TAIL_BYTES = 1 << 16  # an Ogg page is at most 65307 bytes


def stated_length(path, fmt: str):
    """What a file of libsndfile format ``fmt`` states about its length where libsndfile itself
    clamps to the bytes present and reads a cut file without a word (measured: AIFF, AU, W64;
    Opus in Ogg; MP3 with a VBR/Info header):

    - an ``int``: the samples per channel its header promises (AIFF ``COMM``, AU data size,
      W64 ``data`` chunk);
    - ``"unfinished"``: an Ogg stream whose last page is cut short or lacks the end-of-stream
      flag every finished Ogg file's last page has;
    - ``"trust"``: an MP3 file with a Xing / Info / VBRI header, whose frame count
      libsndfile reports exactly (without one its count is an estimate from the file size);
    - ``None``: nothing to check against.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4096)
            if fmt == "OGG":
                f.seek(max(0, size - _TAIL_BYTES))
                tail = f.read()
    except OSError:
        return None
    if fmt == "AIFF":
        return _aiff_frames(head)
    if fmt == "AU" and head[:4] == b".snd" and len(head) >= 24:
        offset, data_size, encoding, _rate, channels = (int.from_bytes(head[i:i + 4], "big") for i in range(4, 24, 4))
        width = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}.get(encoding)
        if width and channels and data_size != 0xFFFFFFFF:
            return data_size // (width * channels)
        return None
    if fmt == "W64":
        return _w64_frames(head)
    if fmt == "OGG":
        last = tail.rfind(b"OggS")
        if last < 0 or len(tail) - last < 27:
            return "unfinished"
        nseg = tail[last + 26]
        table = tail[last + 27:last + 27 + nseg]
        if len(table) < nseg or last + 27 + nseg + sum(table) > len(tail) or not tail[last + 5] & 0x04:
            return "unfinished"
        return None
    if fmt == "MP3":
        start = 0
        if head[:3] == b"ID3" and len(head) >= 10:  # ID3v2 tag: syncsafe size
            start = 10 + sum((head[6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4))
            with open(path, "rb") as f:
                f.seek(start)
                head = f.read(4096)
            start = 0
        frame = head[start:start + 2048]
        return "trust" if any(tag in frame for tag in (b"Xing", b"Info", b"VBRI")) else None
    return None


def _aiff_frames(head: bytes):
    """numSampleFrames of an AIFF/AIFC ``COMM`` chunk in the first bytes, or None."""
    if head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "big")
        if chunk == b"COMM" and pos + 14 <= len(head):
            return int.from_bytes(head[pos + 10:pos + 14], "big")
        pos += 8 + size + (size & 1)
    return None


def _w64_frames(head: bytes):
    """Frames of a Sony Wave64 file's ``data`` chunk (16-byte GUID ids, 64-bit sizes that
    include the 24-byte chunk header), from its ``fmt`` block alignment; or None."""
    if head[:4] != b"riff":
        return None
    pos, align = 40, None
    while pos + 24 <= len(head):
        chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 16:pos + 24], "little")
        if chunk == b"fmt " and pos + 24 + 14 <= len(head):
            align = int.from_bytes(head[pos + 24 + 12:pos + 24 + 14], "little")
        elif chunk == b"data":
            return (size - 24) // align if align else None
        if size < 24:
            return None
        pos += (size + 7) // 8 * 8
    return None


def count_nonfinite(samples) -> int:
    """Number of NaN/Inf values in a numpy array."""
    import numpy as np

    return int(samples.size - np.count_nonzero(np.isfinite(samples)))


def check_audio(path, deep: bool = False, info: AudioInfo = None) -> AudioInfo:
    """:func:`audio_info`, plus the faults a header alone does not show.

    A FLAC file has its last samples decoded (a file cut short fails there); a float file
    (the only kind that can hold NaN/Inf) is decoded in full and must have finite samples.
    With ``deep`` every file is decoded in full and must give as many samples as its header
    promises. ``info``, when the caller has read the header already, spares reading it again.
    Raises :class:`AudioFileError` (or :class:`AudioHeaderError`) naming the file,
    :class:`FileNotFoundError` when it does not exist.
    """
    import soundfile

    info = audio_info(path) if info is None else info
    decoded, nonfinite = 0, 0
    try:
        with soundfile.SoundFile(str(path)) as f:
            stated = stated_length(path, f.format)
            if stated == "unfinished":
                raise AudioFileError(f"{path}: truncated: its Ogg stream ends without its last page")
            if isinstance(stated, int) and stated > info.num_samples:
                raise AudioFileError(f"{path}: truncated: the header promises {stated} samples, the file holds "
                                     f"{info.num_samples}")
            if deep or f.subtype in _FLOAT_SUBTYPES:
                for block in f.blocks(1 << 16, dtype="float32", always_2d=True):
                    decoded += len(block)
                    nonfinite += count_nonfinite(block)
            elif f.format == "FLAC" and info.num_samples > 0:
                # Seeking to the last sample decodes the last frame: cheap, and where a cut shows.
                f.seek(info.num_samples - 1)
                decoded = info.num_samples - 1 + len(f.read(1))
            else:
                decoded = info.num_samples
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        where = f"after {decoded} of" if decoded else "before the end of"
        raise AudioFileError(f"{path}: truncated or corrupt: decoding fails {where} the {info.num_samples} "
                             f"samples its header promises ({e})") from None
    if decoded != info.num_samples:
        raise AudioFileError(f"{path}: truncated or corrupt: the header promises {info.num_samples} samples, "
                             f"{decoded} could be decoded")
    if nonfinite:
        raise AudioFileError(f"{path}: audio has {nonfinite} non-finite samples (NaN/Inf)")
    return info


def checked_or_reason(path, info: AudioInfo = None, expected_sr: int = None):
    """``(check_audio(path, info=info), None)``, or ``(None, why)`` for a corpus's skip report;
    with ``expected_sr``, audio at another rate or not mono is such a reason too."""
    try:
        checked = check_audio(path, info=info)
    except (AudioHeaderError, OSError) as e:
        return None, f"unreadable audio: {e}"
    except AudioFileError as e:  # truncated, or NaN/Inf samples: the message says which
        return None, str(e)
    if expected_sr is not None and (checked.sample_rate != expected_sr or checked.channels != 1):
        return None, f"{path}: {checked.sample_rate} Hz, {checked.channels} channel(s); expected {expected_sr} Hz mono"
    return checked, None
