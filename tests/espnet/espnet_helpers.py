"""Tiny synthetic corpus and configs for the espnet tests (fixtures in conftest.py).

The corpus is learnable on purpose: every letter is a tone of its own pitch (60 ms), a word
boundary is 40 ms of silence, so a 2-layer model can bring the CTC loss down in a few
dozen updates. The data directories are what asrc.data writes (wav.scp, text, utt2spk,
spk2utt, utt2num_samples, utt2dur).
"""

import math
import random
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

SR = 16000
LETTERS = "ETAONS"
# Stride 160 (10 ms frames), receptive field 165 samples: cheap and plenty of frames for CTC.
TINY_ENCODER = dict(
    conv_layers=[[16, 10, 5], [16, 4, 4], [16, 4, 4], [16, 2, 2]], embed_dim=32, ffn_dim=64, num_heads=2,
    num_layers=2, pos_conv_kernel=8, pos_conv_groups=4, dropout=0.0, attention_dropout=0.0,
)
COMMON = dict(
    num_workers=0, batch_type="sorted", batch_size=4, max_epoch=2, optim="adam", optim_conf={"lr": 3.0e-3},
    log_interval=5, seed=0, keep_nbest_models=2, use_matplotlib=False,
)


def synth_utterance(rng: random.Random, words: int):
    text = " ".join("".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 4))) for _ in range(words))
    pieces = []
    for ch in text:
        if ch == " ":
            pieces.append(np.zeros(int(0.04 * SR)))
        else:
            f = 300.0 + 170.0 * LETTERS.index(ch)
            t = np.arange(int(0.06 * SR)) / SR
            pieces.append(0.5 * np.sin(2 * math.pi * f * t))
    wav = np.concatenate([np.zeros(800)] + pieces + [np.zeros(800)])
    wav += 0.01 * np.asarray([rng.gauss(0, 1) for _ in range(len(wav))])
    return text, wav.astype(np.float32)


def write_data_dir(root: Path, name: str, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    d = root / name
    (d / "wav").mkdir(parents=True)
    rows = []
    for i in range(n):
        spk = f"spk{i % 2}"
        utt = f"{spk}-{name}-{i:03d}"
        text, wav = synth_utterance(rng, rng.randint(1, 2))
        path = d / "wav" / f"{utt}.wav"
        sf.write(path, wav, SR, subtype="PCM_16")
        rows.append((utt, spk, str(path), text, len(wav)))
    rows.sort()
    write = lambda fname, lines: (d / fname).write_text("".join(f"{line}\n" for line in lines))  # noqa: E731
    write("wav.scp", [f"{u} {p}" for u, _, p, _, _ in rows])
    write("text", [f"{u} {t}" for u, _, _, t, _ in rows])
    write("utt2spk", [f"{u} {s}" for u, s, _, _, _ in rows])
    write("utt2num_samples", [f"{u} {n}" for u, _, _, _, n in rows])
    write("utt2dur", [f"{u} {n / SR:.4f}" for u, _, _, _, n in rows])
    spk2utt = {}
    for u, s, _, _, _ in rows:
        spk2utt.setdefault(s, []).append(u)
    write("spk2utt", [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())])
    return d


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_yaml(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def teacher_config(corpus) -> dict:
    return dict(COMMON, train_data_dir=str(corpus["train"]), valid_data_dir=str(corpus["valid"]),
                token_list=str(corpus["tokens"]), encoder="asrc_wav2vec2",
                encoder_conf={"config": dict(TINY_ENCODER)}, model="asrc_ctc")
