import pytest
import torch
import torch.nn.functional as F

from asrc.models import build_model
from quant_helpers import TINY, TOKENS, frame_targets, structured_utterance


@pytest.fixture(scope="session")
def trained_tiny():
    """A tiny model trained for a few seconds to tell silence and three tones apart frame by frame,
    so its posteriors are peaked like a trained recogniser's (a random model's are nearly flat,
    and any rounding flips its argmax)."""
    torch.manual_seed(0)
    model = build_model(TINY, TOKENS)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        batch = [structured_utterance(10, gen) for _ in range(4)]
        wav = torch.stack([w for w, _ in batch])
        logits, lengths = model(wav, torch.full((4,), wav.shape[1]))
        target = torch.stack([frame_targets(c, logits.shape[1]) for _, c in batch])
        loss = F.cross_entropy(logits[..., :4].reshape(-1, 4), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.final_loss = loss.item()
    return model


@pytest.fixture(scope="session")
def structured_set():
    gen = torch.Generator().manual_seed(123)
    return [structured_utterance(n, gen)[0] for n in (8, 12, 15, 20)]


@pytest.fixture(scope="session")
def calibration_set():
    gen = torch.Generator().manual_seed(7)
    return [structured_utterance(10, gen)[0] for _ in range(4)]
