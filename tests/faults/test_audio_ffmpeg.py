"""Formats libsndfile does not read (M4A/AAC, WebM/Opus) go through FFmpeg (PyAV): read like any
file, and damaged ones are one-line errors naming them."""

import builtins
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

av = pytest.importorskip("av")

from asrc.core.audio import num_samples, read_audio  # noqa: E402
from asrc.errors import AsrcError  # noqa: E402

RATE = 16000
REPO = Path(__file__).resolve().parents[2]


def speechlike(seconds=2.0, channels=1, seed=0):
    """A sweep with a random envelope (AAC/Opus keep it well), ``[samples, channels]``."""
    t = np.arange(int(seconds * RATE)) / RATE
    env = np.repeat(np.random.default_rng(seed).uniform(0.2, 1.0, int(seconds * 20)), RATE // 20)[: len(t)]
    x = 0.3 * env * np.sin(2 * np.pi * (200 + 400 * t) * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def encode(path: Path, audio: np.ndarray, codec: str, rate: int = RATE) -> Path:
    layout = "mono" if audio.shape[1] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray((audio * 32767).astype(np.int16).reshape(1, -1)),
                                           format="s16", layout=layout)
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def best_correlation(decoded: np.ndarray, original: np.ndarray, max_shift: int = 2048) -> float:
    n = len(original) - max_shift
    return max(float(np.corrcoef(decoded[k:k + n], original[:n])[0, 1]) for k in range(0, max_shift, 16))


def test_m4a_and_webm_are_read(tmp_path):
    audio = speechlike()
    m4a = encode(tmp_path / "a.m4a", audio, "aac")
    webm = encode(tmp_path / "a.webm", audio, "libopus")
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(m4a))  # what asrc reads them around
    x = read_audio(str(m4a))
    assert x.dtype == np.float32 and abs(len(x) - len(audio)) <= 2048  # AAC: whole frames of 1024
    assert best_correlation(x, audio[:, 0]) > 0.95
    assert num_samples(str(m4a)) == len(x)
    # Opus decodes at 48 kHz: a rate to convert, as for any file
    with pytest.raises(AsrcError, match=r"a.webm.* 48000 Hz"):
        read_audio(str(webm))
    y = read_audio(str(webm), resample=True)
    assert abs(len(y) - len(audio)) <= 400 and best_correlation(y, audio[:, 0]) > 0.95


def test_stereo_m4a_is_mixed_on_request(tmp_path):
    audio = speechlike(channels=2)
    m4a = encode(tmp_path / "s.m4a", audio, "aac")
    with pytest.raises(AsrcError, match="2 channels"):
        read_audio(str(m4a))
    x = read_audio(str(m4a), mix_channels=True)
    assert best_correlation(x, audio.mean(axis=1)) > 0.95


def test_damaged_files_name_the_file(tmp_path):
    webm = encode(tmp_path / "cut.webm", speechlike(seconds=4.0), "libopus")
    webm.write_bytes(webm.read_bytes()[: webm.stat().st_size // 2])
    with pytest.raises(AsrcError, match=r"cut.webm is truncated: its container states 4.0\d s of audio, only "):
        read_audio(str(webm), resample=True)
    m4a = encode(tmp_path / "cut.m4a", speechlike(), "aac")
    m4a.write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 2])  # its index (moov) is at the end: gone
    with pytest.raises(AsrcError, match=r"cut.m4a.*FFmpeg"):
        read_audio(str(m4a))
    text = tmp_path / "notes.m4a"
    text.write_text("this is not audio\n" * 40)
    for call in (read_audio, num_samples):
        with pytest.raises(AsrcError, match=r"notes.m4a") as e:
            call(str(text))
        assert "\n" not in str(e.value)


def test_without_pyav_the_error_says_what_to_install(tmp_path, monkeypatch):
    m4a = encode(tmp_path / "a.m4a", speechlike(), "aac")
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(AsrcError, match=r"a.m4a.*Format not recognised.*pip install av"):
        read_audio(str(m4a))


def test_transcribe_an_m4a_recording_as_its_wav(tmp_path, an4_root):
    """An AN4 test recording as a phone would store it (AAC in M4A, 64 kbit/s) is recognised as
    the recording itself (the committed teacher, asrc-transcribe's defaults)."""
    from asrc.decode.transcribe import transcribe_files

    wav, rate = sf.read(Path(an4_root) / "wav" / "an4test_clstk" / "fcaw" / "an406-fcaw-b.sph", dtype="float32")
    assert rate == RATE
    original = tmp_path / "an406.wav"
    sf.write(original, wav, RATE)
    m4a = encode(tmp_path / "an406.m4a", wav[:, None], "aac")
    teacher = REPO / "egs" / "an4" / "teacher"
    texts = dict(transcribe_files(teacher, [str(original), str(m4a)]))
    assert texts[str(m4a)] == texts[str(original)] != ""
