"""Deeper models from trained shallower ones (progressive stacking).

:func:`grow_depth` turns an ``L``-layer pre-LN model into a deeper one that computes exactly
the same function: every new layer is a copy of the layer before it whose two output
projections (attention ``out_proj`` and FFN ``fc2``) are zero, so in a pre-LN layer both
residual branches add nothing. Training then starts from the shallow model's accuracy instead
of from scratch (stacking: Gong et al., ICML 2019; zero-initialised residual branches as in
ReZero / Fixup); the copied query/key/value and ``fc1`` weights give the new layers features
to start from once their output projections move away from zero.
"""

import copy
from typing import List, Optional, Sequence

import torch

from asrc.models.wav2vec2 import Wav2Vec2CTC

__all__ = ["grow_depth", "grown_layer_sources"]


def grown_layer_sources(old_layers: int, new_layers: int) -> List[Optional[int]]:
    """For each layer of the grown model, the old layer it is (``int``) or follows as a new one (``None``).

    New layers are spread evenly: 6 -> 12 gives ``[0, None, 1, None, ...]``.
    """
    if new_layers < old_layers or old_layers < 1:
        raise ValueError(f"grow_depth: cannot grow {old_layers} layers to {new_layers}")
    extra = new_layers - old_layers
    out: List[Optional[int]] = []
    for i in range(old_layers):
        out.append(i)
        # old layer i is followed by the new layers that fall between i and i + 1
        out.extend([None] * (((i + 1) * extra) // old_layers - (i * extra) // old_layers))
    return out


@torch.no_grad()
def grow_depth(model: Wav2Vec2CTC, num_layers: int, sources: Optional[Sequence[Optional[int]]] = None) -> Wav2Vec2CTC:
    """A copy of ``model`` with ``num_layers`` transformer layers that gives the same logits.

    Args:
        model: a pre-LN model (``layer_norm_first``); post-LN layers normalise after the
            residual, so a zero branch is not an identity there.
        num_layers: the new depth (>= the old one).
        sources: :func:`grown_layer_sources` layout (default: new layers spread evenly).
    """
    config = model.config
    if not config.layer_norm_first:
        raise ValueError("grow_depth needs a pre-LN model (layer_norm_first: true): in a post-LN layer "
                         "an all-zero residual branch is followed by a LayerNorm and is not an identity")
    if config.layer_reuse != 1:
        raise ValueError("grow_depth: layer_reuse must be 1")
    if config.is_heterogeneous:
        raise ValueError("grow_depth: the model has heterogeneous (pruned) layers; grow homogeneous models only")
    sources = list(sources or grown_layer_sources(config.num_layers, num_layers))
    if len(sources) != num_layers or sources[0] is None:
        raise ValueError(f"grow_depth: sources must list {num_layers} layers and start with an old one, got {sources}")
    grown = copy.deepcopy(model)
    grown.config = config.replace(num_layers=num_layers)
    old = model.encoder.layers
    layers, last = [], None
    for src in sources:
        if src is None:
            layer = copy.deepcopy(old[last])
            for linear in (layer.self_attn.out_proj, layer.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        else:
            layer, last = copy.deepcopy(old[src]), src
        layers.append(layer)
    grown.encoder.layers = torch.nn.ModuleList(layers)
    return grown
