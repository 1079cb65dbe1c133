"""A tiny real model directory and a tiny Kaldi data directory of generated audio."""

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.models import Wav2Vec2Config, build_model, save_model_dir

# fairseq dict.ltr.txt order (FACTS.md section 3).
LETTERS = ["<blank>", "<pad>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")

TINY = dict(conv_layers=[[8, 10, 5], [8, 3, 2], [8, 3, 2]], embed_dim=16, ffn_dim=32, num_heads=2, num_layers=1,
            pos_conv_kernel=4, pos_conv_groups=2, vocab_size=len(LETTERS), normalize_waveform=True)

# Utterance lengths in samples; u3 comes through a Kaldi pipe command.
LENGTHS = {"u1": 4000, "u2": 9600, "u3": 2400, "u4": 7200, "u5": 800, "u6": 5600}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(Wav2Vec2Config(**TINY), LETTERS).eval()
    with torch.no_grad():
        model.ctc_head.weight.mul_(20.0)  # spread the outputs so utterances decode differently
    out = tmp_path_factory.mktemp("model")
    save_model_dir(model, out)
    return out


def write_wav(path, n, sample_rate=16000, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(n)
    if channels > 1:
        x = np.stack([x] + [0.5 * x[::-1]] * (channels - 1), axis=1)
    sf.write(path, x.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


@pytest.fixture
def make_wav():
    """``make_wav(path, n, sample_rate=16000, seed=0, channels=1)`` writes a test tone."""
    return write_wav


@pytest.fixture
def lengths():
    """Samples per utterance of :func:`data_dir`."""
    return dict(LENGTHS)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    wav = tmp_path / "wav"
    d.mkdir()
    wav.mkdir()
    entries = []
    for k, (utt, n) in enumerate(LENGTHS.items()):
        path = write_wav(wav / f"{utt}.wav", n, seed=k)
        entries.append(f"{utt} cat {path} |" if utt == "u3" else f"{utt} {path}")
    (d / "wav.scp").write_text("\n".join(entries) + "\n")
    (d / "text").write_text("".join(f"{u} A B\n" for u in LENGTHS))
    (d / "utt2spk").write_text("".join(f"{u} spk{int(u[1:]) % 2}\n" for u in LENGTHS))
    return d
