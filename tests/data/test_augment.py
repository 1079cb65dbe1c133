import numpy as np
import soundfile as sf

from asrc.data.augment import (
    add_noise, band_limit, colored_noise, degrade_data_dir, make_noises, map_data_dir, reverberate, simulate_rirs,
)
from asrc.core.tables import read_table
from asrc.data.datadir import validate_data_dir

RATE = 16000


def _slope(noise):
    """Log-log slope of the power spectrum between 100 Hz and 4 kHz."""
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / RATE)
    band = (freqs > 100) & (freqs < 4000)
    return np.polyfit(np.log(freqs[band]), np.log(power[band] + 1e-20), 1)[0]


def test_colored_noise_has_its_spectrum():
    rng = np.random.default_rng(0)
    for exponent in (0.0, -1.0, -2.0, 1.0):
        assert abs(_slope(colored_noise(RATE * 4, exponent, rng)) - exponent) < 0.15


def test_add_noise_hits_the_snr():
    rng = np.random.default_rng(1)
    speech = np.sin(2 * np.pi * 300 * np.arange(RATE) / RATE)
    noise = rng.standard_normal(RATE // 3)  # shorter than the speech: looped
    mixed = add_noise(speech, noise, 10.0, rng)
    snr = 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2))
    assert abs(snr - 10.0) < 0.1


def test_band_limit_removes_the_upper_band():
    t = np.arange(RATE) / RATE
    wav = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 6000 * t)
    out = band_limit(wav, 8000)
    spectrum = np.abs(np.fft.rfft(out))
    assert len(out) == len(wav)
    assert spectrum[6000] < 0.01 * spectrum[1000]  # 1 Hz bins


def test_simulated_rooms_and_reverberation(tmp_path):
    scp = simulate_rirs(tmp_path / "rir", 3, seed=0)
    paths = list(read_table(scp).values())
    assert len(paths) == 3
    rir, rate = sf.read(paths[0])
    assert rate == RATE and np.argmax(np.abs(rir)) < 0.05 * RATE and np.max(np.abs(rir)) == 1.0
    # the tail decays: late energy is a small part of the total
    assert np.sum(rir[len(rir) // 2:] ** 2) < 0.2 * np.sum(rir**2)
    # seeded: a second run makes the same rooms
    again = simulate_rirs(tmp_path / "rir2", 3, seed=0)
    assert np.array_equal(sf.read(list(read_table(again).values())[2])[0], sf.read(paths[2])[0])
    speech = np.random.default_rng(2).standard_normal(RATE)
    wet = reverberate(speech, rir)
    assert len(wet) == len(speech) and not np.allclose(wet, speech)


def test_noises_and_degraded_copy(tmp_path, an4_like_dir=None):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(3)
    lines = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * 200 * np.arange(RATE) / RATE)).astype(np.float32), RATE,
                 subtype="PCM_16")
        lines.append(f"u{i} {path}\n")
    (data / "wav.scp").write_text("".join(lines))
    (data / "text").write_text("".join(f"u{i} A B\n" for i in range(3)))
    (data / "utt2spk").write_text("".join(f"u{i} s\n" for i in range(3)))
    (data / "spk2utt").write_text("s u0 u1 u2\n")
    (data / "utt2num_samples").write_text("".join(f"u{i} {RATE}\n" for i in range(3)))
    noise_scp = make_noises(tmp_path / "noise", 1, seconds=2, seed=0, babble_from=data)
    names = sorted(read_table(noise_scp))
    assert names == sorted(["white000", "pink000", "brown000", "blue000", "violet000", "hum000", "babble000"])
    out = degrade_data_dir(data, tmp_path / "deg", seed=0, snr_db=10.0, noise_scp=noise_scp)
    assert validate_data_dir(out) == []
    assert (out / "text").read_text() == (data / "text").read_text()
    clean = sf.read(tmp_path / "u0.wav")[0]
    degraded = sf.read(read_table(out / "wav.scp")["u0"])[0]
    assert len(degraded) == len(clean) and not np.allclose(degraded, clean, atol=0.01)
    # fixed seed: the same copy twice
    again = degrade_data_dir(data, tmp_path / "deg2", seed=0, snr_db=10.0, noise_scp=noise_scp)
    assert np.array_equal(sf.read(read_table(again / "wav.scp")["u2"])[0], sf.read(read_table(out / "wav.scp")["u2"])[0])
    del rng


def test_map_data_dir_transforms_copies_and_prefixes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        sf.write(tmp_path / f"u{i}.wav", np.full(RATE // 2, 0.25 * (i + 1), np.float32), RATE, subtype="PCM_16")
    (data / "wav.scp").write_text("".join(f"u{i} {tmp_path}/u{i}.wav\n" for i in range(2)))
    (data / "text").write_text("u0\tA  B\nu1 C\n")  # a tab after the id, two spaces inside
    (data / "utt2spk").write_text("u0 s\nu1 s\n")
    (data / "spk2utt").write_text("s u0 u1\n")
    (data / "utt2num_samples").write_text(f"u0 {RATE // 2}\nu1 {RATE // 2}\n")
    seen = []

    def louder_and_longer(utt, wav):
        seen.append((utt, wav.dtype))
        return np.concatenate([wav * 2, wav * 5])  # the second half clips at 1

    out = map_data_dir(data, tmp_path / "out", louder_and_longer, prefix="x-")
    assert seen == [("u0", np.float64), ("u1", np.float64)]
    wav_scp = read_table(out / "wav.scp")
    assert list(wav_scp) == ["x-u0", "x-u1"]
    audio = sf.read(wav_scp["x-u1"])[0]
    assert len(audio) == RATE and np.allclose(audio[: RATE // 2], 1.0, atol=1e-3)  # 0.5 * 2, and clipped
    audio = sf.read(wav_scp["x-u0"])[0]
    assert np.allclose(audio[: RATE // 2], 0.5, atol=1e-3) and np.allclose(audio[RATE // 2:], 1.0, atol=1e-3)
    # lengths from the new audio, ids prefixed in keys and in speaker lists
    assert (out / "utt2num_samples").read_text() == f"x-u0 {RATE}\nx-u1 {RATE}\n"
    assert (out / "text").read_text() == "x-u0 A  B\nx-u1 C\n"
    assert (out / "spk2utt").read_text() == "x-s x-u0 x-u1\n"
    assert (out / "utt2spk").read_text() == "x-u0 x-s\nx-u1 x-s\n"
    assert validate_data_dir(out) == []
