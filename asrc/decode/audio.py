"""Reading audio for recognition: files (soundfile) and Kaldi pipe commands (``cmd |``).

Recognisers take mono float32 at 16 kHz. A file at another rate or with several channels is
an error naming it unless the caller allows the conversion (``resample`` /
``mix_channels``): a data directory whose audio is not what its recipe promised is usually a
preparation bug worth stopping for, while ``asrc-transcribe`` on a user's own file converts.
"""

import io
import os
import subprocess
from typing import Optional

import numpy as np
import soundfile as sf
import torch

from asrc.errors import AsrcError

SAMPLE_RATE = 16000


def is_pipe(spec: str) -> bool:
    """True for a Kaldi ``wav.scp`` pipe entry such as ``sox a.flac -t wav - |``."""
    return spec.rstrip().endswith("|")


def _run_pipe(spec: str, what: str) -> bytes:
    cmd = spec.rstrip()[:-1].strip()
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-1000:]
        raise AsrcError(f"{what}: command {cmd!r} failed (exit {proc.returncode}): {err}")
    if not proc.stdout:
        raise AsrcError(f"{what}: command {cmd!r} wrote no audio to stdout")
    return proc.stdout


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
        AsrcError: unreadable audio, a failed pipe command, a wrong rate or channel count
            (without the matching permission), or no samples at all.
    """
    what = what or spec
    try:
        if is_pipe(spec):
            data, rate = sf.read(io.BytesIO(_run_pipe(spec, what)), dtype="float32", always_2d=True)
        else:
            try:
                data, rate = sf.read(spec, dtype="float32", always_2d=True)
            except sf.LibsndfileError as e:
                if not os.path.exists(spec):
                    raise FileNotFoundError(f"{what}: audio file {spec} does not exist") from e
                raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AsrcError(f"{what}: cannot read audio from {spec!r}: {e}") from e
    if data.shape[0] == 0:
        raise AsrcError(f"{what}: {spec!r} has no samples")
    if data.shape[1] > 1:
        if not mix_channels:
            raise AsrcError(f"{what}: {spec!r} has {data.shape[1]} channels; recognisers take mono (allow mixing down)")
        data = data.mean(axis=1, keepdims=True)
    wav = np.ascontiguousarray(data[:, 0])
    if rate != sample_rate:
        if not resample:
            raise AsrcError(f"{what}: {spec!r} is sampled at {rate} Hz, the model needs {sample_rate} Hz (allow resampling)")
        import torchaudio.functional as AF

        wav = AF.resample(torch.from_numpy(wav), rate, sample_rate).numpy()
    return wav


def num_samples(spec: str, *, what: Optional[str] = None) -> int:
    """Samples (per channel) of a recording: from its header when it is a file
    (:func:`asrc.data.audio.audio_info`); pipe commands are run and decoded."""
    from asrc.data.audio import AudioHeaderError, audio_info

    what = what or spec
    if is_pipe(spec):
        return int(read_audio(spec, what=what, resample=True, mix_channels=True).shape[0])
    if not os.path.exists(spec):
        raise FileNotFoundError(f"{what}: audio file {spec} does not exist")
    try:
        return int(audio_info(spec).num_samples)
    except AudioHeaderError as e:
        raise AsrcError(f"{what}: cannot read the audio header: {e}") from e
