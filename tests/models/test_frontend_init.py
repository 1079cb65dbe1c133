import math
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.models import Wav2Vec2Config, build_model, load
from asrc.models.frontend_init import (LogMel, data_dir_batches, frontend_init_data_dir, init_frontend,
                                       length_batches, regression_loss)

TOKENS = ["<blank>", "<pad>", "</s>", "<unk>", "|", "A", "B", "C"]


def tiny_config(**kw):
    base = dict(conv_layers=[[16, 10, 5], [16, 3, 2], [16, 2, 2]], embed_dim=16, ffn_dim=32, num_heads=2,
                num_layers=1, pos_conv_kernel=4, pos_conv_groups=2, vocab_size=len(TOKENS),
                normalize_waveform=True, dropout=0.0, attention_dropout=0.0)
    base.update(kw)
    return Wav2Vec2Config(**base)


def chirps(n=6, seed=0):
    """Tones whose pitch moves: a learnable log-mel target."""
    g = torch.Generator().manual_seed(seed)
    wavs = []
    for i in range(n):
        length = 1600 + 160 * i
        t = torch.arange(length) / 16000.0
        f0 = 300 + 1500 * torch.rand((), generator=g)
        wavs.append(torch.sin(2 * math.pi * (f0 + 2000 * t) * t) * (0.2 + 0.8 * t / t[-1]))
    return wavs


def pad(wavs):
    lengths = torch.tensor([len(w) for w in wavs])
    x = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        x[i, : len(w)] = w
    return x, lengths


def test_logmel_frames_match_model_frames():
    model = build_model(tiny_config())
    logmel = LogMel(model, n_mels=20)
    for length in (40, 41, 59, 60, 61, 1000, 1234):
        mel = logmel(torch.randn(1, length))
        assert mel.shape == (1, int(model.output_lengths(torch.tensor([length]))), 20)


def test_base_layout_window_is_25ms_hop_20ms():
    model = build_model(tiny_config(conv_layers=[[8, 10, 5]] + [[8, 3, 2]] * 4 + [[8, 2, 2]] * 2))
    mel = LogMel(model).mel
    assert (mel.n_fft, mel.hop_length) == (400, 320)
    assert LogMel(model)(torch.randn(1, 16000)).shape == (1, 49, 80)


def test_regression_loss_ignores_padding():
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    logmel = LogMel(model, n_mels=20)
    head = torch.nn.Linear(16, 20)
    mean, std = torch.zeros(20), torch.ones(20)
    wav = torch.randn(1, 1500)
    alone = regression_loss(model, head, logmel, wav, torch.tensor([1500]), mean, std)
    padded = torch.cat([wav, torch.randn(1, 700)], 1)
    # Padding samples must not matter: the same utterance with garbage after its end.
    with_pad = regression_loss(model, head, logmel, padded, torch.tensor([1500]), mean, std)
    assert float(alone) == pytest.approx(float(with_pad), rel=1e-5)


def test_init_frontend_reduces_loss_and_touches_only_front_end():
    torch.manual_seed(0)
    model = build_model(tiny_config(), TOKENS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [pad(chirps(3, seed=0)), pad(chirps(3, seed=1))]
    stats = init_frontend(model, batches, steps=60, lr=3e-3, n_mels=20)
    assert stats.steps == 60 and len(stats.losses) == 60
    first = np.mean(stats.losses[:4])
    assert stats.final_loss(4) < 0.6 * first
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "nothing was trained"
    assert all(k.startswith(("feature_extractor.", "feature_projection.")) for k in changed), changed
    assert any(k.startswith("feature_extractor.") for k in changed)


def test_narrow_student_front_end_regresses_the_teacher_features():
    torch.manual_seed(0)
    teacher = build_model(tiny_config(conv_layers=[[32, 10, 5], [32, 3, 2], [32, 2, 2]], embed_dim=24), TOKENS)
    student = build_model(tiny_config(conv_groups=2), TOKENS)  # 16 channels, embed_dim 16: nothing fits
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batches = [pad(chirps(3, seed=0)), pad(chirps(3, seed=1))]
    stats = init_frontend(student, batches, steps=60, lr=3e-3, teacher=teacher)
    assert stats.mel_mean.shape == (24,)  # per teacher feature dimension
    assert stats.final_loss(4) < 0.6 * np.mean(stats.losses[:4])
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    other = build_model(tiny_config(conv_layers=[[16, 10, 5], [16, 3, 2], [16, 3, 2]]), TOKENS)
    with pytest.raises(ValueError, match="frames would not line up"):
        init_frontend(other, batches, steps=1, teacher=teacher)


def test_init_frontend_rejects_no_steps_and_empty_batches():
    model = build_model(tiny_config())
    with pytest.raises(ValueError, match="steps"):
        init_frontend(model, [pad(chirps(2))], steps=0)
    with pytest.raises(ValueError, match="no frames"):
        init_frontend(model, [], steps=1)


def test_length_batches_cover_every_index_once_and_respect_budget():
    lengths = [100, 900, 300, 300, 50, 700, 1000]
    batches = list(length_batches(lengths, 1000, seed=3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000


def write_data_dir(root, wavs):
    root.mkdir()
    ids = [f"spk-utt{i}" for i in range(len(wavs))]
    with open(root / "wav.scp", "w") as scp, open(root / "text", "w") as text, open(root / "utt2spk", "w") as u2s:
        for uid, w in zip(ids, wavs):
            path = root / f"{uid}.wav"
            sf.write(path, w.numpy(), 16000)
            scp.write(f"{uid} {path}\n")
            text.write(f"{uid} A B\n")
            u2s.write(f"{uid} spk\n")
    return ids


def test_frontend_init_data_dir_writes_loadable_model_dir(tmp_path):
    wavs = chirps(4) + [torch.zeros(20)]  # the last one is shorter than the receptive field
    ids = write_data_dir(tmp_path / "data", wavs)
    model = build_model(tiny_config(), TOKENS)
    batches = data_dir_batches(tmp_path / "data", max_seconds=0.3, min_samples=model.config.receptive_field)
    assert batches.skipped == [ids[-1]]
    assert sum(len(l) for _, l in batches) == 4
    (tmp_path / "data" / "text").unlink()  # audio only: a directory without transcripts serves as well
    assert sum(len(l) for _, l in data_dir_batches(tmp_path / "data", max_seconds=0.3,
                                                   min_samples=model.config.receptive_field)) == 4
    stats = frontend_init_data_dir(model, tmp_path / "data", tmp_path / "out", steps=5, max_seconds=0.3,
                                   n_mels=8, progress=False)
    assert stats.steps == 5
    loaded = load(tmp_path / "out")
    assert loaded.tokens == TOKENS
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    log = (tmp_path / "out" / "frontend_init.log").read_text()
    assert "steps 5" in log and f"skipped_short 1 {ids[-1]}" in log


def test_frontend_init_cli_with_teacher(tmp_path, capsys):
    from asrc.bin.frontend_init import main
    from asrc.models import save_model_dir

    write_data_dir(tmp_path / "data", chirps(4))
    torch.manual_seed(0)
    save_model_dir(build_model(tiny_config(embed_dim=24), TOKENS), tmp_path / "teacher")
    (tmp_path / "student.yaml").write_text(tiny_config(conv_groups=2).to_yaml())
    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    args = ["--config", str(tmp_path / "student.yaml"), "--tokens", str(tmp_path / "tokens.txt"),
            "--data-dir", str(tmp_path / "data"), "--steps", "3", "--batch-seconds", "0.3"]
    assert main(args + ["--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "out")]) == 0
    assert "target teacher_features" in (tmp_path / "out" / "frontend_init.log").read_text()
    assert load(tmp_path / "out").config.conv_groups == 2
    (tmp_path / "tokens2.txt").write_text("\n".join(TOKENS[::-1]) + "\n")
    capsys.readouterr()
    assert main(args[:2] + ["--tokens", str(tmp_path / "tokens2.txt")] + args[4:]
                + ["--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "out2")]) == 1
    assert re.match(r"asrc-frontend-init: error: .*tokens2.txt and the teacher's tokens .* differ$",
                    capsys.readouterr().err)
