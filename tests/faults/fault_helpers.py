"""The tiny model the fault tests share (imported as a module, like tests/espnet/espnet_helpers.py)."""

import torch

from asrc.data.tokens import letter_tokens
from asrc.models import Wav2Vec2Config, build_model, save_model_dir

LETTERS = letter_tokens()
CONV_LAYERS = [[8, 10, 5], [8, 3, 2]]


def save_tiny_model(out, **changes):
    """A 1-layer letter model with random weights (seed 0) saved as a model directory in ``out``."""
    torch.manual_seed(0)
    config = dict(conv_layers=CONV_LAYERS, embed_dim=16, ffn_dim=32, num_heads=2, num_layers=1, pos_conv_kernel=4,
                  pos_conv_groups=2, vocab_size=len(LETTERS))
    save_model_dir(build_model(Wav2Vec2Config(**{**config, **changes}), LETTERS).eval(), out)
    return out


def score_a_hypothesis(data_dir, out):
    """``out`` (created) holds a hypothesis of ``data_dir/text`` with one word deleted in its
    second utterance, scored by ``asrc-score --sclite no``: the input of asrc-results."""
    from asrc.bin.score import main as score_main

    out.mkdir()
    lines = (data_dir / "text").read_text().splitlines()
    hyp = [line if i != 1 else " ".join(line.split()[:-1]) for i, line in enumerate(lines)]
    (out / "text").write_text("".join(f"{line}\n" for line in hyp))
    assert score_main(["--ref", str(data_dir / "text"), "--hyp", str(out / "text"), "--out", str(out),
                       "--sclite", "no"]) == 0
    return out
