"""Tiny models and random masks shared by the pruning tests."""

import torch

from asrc.models import Wav2Vec2Config, build_model
from asrc.prune.masks import Masks, conv_tie, hidden_tie

TOKENS = ["<blank>", "A", "B", "C", "|"]


def tiny_config(**kw) -> Wav2Vec2Config:
    base = dict(conv_layers=[[16, 10, 5], [16, 3, 2], [12, 3, 2], [16, 2, 2]], embed_dim=32, ffn_dim=40,
                num_heads=4, num_layers=3, pos_conv_kernel=8, pos_conv_groups=4, vocab_size=len(TOKENS),
                dropout=0.0, attention_dropout=0.0)
    return Wav2Vec2Config(**{**base, **kw})


def tiny_model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = build_model(tiny_config(**kw), TOKENS).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that folding them wrongly shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def random_masks(config: Wav2Vec2Config, gen: torch.Generator, keep: float = 0.6, hidden: bool = False) -> Masks:
    """Masks with removed units (0), kept ones scaled in (0.3, 1]; at least one unit kept per conv
    layer; with ``hidden`` a mask on the residual stream too (tied as :func:`hidden_tie` says)."""
    def values(n):
        v = 0.3 + 0.7 * torch.rand(n, generator=gen)
        v[torch.rand(n, generator=gen) > keep] = 0.0
        return v

    conv = []
    for (c, _, _), t in zip(config.conv_layers, conv_tie(config)):
        v = values(c // t)
        v[0] = 0.9
        conv.append(v.repeat(t))
    n = config.num_layers
    return Masks(conv=conv, heads=[values(config.heads(j)) for j in range(n)],
                 ffn=[values(config.ffn_width(j)) for j in range(n)],
                 attention_layer=[torch.tensor(0.8) for _ in range(n)],
                 ffn_layer=[torch.tensor(0.7) for _ in range(n)],
                 hidden=None if not hidden else _some_kept(values(config.embed_dim // hidden_tie(config))).repeat(
                     hidden_tie(config)))


def _some_kept(v):
    v[0] = 0.8
    return v


def batch(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    wav = 0.1 * torch.randn(2, 4000, generator=gen)
    lengths = torch.tensor([4000, 3100])
    return wav, lengths
