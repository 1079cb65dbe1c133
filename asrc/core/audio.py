"""Reading audio for recognition: files (soundfile; FFmpeg through PyAV for the formats libsndfile
does not know, e.g. M4A/AAC and WebM) and Kaldi pipe commands (``cmd |``).

The one way asrc reads samples: decoding, training helpers, calibration and the recipes all
come here.

Recognisers take mono float32 at 16 kHz. A file at another rate or with several channels is
an error naming it unless the caller allows the conversion (``resample`` /
``mix_channels``): a data directory whose audio is not what its recipe promised is usually a
preparation bug worth stopping for, while ``asrc-transcribe`` on a user's own file converts.

Damaged audio is an error naming the recording, never a silent partial read: a file with
fewer samples than its header promises (truncated), NaN/Inf samples, an empty file, a
directory, a failing pipe.
"""

import io
import logging
import math
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile as sf
import torch

from asrc.core.audio_info import AudioHeaderError, audio_info, count_nonfinite, read_header_info, stated_length
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import DataDirError, read_table
from asrc.errors import AsrcError
_UNKNOWN_FRAMES = 1 << 62  # libsndfile's count for a stream that does not state its length

logger = logging.getLogger(__name__)


def is_pipe(spec: str) -> bool:
    """True for a Kaldi ``wav.scp`` pipe entry such as ``sox a.flac -t wav - |``."""
    return spec.rstrip().endswith("|")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run_pipe(spec: str, what: str) -> bytes:
    cmd = spec.rstrip()[:-1].strip()
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    if proc.returncode != 0:
        err = _one_line(proc.stderr.decode("utf-8", "replace"))[-1000:]
        raise AsrcError(f"{what}: command {cmd!r} failed (exit {proc.returncode})" + (f": {err}" if err else ""))
    if not proc.stdout:
        raise AsrcError(f"{what}: command {cmd!r} wrote no audio to stdout")
    return proc.stdout


MIN_SPEECH_RATE = 8000  # telephone band; below it a recording is resampled with a warning
_SF_ERR_UNRECOGNISED_FORMAT = 1  # libsndfile: "Format not recognised"
# Decoded audio may fall this far short of the length a container states (codec delay, the last
# frame's padding) before it counts as truncated: the larger of the two.
_SHORTFALL_SECONDS, _SHORTFALL_FRACTION = 0.1, 0.02


def _decode_ffmpeg(source, spec: str, what: str, sf_error: str) -> Tuple[np.ndarray, int]:
    """``(float32 [samples, channels], rate)`` of the first audio stream of a file libsndfile
    cannot read, decoded by FFmpeg (PyAV, whose wheels carry FFmpeg's libraries). A file with
    no audio stream, one FFmpeg cannot decode either, or one that decodes to clearly less than
    its container states (truncated) is an :class:`AsrcError` naming it."""
    try:
        import av
    except ImportError:
        raise AsrcError(f"{what}: cannot read audio from {spec!r}: {_one_line(sf_error)} "
                        f"(install PyAV, 'pip install av', to read formats such as M4A/AAC and WebM)") from None
    chunks, channels = [], 1
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise AsrcError(f"{what}: {spec!r} holds no audio stream")
            stream = container.streams.audio[0]
            rate, channels = int(stream.rate or 0), stream.layout.nb_channels
            if rate <= 0 or channels <= 0:
                raise AsrcError(f"{what}: {spec!r}: its audio stream states no sample rate or channels")
            stated = None
            if stream.duration is not None and stream.time_base is not None:
                stated = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                stated = container.duration / av.time_base
            resampler = av.AudioResampler(format="flt", layout=stream.layout, rate=rate)  # packed float32
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except AsrcError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError) as e:
        raise AsrcError(f"{what}: cannot read audio from {spec!r}: {_one_line(sf_error).rstrip('.')}; "
                        f"FFmpeg: {_one_line(_named(str(e), source, spec))}") from e
    data = (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)).reshape(-1, channels)
    if stated is not None and stated > 0:
        decoded = data.shape[0] / rate
        if decoded < stated - max(_SHORTFALL_SECONDS, _SHORTFALL_FRACTION * stated):
            raise AsrcError(f"{what}: {spec} is truncated: its container states {stated:.2f} s of audio, "
                            f"only {decoded:.2f} s could be decoded")
    return np.ascontiguousarray(data, dtype=np.float32), rate


def is_stream(spec: str) -> bool:
    """True for ``-`` (standard input) and for paths that are neither files nor directories
    but can be read once (``/dev/stdin``, named pipes, ``<(command)``)."""
    if spec == "-":
        return True
    try:
        mode = os.stat(spec).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _named(message: str, source, spec: str) -> str:
    """A decoder's message with the in-memory buffer it was given named as the user knows it."""
    if not isinstance(source, io.BytesIO):
        return message
    return message.replace(repr(source), repr(spec)).replace(str(source), spec).replace("'<none>'", repr(spec))


def decode_audio(spec: str, *, what: Optional[str] = None) -> Tuple[np.ndarray, int]:
    """All samples of one recording, checked: ``(float32 [samples, channels], sample_rate)``.

    ``spec`` is a file path or a command ending in ``|``. A file must decode to as many
    samples as its header promises (the WAV/FLAC/SPHERE/AIFF/AU/W64 header as
    :mod:`asrc.core.audio_info` reads it, else ``soundfile``'s count; for MP3 only with a
    VBR/Info header, without one libsndfile estimates), and an Ogg file must end with its
    end-of-stream page (:func:`asrc.core.audio_info.stated_length`).
    A pipe's output is read to its end with a warning when it is shorter than its header
    says, as Kaldi does: SoX cannot fix a length it has already written to a pipe, and a
    command that fails is caught by its exit status.

    Raises:
        FileNotFoundError: the file does not exist.
        AsrcError: naming ``what`` and the file: a directory, an empty file, a failed pipe,
            unreadable or truncated audio, NaN/Inf samples, no samples at all.
    """
    what = what or spec
    pipe, header, promised = is_pipe(spec), None, None
    if pipe:
        raw = _run_pipe(spec, what)
        source = io.BytesIO(raw)
    elif is_stream(spec):  # "-" (standard input), /dev/stdin, a named pipe, <(command): read once, whole
        pipe = True
        with (open(sys.stdin.fileno(), "rb", closefd=False) if spec == "-" else open(spec, "rb")) as f:
            raw = f.read()
        if not raw:
            raise AsrcError(f"{what}: no audio came through {'standard input' if spec == '-' else spec}")
        source = io.BytesIO(raw)
    else:
        if os.path.isdir(spec):
            raise AsrcError(f"{what}: {spec} is a directory, not an audio file")
        if not os.path.exists(spec):
            raise FileNotFoundError(f"{what}: audio file {spec} does not exist")
        if os.path.getsize(spec) == 0:
            raise AsrcError(f"{what}: {spec} is empty (0 bytes)")
        try:
            header = read_header_info(spec)
        except AudioHeaderError as e:
            raise AsrcError(f"{what}: cannot read audio: {e}") from e
        source = spec
    try:
        with sf.SoundFile(source) as f:
            stated = None if pipe or header is not None else stated_length(spec, f.format)
            if header is not None:
                promised = header.num_samples
            elif isinstance(stated, int):
                promised = stated
            elif not pipe and (f.format != "MP3" or stated == "trust") and f.frames < _UNKNOWN_FRAMES:
                promised = f.frames
            rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
        if stated == "unfinished":
            raise AsrcError(f"{what}: {spec} is truncated: its Ogg stream ends without its last page "
                            f"(cut short, or a recording that was never finished)")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = _named(str(e), source, spec)
        if header is None and getattr(e, "code", None) == _SF_ERR_UNRECOGNISED_FORMAT:
            # not a format libsndfile knows (AAC/M4A, WebM, Opus in Matroska, AMR, video files...):
            # FFmpeg's decoders through PyAV
            if pipe:
                source.seek(0)
            data, rate = _decode_ffmpeg(source, spec, what, reason)
        else:
            hint = f" (the header promises {promised} samples: truncated or corrupt?)" if promised else ""
            raise AsrcError(f"{what}: cannot read audio from {spec!r}: {_one_line(reason)}{hint}") from e
    if promised is not None and data.shape[0] < promised:
        raise AsrcError(f"{what}: {spec} is truncated: its header promises {promised} samples, "
                        f"only {data.shape[0]} could be read")
    if pipe:
        try:
            stated = read_header_info(None, head=raw)
        except AudioHeaderError:
            stated = None
        if stated is not None and data.shape[0] < stated.num_samples:
            logger.warning("%s: the output of %r holds %d samples, its header says %d; using what is there",
                           what, spec, data.shape[0], stated.num_samples)
    if data.shape[0] == 0:
        raise AsrcError(f"{what}: {spec!r} has no samples")
    nonfinite = count_nonfinite(data)
    if nonfinite:
        raise AsrcError(f"{what}: audio has {nonfinite} non-finite samples (NaN/Inf) in {spec}")
    return data, rate


def read_audio(
    spec: str,
    *,
    what: Optional[str] = None,
    sample_rate: int = SAMPLE_RATE,
    resample: bool = False,
    mix_channels: bool = False,
) -> np.ndarray:
    """Read one recording as mono float32 at ``sample_rate``.

    Args:
        spec: a file path, or a command ending in ``|`` whose stdout is an audio file.
        what: how to name the recording in errors (e.g. ``"utterance 1089-134686-0000"``).
        sample_rate: the rate the caller needs.
        resample: resample other rates (``torchaudio.functional.resample``) instead of failing.
        mix_channels: average multi-channel audio to mono instead of failing.

    Returns:
        ``float32`` array of shape ``[samples]``.

    Raises:
        FileNotFoundError: the file does not exist.
        AsrcError: damaged audio (see :func:`decode_audio`), a wrong rate or channel count
            (without the matching permission).
    """
    what = what or spec
    data, rate = decode_audio(spec, what=what)
    if data.shape[1] > 1:
        if not mix_channels:
            raise AsrcError(f"{what}: {spec!r} has {data.shape[1]} channels; recognisers take mono "
                            f"(to average the channels: asrc-decode --mix-channels, mix_channels=True in Python)")
        data = mix_down(data, what)
    wav = np.ascontiguousarray(data[:, 0])
    if rate != sample_rate:
        if not resample:
            raise AsrcError(f"{what}: {spec!r} is sampled at {rate} Hz, the model needs {sample_rate} Hz "
                            f"(to resample it: asrc-decode --resample, resample=True in Python)")
        import torchaudio.functional as AF

        if rate < MIN_SPEECH_RATE:
            logger.warning("%s: sampled at %d Hz, below telephone speech's %d Hz: most of what a recogniser "
                           "hears is not in it", what, rate, MIN_SPEECH_RATE)
        wav = AF.resample(torch.from_numpy(wav), resampling_rate(rate, sample_rate), sample_rate).numpy()
    return wav


def mix_down(data: np.ndarray, what: str = "audio") -> np.ndarray:
    """``[samples, channels]`` -> ``[samples, 1]``: the mean of the channels; but where that
    mean cancels (channels in opposite phase, e.g. a balanced microphone wired to a stereo
    input: the mean is under a quarter of the loudest channel's level) the loudest channel,
    with a warning."""
    mixed = data.mean(axis=1, keepdims=True)
    level = np.sqrt(np.mean(np.square(data, dtype=np.float64), axis=0))
    if level.max() > 0 and np.sqrt(np.mean(np.square(mixed, dtype=np.float64))) < 0.25 * level.max():
        loudest = int(level.argmax())
        logger.warning("%s: its %d channels cancel when averaged (opposite phase?): using channel %d alone",
                       what, data.shape[1], loudest + 1)
        return data[:, loudest:loudest + 1]
    return mixed


def resampling_rate(rate: int, target: int) -> int:
    """The rate to resample from: ``rate`` itself, unless it shares so small a factor with
    ``target`` that an exact polyphase resampler would need a kernel of millions of taps (44101
    or 22254 Hz -> 16000: seconds to minutes and gigabytes for a few seconds of audio); then the
    nearest multiple of 50 Hz (a speed change of 25 Hz at most, 0.3 % at 8 kHz)."""
    if rate // math.gcd(rate, target) <= 1000:
        return rate
    return max(50, int(round(rate / 50.0)) * 50)


def num_samples(spec: str, *, what: Optional[str] = None) -> int:
    """Samples (per channel) of a recording: from its header when it is a file
    (:func:`asrc.core.audio_info.audio_info`); pipe commands are run and decoded."""
    what = what or spec
    if is_pipe(spec):
        return int(read_audio(spec, what=what, resample=True, mix_channels=True).shape[0])
    if not os.path.exists(spec):
        raise FileNotFoundError(f"{what}: audio file {spec} does not exist")
    try:
        return int(audio_info(spec).num_samples)
    except AudioHeaderError as e:
        if os.path.isfile(spec) and os.path.getsize(spec) > 0:
            try:  # a format without a header libsndfile reads (M4A, WebM, ...): decoded
                return int(decode_audio(spec, what=what)[0].shape[0])
            except AsrcError:
                pass
        raise AsrcError(f"{what}: cannot read audio: {e}") from e


def read_waveforms(data_dir, max_utterances: int = 16, max_seconds: float = 120.0) -> tuple:
    """Waveforms (for calibration or agreement checks) from a Kaldi-style data dir: up to
    ``max_utterances`` spread evenly over ``wav.scp`` (so one speaker or one recording session
    does not set all the ranges), stopping at ``max_seconds`` of audio. Returns ``(waveforms, info)``
    with 1-D float32 tensors (``info["ids"]``: their utterance ids). Damaged audio (truncated, NaN/Inf samples, ...) is an
    :class:`AsrcError` naming the utterance: one bad file would otherwise set every activation range."""
    data_dir = Path(data_dir)
    wav_scp_path = data_dir / "wav.scp"
    if not wav_scp_path.is_file():
        raise FileNotFoundError(f"{data_dir}: no wav.scp; calibration needs a Kaldi-style data dir")
    wav_scp = read_table(wav_scp_path)
    if not wav_scp:
        raise DataDirError(f"{wav_scp_path}: no utterances")
    keys = list(wav_scp)
    step = max(1, len(keys) // max_utterances)
    chosen, waveforms, seconds = [], [], 0.0
    for key in keys[::step][:max_utterances]:
        wav = torch.from_numpy(read_audio(wav_scp[key], what=f"utterance {key} of {data_dir}"))
        waveforms.append(wav)
        chosen.append(key)
        seconds += wav.numel() / SAMPLE_RATE
        if seconds >= max_seconds:
            break
    info = {"data_dir": str(data_dir), "utterances": len(chosen), "seconds": round(seconds, 2),
            "first_utterances": chosen[:5], "ids": chosen}
    return waveforms, info
