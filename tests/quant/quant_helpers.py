"""The tiny model and structured audio of the quant tests (fixtures in conftest.py)."""

import math

import torch
import torch.nn.functional as F

from asrc.models import Wav2Vec2Config, build_model

TINY = Wav2Vec2Config(conv_layers=[[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, conv_groups=2, embed_dim=48,
                      ffn_dim=96, num_heads=4, num_layers=2, pos_conv_kernel=16, pos_conv_groups=4, vocab_size=5,
                      dropout=0.0, attention_dropout=0.0)
TOKENS = ["<blank>", "A", "B", "C", "|"]
SEGMENT = 1600  # samples per segment: 0.1 s, 5 frames


def structured_utterance(segments: int, gen: torch.Generator):
    """Waveform of 0.1 s segments, each silence (class 0) or one of three tones (classes 1-3)
    with random pitch jitter and amplitude, plus noise; returns (wav, per-segment classes)."""
    classes = torch.randint(0, 4, (segments,), generator=gen)
    t = torch.arange(SEGMENT) / 16000
    parts = []
    for c in classes.tolist():
        if c == 0:
            parts.append(torch.zeros(SEGMENT))
            continue
        f = (220.0, 550.0, 1300.0)[c - 1] * (1 + 0.05 * (torch.rand((), generator=gen) - 0.5))
        amp = 0.05 + 0.2 * torch.rand((), generator=gen)
        parts.append(amp * torch.sin(2 * math.pi * f * t + 6.28 * torch.rand((), generator=gen)))
    wav = torch.cat(parts) + 0.005 * torch.randn(segments * SEGMENT, generator=gen)
    return wav, classes


def frame_targets(classes: torch.Tensor, frames: int):
    # Frame i of the base front end covers samples [320 i, 320 i + 400); label it by its centre.
    centre = torch.arange(frames) * 320 + 200
    return classes[(centre // SEGMENT).clamp(max=len(classes) - 1)]




def train_tones(model, steps: int, gen: torch.Generator, lr: float) -> float:
    """``steps`` Adam updates of ``model`` on batches of 4 :func:`structured_utterance`, frame-wise
    cross-entropy on the first 4 outputs (silence and three tones); returns the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = [structured_utterance(10, gen) for _ in range(4)]
        wav = torch.stack([w for w, _ in batch])
        logits, _ = model(wav, torch.full((4,), wav.shape[1]))
        target = torch.stack([frame_targets(c, logits.shape[1]) for _, c in batch])
        loss = F.cross_entropy(logits[..., :4].reshape(-1, 4), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def write_wav_dir(directory, waveforms) -> None:
    """A Kaldi-style data dir (``wav.scp`` only) of float WAV files ``u0, u1, ...`` of ``waveforms``."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, w in enumerate(waveforms):
        sf.write(directory / f"u{i}.wav", w.numpy(), 16000, subtype="FLOAT")
        lines.append(f"u{i} {directory / f'u{i}.wav'}\n")
    (directory / "wav.scp").write_text("".join(lines))
