"""Conversions read_audio makes on request: channels that cancel, sample rates with no small
common factor with 16 kHz."""

import logging

import numpy as np
import soundfile as sf

from asrc.core.audio import read_audio, resampling_rate


def tone(rate, seconds=2.0, freq=440.0):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def test_channels_in_opposite_phase_are_not_averaged_to_silence(tmp_path, caplog):
    x = tone(16000)
    sf.write(tmp_path / "opp.wav", np.stack([x, -x], axis=1), 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        y = read_audio(str(tmp_path / "opp.wav"), mix_channels=True)
    np.testing.assert_allclose(y, x, atol=1e-6)  # the loudest channel, not their mean (0)
    assert "cancel when averaged" in caplog.text
    # ordinary stereo (two level-shifted copies, or unrelated channels) is averaged as before
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * 0.1
    sf.write(tmp_path / "st.wav", np.stack([x, noise], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(str(tmp_path / "st.wav"), mix_channels=True), (x + noise) / 2, atol=1e-6)


def test_an_odd_rate_is_resampled_quickly(tmp_path):
    """44101 Hz shares only 1 with 16000: an exact resampler needs a kernel of 44101 x 16000
    phases (87 s and 12 GB for 4 s of audio, measured); it is read as 44100 Hz instead."""
    assert resampling_rate(44100, 16000) == 44100 and resampling_rate(8000, 16000) == 8000
    assert resampling_rate(44101, 16000) == 44100 and resampling_rate(22254, 16000) == 22250
    sf.write(tmp_path / "odd.wav", tone(44101, 4.0), 44101, subtype="FLOAT")
    sf.write(tmp_path / "even.wav", tone(44101, 4.0), 44100, subtype="FLOAT")
    odd = read_audio(str(tmp_path / "odd.wav"), resample=True)  # the same samples, read as 44100 Hz
    np.testing.assert_array_equal(odd, read_audio(str(tmp_path / "even.wav"), resample=True))


def test_a_rate_below_telephone_band_is_read_with_a_warning(tmp_path, caplog):
    sf.write(tmp_path / "low.wav", tone(4000, freq=300.0), 4000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        y = read_audio(str(tmp_path / "low.wav"), resample=True)
    assert len(y) == 32000 and "sampled at 4000 Hz, below telephone speech's 8000 Hz" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sf.write(tmp_path / "tel.wav", tone(8000), 8000, subtype="FLOAT")
        read_audio(str(tmp_path / "tel.wav"), resample=True)
    assert "tel.wav" not in caplog.text
