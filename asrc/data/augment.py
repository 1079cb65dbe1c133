"""Material for data augmentation, and a degraded copy of a data directory.

- :func:`simulate_rirs`: room impulse responses of simulated rooms (``pyroomacoustics``:
  image-source method in shoebox rooms whose wall absorption gives a drawn RT60), written as
  16 kHz wav files plus an ESPnet ``rir.scp`` (``--rir_scp``).
- :func:`make_noises`: noise recordings for ``--noise_scp``: coloured noise (white, pink,
  brown, blue, violet: power spectra ``f^a``), mains hum with harmonics, and babble (several
  utterances of a data directory summed). Long files, so ESPnet cuts a random stretch each time.
- :func:`map_data_dir`: a copy of a data directory with every utterance's audio transformed;
  :func:`degrade_data_dir`: a fixed, seeded degraded copy of a data directory (reverberation,
  noise at a given SNR, telephone band through 8 kHz), to measure robustness.

Everything is seeded: the same arguments give the same files.
"""

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from asrc.core.constants import SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.errors import AsrcError

__all__ = ["simulate_rirs", "make_noises", "colored_noise", "add_noise", "reverberate", "band_limit",
           "map_data_dir", "degrade_data_dir"]

NOISE_COLOURS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}


def _write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    import soundfile as sf

    tmp = path.with_name("." + path.name + ".tmp")
    sf.write(tmp, audio.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    tmp.replace(path)


def _write_scp(path: Path, items) -> Path:
    with atomic_write(path) as f:
        f.writelines(f"{key} {p.resolve()}\n" for key, p in items)
    return path


def simulate_rirs(out_dir, n: int = 200, seed: int = 0, rt60_range=(0.15, 0.9)) -> Path:
    """Write ``n`` room impulse responses to ``out_dir`` and ``out_dir/rir.scp``; returns the scp.

    Rooms are 3-12 m x 3-10 m x 2.4-4 m; source and microphone at least 0.5 m from the walls,
    0.3-5 m apart; RT60 uniform in ``rt60_range``.
    """
    import pyroomacoustics as pra

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7])
    items = []
    for i in range(n):
        path = out_dir / f"rir{i:04d}.wav"
        # Draw every number even for a finished file, so a resumed run makes the same rooms.
        dims = rng.uniform([3.0, 3.0, 2.4], [12.0, 10.0, 4.0])
        rt60 = float(rng.uniform(*rt60_range))
        mic = rng.uniform(0.5, dims - 0.5)
        for _ in range(100):
            src = rng.uniform(0.5, dims - 0.5)
            if 0.3 <= np.linalg.norm(src - mic) <= 5.0:
                break
        if not path.is_file():
            try:
                absorption, max_order = pra.inverse_sabine(rt60, dims)
            except ValueError:  # RT60 too short for the room: the most absorbing walls
                absorption, max_order = 0.99, 3
            room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 30))
            room.add_source(src)
            room.add_microphone(mic)
            room.compute_rir()
            rir = np.asarray(room.rir[0][0], dtype=np.float64)
            rir = rir[: int(1.2 * rt60 * SAMPLE_RATE) + 400]
            _write_wav(path, rir / (np.max(np.abs(rir)) or 1.0))
        items.append((path.stem, path))
    return _write_scp(out_dir / "rir.scp", items)


def colored_noise(num_samples: int, exponent: float, rng) -> np.ndarray:
    """Gaussian noise whose power spectrum goes as ``f ** exponent`` (0 white, -1 pink, -2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (exponent / 2)
    noise = np.fft.irfft(spectrum, n=num_samples)
    return noise / (np.std(noise) or 1.0)


def _hum(num_samples: int, rng) -> np.ndarray:
    base = rng.choice([50.0, 60.0])
    t = np.arange(num_samples) / SAMPLE_RATE
    hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
              for k in range(1, 8))
    return hum + 0.05 * rng.standard_normal(num_samples)


def _babble(num_samples: int, speech: Sequence[str], rng, talkers: int) -> np.ndarray:
    from asrc.core.audio import read_audio

    out = np.zeros(num_samples)
    for _ in range(talkers):
        pos = 0
        track = np.zeros(num_samples)
        while pos < num_samples:
            wav = read_audio(str(rng.choice(speech)), resample=True, mix_channels=True).astype(np.float64)
            wav /= np.std(wav) or 1.0
            take = min(len(wav), num_samples - pos)
            track[pos:pos + take] = wav[:take]
            pos += take
        out += track
    return out / (np.std(out) or 1.0)


def make_noises(out_dir, n_per_kind: int = 10, seconds: float = 30.0, seed: int = 0,
                babble_from=None, talkers=(3, 8)) -> Path:
    """Write noise files (coloured noise, hum, babble) and ``out_dir/noise.scp``; returns the scp.

    Args:
        babble_from: a data directory (its ``wav.scp``) whose speech makes babble; no babble
            without it.
        talkers: how many utterances overlap in a babble file (drawn in this range).
    """
    from asrc.core.tables import read_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num = int(seconds * SAMPLE_RATE)
    kinds = list(NOISE_COLOURS) + ["hum"] + (["babble"] if babble_from else [])
    speech = list(read_table(Path(babble_from) / "wav.scp").values()) if babble_from else []
    items = []
    for kind in kinds:
        for i in range(n_per_kind):
            path = out_dir / f"{kind}{i:03d}.wav"
            if not path.is_file():
                rng = np.random.default_rng([seed, kinds.index(kind), i])
                if kind == "hum":
                    noise = _hum(num, rng)
                elif kind == "babble":
                    noise = _babble(num, speech, rng, int(rng.integers(talkers[0], talkers[1] + 1)))
                else:
                    noise = colored_noise(num, NOISE_COLOURS[kind], rng)
                _write_wav(path, 0.5 * noise / (np.max(np.abs(noise)) or 1.0))
            items.append((path.stem, path))
    return _write_scp(out_dir / "noise.scp", items)


def _active_power(wav: np.ndarray) -> float:
    """Mean power where the signal is within 40 dB of its peak (speech, not the pauses)."""
    level = np.abs(wav)
    active = wav[level > 0.01 * (np.max(level) or 1.0)]
    return float(np.mean(active**2)) if active.size else 1e-10


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float, rng) -> np.ndarray:
    """``wav`` plus a random stretch of ``noise`` (looped if short) at ``snr_db`` over the speech."""
    if len(noise) < len(wav):
        noise = np.tile(noise, math.ceil(len(wav) / len(noise)))
    start = int(rng.integers(0, len(noise) - len(wav) + 1))
    piece = noise[start:start + len(wav)]
    scale = math.sqrt(_active_power(wav) / 10 ** (snr_db / 10) / max(float(np.mean(piece**2)), 1e-12))
    return wav + scale * piece


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wav`` convolved with ``rir`` (same length, delayed to the direct path, same speech power)."""
    from scipy.signal import fftconvolve

    delay = int(np.argmax(np.abs(rir)))
    out = fftconvolve(wav, rir)[delay:delay + len(wav)]
    return out * math.sqrt(_active_power(wav) / max(_active_power(out), 1e-12))


def band_limit(wav: np.ndarray, rate: int = 8000) -> np.ndarray:
    """Down to ``rate`` and back to 16 kHz (telephone bandwidth), same length."""
    import torch
    import torchaudio.functional as AF

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    y = AF.resample(AF.resample(x, SAMPLE_RATE, rate), rate, SAMPLE_RATE).numpy()
    return np.pad(y, (0, max(0, len(wav) - len(y))))[: len(wav)]


def map_data_dir(src, out_dir, transform: Callable[[str, np.ndarray], np.ndarray], *, prefix: str = "") -> Path:
    """A copy of data directory ``src`` in ``out_dir`` whose audio is ``transform(utt, wav)`` of
    each utterance's (float64 at 16 kHz in, float in [-1, 1] out; clipped there), written as
    16-bit FLAC under ``out_dir/wav``, utterances in ``wav.scp`` order.

    Transcripts, speakers and the other per-utterance tables are copied; ``prefix`` goes before
    every utterance and speaker id (Kaldi's way, e.g. ``deg-``), so that the copy can be
    combined with its source. ``utt2num_samples`` / ``utt2dur`` are written from the new audio
    (a transform may change its length) where ``src`` has them.
    """
    import soundfile as sf

    from asrc.core.audio import read_audio
    from asrc.core.tables import read_table
    from asrc.data.datadir import refuse_segments

    src, out_dir = Path(src), Path(out_dir)
    refuse_segments(src, "an audio transform")
    wav_scp = read_table(src / "wav.scp")
    if not wav_scp:
        raise AsrcError(f"{src}/wav.scp: no utterances")
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    lines, samples = [], {}
    for utt, spec in wav_scp.items():
        wav = transform(utt, read_audio(spec, what=f"utterance {utt}").astype(np.float64))
        path = out_dir / "wav" / f"{prefix}{utt}.flac"
        sf.write(path, np.round(np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16), SAMPLE_RATE, format="FLAC",
                 subtype="PCM_16")
        lines.append(f"{prefix}{utt} {path.resolve()}\n")
        samples[utt] = len(wav)
    with atomic_write(out_dir / "wav.scp") as f:
        f.writelines(lines)
    lengths = {"utt2num_samples": lambda u: str(samples[u]), "utt2dur": lambda u: f"{samples[u] / SAMPLE_RATE:.4f}"}
    for name in ("text", "utt2spk", "spk2utt", "utt2num_samples", "utt2dur", "spk2gender"):
        if not (src / name).is_file():
            continue
        # keys are utterances (speakers in spk2*); utt2spk and spk2utt values are ids too
        with open(src / name, encoding="utf-8") as f, atomic_write(out_dir / name) as out:
            for line in f:
                parts = line.split(maxsplit=1)
                if not parts:
                    continue
                key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
                if name in lengths and key in samples:
                    value = lengths[name](key)
                elif name in ("utt2spk", "spk2utt"):
                    value = " ".join(prefix + v for v in value.split())
                out.write(f"{prefix}{key} {value}\n")
    return out_dir


def degrade_data_dir(src, out_dir, *, seed: int = 0, snr_db: Optional[float] = 10.0, reverb: bool = True,
                     band_rate: Optional[int] = 8000, noise_scp=None, rir_scp=None, prefix: str = "") -> Path:
    """A degraded copy of data directory ``src`` in ``out_dir`` (audio under ``out_dir/wav``;
    :func:`map_data_dir`).

    Each utterance, in this order: reverberation (a room of ``rir_scp``, or one simulated
    here), noise at ``snr_db`` (a file of ``noise_scp``, or white/pink/brown noise made here),
    then the telephone band (``band_rate``), then scaled to a peak of at most 0.99.
    Transcripts are copied unchanged; ``prefix`` as in :func:`map_data_dir`.
    """
    import soundfile as sf

    from asrc.core.tables import read_table

    def read_scp(scp):
        return [sf.read(p, dtype="float64")[0] for p in read_table(scp).values()]

    src, out_dir = Path(src), Path(out_dir)
    if not read_table(src / "wav.scp"):
        raise AsrcError(f"{src}/wav.scp: no utterances")
    rng = np.random.default_rng([seed, 11])
    rirs = read_scp(rir_scp) if rir_scp else []
    if reverb and not rirs:
        rirs = read_scp(simulate_rirs(out_dir / "rirs", 20, seed + 1000))
    noises = read_scp(noise_scp) if noise_scp else [
        colored_noise(10 * SAMPLE_RATE, NOISE_COLOURS[c], np.random.default_rng([seed, i]))
        for i, c in enumerate(("white", "pink", "brown"))]

    def degrade(_utt: str, wav: np.ndarray) -> np.ndarray:
        if reverb:
            wav = reverberate(wav, rirs[int(rng.integers(len(rirs)))])
        if snr_db is not None:
            wav = add_noise(wav, noises[int(rng.integers(len(noises)))], snr_db, rng)
        if band_rate:
            wav = band_limit(wav, band_rate)
        return wav / max(1.0, float(np.max(np.abs(wav))) / 0.99)

    return map_data_dir(src, out_dir, degrade, prefix=prefix)
