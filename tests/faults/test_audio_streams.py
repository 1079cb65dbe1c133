"""Audio that can be read once: standard input ("-"), /dev/stdin, named pipes, <(command)."""

import os
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from asrc.core.audio import read_audio
from asrc.errors import AsrcError


@pytest.fixture
def wav_file(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, (0.3 * np.sin(np.arange(8000) / 7)).astype(np.float32), 16000, subtype="PCM_16")
    return path


def feed(path_or_fd, data: bytes):
    def write():
        with open(path_or_fd, "wb") as f:
            f.write(data)
    t = threading.Thread(target=write)
    t.start()
    return t


def test_named_pipe_is_read_whole(wav_file, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = feed(fifo, wav_file.read_bytes())
    x = read_audio(str(fifo))  # os.path.getsize is 0 for a pipe: not "empty (0 bytes)"
    t.join()
    np.testing.assert_array_equal(x, read_audio(str(wav_file)))


def test_standard_input(wav_file, monkeypatch):
    r, w = os.pipe()
    t = feed(w, wav_file.read_bytes())
    with open(r, "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        x = read_audio("-")
    t.join()
    np.testing.assert_array_equal(x, read_audio(str(wav_file)))

    r, w = os.pipe()
    os.close(w)
    with open(r, "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        with pytest.raises(AsrcError, match="no audio came through standard input"):
            read_audio("-")


def test_a_pipe_command_giving_no_audio_is_named_not_its_buffer():
    with pytest.raises(AsrcError) as e:
        read_audio("echo this is not audio |")
    assert "BytesIO" not in str(e.value) and "'<none>'" not in str(e.value)
    assert "'echo this is not audio |'" in str(e.value)
