import pytest
import torch

from asrc.models import build_model
from quant_helpers import TINY, TOKENS, structured_utterance, train_tones


@pytest.fixture(scope="session")
def trained_tiny():
    """A tiny model trained for a few seconds to tell silence and three tones apart frame by frame,
    so its posteriors are peaked like a trained recogniser's (a random model's are nearly flat,
    and any rounding flips its argmax)."""
    torch.manual_seed(0)
    model = build_model(TINY, TOKENS)
    model.final_loss = train_tones(model, 80, torch.Generator().manual_seed(0), lr=3e-3)
    model.eval()
    return model


@pytest.fixture(scope="session")
def structured_set():
    gen = torch.Generator().manual_seed(123)
    return [structured_utterance(n, gen)[0] for n in (8, 12, 15, 20)]


@pytest.fixture(scope="session")
def calibration_set():
    gen = torch.Generator().manual_seed(7)
    return [structured_utterance(10, gen)[0] for _ in range(4)]
