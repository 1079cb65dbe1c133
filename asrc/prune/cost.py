"""Parameter count and MACs of a (pruned) model as a function of its structure sizes.

The same formulas serve two purposes: with the integer sizes of a config
(:meth:`Sizes.of_config`) they give exactly :func:`asrc.models.num_parameters` and the total
MACs of :func:`asrc.models.footprint.footprint`; with the *expected* sizes of hard-concrete
gates (:meth:`asrc.prune.model_gates.ModelGates.expected_sizes`, differentiable tensors) they
give the expected parameter count / MACs that the Lagrangian constrains.

Expectations are exact for independent gates: a product of two sizes governed by different
gates (the channels of conv layer ``i`` and of layer ``i - 1``) has the product of the
expectations as its expectation, and a sub-layer's output bias (and, pre-LN, its LayerNorm)
counts when the sub-layer gate is open *and* some head / unit is left, with probability
``P(gate != 0) * (1 - prod(1 - P(unit != 0)))``.
"""

from dataclasses import dataclass
from typing import Any, List

from asrc.models.config import Wav2Vec2Config
from asrc.models.footprint import num_frames
from asrc.models.wav2vec2 import conv_layer_groups

__all__ = ["COSTS", "Sizes", "param_count", "mac_count", "cost"]

COSTS = ("params", "macs")


@dataclass
class Sizes:
    """Sizes per conv layer / transformer layer: ints for a config, expected values (tensors) for gates.

    conv: channels; heads / ffn: heads / feed-forward units; heads_any / ffn_any: whether (the
    probability that) at least one is left; attention_gate / ffn_gate: whether (the probability
    that) the sub-layer gate is open; hidden / hidden_sq: the residual stream's width and its
    square (the positional conv's kernel grows with it squared).
    """

    conv: List
    heads: List
    heads_any: List
    attention_gate: List
    ffn: List
    ffn_any: List
    ffn_gate: List
    hidden: Any = None      # width of the residual stream (None: the config's embed_dim)
    hidden_sq: Any = None   # its square (an expectation of it for gates: not hidden ** 2)

    @classmethod
    def of_config(cls, config: Wav2Vec2Config) -> "Sizes":
        n = config.num_layers
        heads = [config.heads(j) for j in range(n)]
        ffn = [config.ffn_width(j) for j in range(n)]
        d = config.embed_dim
        return cls(conv=[c[0] for c in config.conv_layers], heads=heads, heads_any=[int(h > 0) for h in heads],
                   attention_gate=[1] * n, ffn=ffn, ffn_any=[int(f > 0) for f in ffn], ffn_gate=[1] * n,
                   hidden=d, hidden_sq=d * d)

    def width(self, config: Wav2Vec2Config):
        """``(width, width squared)`` of the residual stream."""
        if self.hidden is None:
            return config.embed_dim, config.embed_dim ** 2
        return self.hidden, self.hidden_sq


def _shared_conv_params(config: Wav2Vec2Config) -> int:
    import torch

    from asrc.models.wav2vec2 import ConvFeatureExtractor

    with torch.device("meta"):
        return sum(p.numel() for p in ConvFeatureExtractor(config).parameters())


def _per_group(d_sq, groups: int):
    """``d_sq / groups``: an int for a config's sizes (the width is a multiple of the groups)."""
    return d_sq // groups if isinstance(d_sq, int) else d_sq / groups


def param_count(config: Wav2Vec2Config, sizes: Sizes):
    """Parameters of ``config``'s architecture with ``sizes`` (a number, or a tensor for expected sizes).

    ``config`` gives everything sizes do not: widths, kernels, groups, layouts, vocabulary.
    """
    d, d_sq = sizes.width(config)
    hd, v = config.head_dim, config.vocab_size
    total = 0
    if config.conv_share:
        # shared kernels are counted once; their channels are never pruned (asrc.prune.masks)
        total += _shared_conv_params(config)
    else:
        in_ch = 1
        for i, ((_, k, _), g) in enumerate(zip(config.conv_layers, conv_layer_groups(config))):
            c = sizes.conv[i]
            total = total + c * in_ch * k / g
            if config.conv_bias:
                total = total + c
            if config.extractor_mode == "layer_norm" or i == 0:
                total = total + 2 * c
            in_ch = c
    c_last = sizes.conv[-1]
    total = total + 2 * c_last + c_last * d + d                                    # feature projection
    total = total + _per_group(d_sq, config.pos_conv_groups) * config.pos_conv_kernel \
        + config.pos_conv_kernel + d                                               # pos_conv (v, g, bias)
    total = total + 2 * d + d * v + v + d                                          # encoder LN, CTC head, mask_emb
    pre_ln = config.layer_norm_first
    for j in range(config.num_layers):
        attn_fixed = d + (2 * d if pre_ln else 0)      # out_proj bias (+ pre-LN LayerNorm)
        total = total + sizes.attention_gate[j] * (sizes.heads[j] * (4 * d * hd + 3 * hd)
                                                   + sizes.heads_any[j] * attn_fixed)
        ffn_fixed = d + (2 * d if pre_ln else 0)       # fc2 bias (+ pre-LN LayerNorm)
        total = total + sizes.ffn_gate[j] * (sizes.ffn[j] * (2 * d + 1) + sizes.ffn_any[j] * ffn_fixed)
        if not pre_ln:
            total = total + 4 * d                      # the two post-LN LayerNorms stay
    return total


def mac_count(config: Wav2Vec2Config, sizes: Sizes, seconds: float = 1.0):
    """MACs for a clip of ``seconds`` with ``sizes`` (definitions of :mod:`asrc.models.footprint`)."""
    from asrc.core.constants import SAMPLE_RATE

    samples = int(round(seconds * SAMPLE_RATE))
    t = num_frames(config, samples)
    d, d_sq = sizes.width(config)
    hd = config.head_dim
    total, length, in_ch = 0, samples, 1
    for i, ((_, k, s), g) in enumerate(zip(config.conv_layers, conv_layer_groups(config))):
        length = (length - k) // s + 1
        total = total + length * sizes.conv[i] * in_ch * k / g
        in_ch = sizes.conv[i]
    kp = config.pos_conv_kernel
    t_pos = t + 2 * (kp // 2) - kp + 1
    total = total + t * sizes.conv[-1] * d + t_pos * _per_group(d_sq, config.pos_conv_groups) * kp + t * d * config.vocab_size
    for j in range(config.num_layers):
        per_application = (sizes.attention_gate[j] * sizes.heads[j] * hd * (4 * t * d + 2 * t * t)
                           + sizes.ffn_gate[j] * sizes.ffn[j] * 2 * t * d)
        total = total + config.layer_reuse * per_application
    return total


def cost(config: Wav2Vec2Config, sizes: Sizes, kind: str = "params", seconds: float = 1.0):
    """:func:`param_count` (``kind="params"``) or :func:`mac_count` (``"macs"``)."""
    if kind == "params":
        return param_count(config, sizes)
    if kind == "macs":
        return mac_count(config, sizes, seconds)
    raise ValueError(f"cost kind {kind!r} is not one of {COSTS}")
