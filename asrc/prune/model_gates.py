"""Hard-concrete gates on the prunable structures of one model config.

``ModelGates(config, structures)`` holds a :class:`asrc.prune.gates.HardConcrete` per layer and
structure (:data:`asrc.prune.masks.STRUCTURES`); calling it gives :class:`asrc.prune.masks.Masks`
(sampled in training mode, deterministic in eval mode) and :meth:`ModelGates.expected_sizes` the
differentiable expected sizes that :mod:`asrc.prune.cost` turns into an expected cost.
Conv channels tied across groups (:func:`asrc.prune.masks.conv_tie`) share one gate, and so do
the residual stream's dimensions tied across the positional conv's groups (``hidden``,
:func:`asrc.prune.masks.hidden_tie`).
"""

from typing import Dict, Iterable, Optional

import torch
from torch import Tensor, nn

from asrc.errors import ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.prune.cost import Sizes
from asrc.prune.gates import HardConcrete
from asrc.prune.masks import STRUCTURES, Masks, conv_tie, hidden_tie

__all__ = ["ModelGates"]


class ModelGates(nn.Module):
    """Gates for ``structures`` of a model with ``config`` (module doc)."""

    def __init__(self, config: Wav2Vec2Config, structures: Iterable[str] = ("conv", "heads", "ffn"),
                 init_drop_rate: float = 0.01):
        super().__init__()
        structures = tuple(structures)
        unknown = sorted(set(structures) - set(STRUCTURES))
        if unknown:
            raise ConfigError(f"unknown pruning structures {unknown} (known: {list(STRUCTURES)})")
        if not structures:
            raise ConfigError("no pruning structures given")
        if "conv" in structures and config.conv_share:
            raise ConfigError("pruning structure 'conv' with conv_share: shared kernels cannot lose channels "
                              "layer by layer; leave 'conv' out")
        self.config = config
        self.structures = structures
        self.conv_ties = conv_tie(config)

        def gates(sizes) -> nn.ModuleDict:
            return nn.ModuleDict({str(i): HardConcrete(n, init_drop_rate) for i, n in enumerate(sizes) if n > 0})

        n = config.num_layers
        heads = [config.heads(j) for j in range(n)]
        ffn = [config.ffn_width(j) for j in range(n)]
        self.conv = gates([c[0] // t for c, t in zip(config.conv_layers, self.conv_ties)] if "conv" in structures else [])
        self.heads = gates(heads if "heads" in structures else [])
        self.ffn = gates(ffn if "ffn" in structures else [])
        self.attention_layer = gates([int(h > 0) for h in heads] if "attention_layer" in structures else [])
        self.ffn_layer = gates([int(f > 0) for f in ffn] if "ffn_layer" in structures else [])
        self.hidden_tie = hidden_tie(config)
        self.hidden = gates([config.embed_dim // self.hidden_tie] if "hidden" in structures else [])

    @staticmethod
    def _get(gates: nn.ModuleDict, i: int) -> Optional[HardConcrete]:
        return gates[str(i)] if str(i) in gates else None

    def forward(self) -> Masks:
        """Masks for one forward pass: a sample in training mode, the deterministic gates in eval mode."""
        def values(gates: nn.ModuleDict, count: int, expand=None, scalar=False):
            out = []
            for i in range(count):
                g = self._get(gates, i)
                if g is None:
                    out.append(None)
                    continue
                z = g()
                if expand is not None:
                    z = z.repeat(expand[i])
                out.append(z.reshape(()) if scalar else z)
            return out

        c, n = len(self.config.conv_layers), self.config.num_layers
        return Masks(conv=values(self.conv, c, expand=self.conv_ties), heads=values(self.heads, n),
                     ffn=values(self.ffn, n), attention_layer=values(self.attention_layer, n, scalar=True),
                     ffn_layer=values(self.ffn_layer, n, scalar=True),
                     hidden=values(self.hidden, 1, expand=[self.hidden_tie])[0])

    def expected_sizes(self) -> Sizes:
        """Expected structure sizes (:class:`asrc.prune.cost.Sizes`), differentiable in the gates."""
        full = Sizes.of_config(self.config)
        one = torch.ones((), device=self._device())

        def expected(gates, values, tie=None):
            out = []
            for i, v in enumerate(values):
                g = self._get(gates, i)
                out.append(v * one if g is None else g.expected_l0() * (tie[i] if tie else 1))
            return out

        def any_left(gates, values):
            out = []
            for i, v in enumerate(values):
                g = self._get(gates, i)
                out.append(v * one if g is None else 1.0 - torch.prod(1.0 - g.prob_nonzero()))
            return out

        def gate_open(gates, values):
            out = []
            for i, v in enumerate(values):
                g = self._get(gates, i)
                out.append(v * one if g is None else g.prob_nonzero().reshape(()))
            return out

        hidden, hidden_sq = full.hidden, full.hidden_sq
        g = self._get(self.hidden, 0)
        if g is not None:
            # width = tie x (sum of independent Bernoulli(p_j)): E[width] and E[width^2] exactly
            p, t = g.prob_nonzero(), self.hidden_tie
            hidden = t * p.sum()
            hidden_sq = t * t * ((p * (1 - p)).sum() + p.sum() ** 2)
        return Sizes(conv=expected(self.conv, full.conv, self.conv_ties),
                     heads=expected(self.heads, full.heads), heads_any=any_left(self.heads, full.heads_any),
                     attention_gate=gate_open(self.attention_layer, full.attention_gate),
                     ffn=expected(self.ffn, full.ffn), ffn_any=any_left(self.ffn, full.ffn_any),
                     ffn_gate=gate_open(self.ffn_layer, full.ffn_gate), hidden=hidden, hidden_sq=hidden_sq)

    def _device(self):
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def kept_fractions(self) -> Dict[str, Tensor]:
        """Expected kept fraction of every gated structure type (units over all layers), for the logs."""
        out = {}
        for name in self.structures:
            gates: nn.ModuleDict = getattr(self, name)
            if len(gates) == 0:
                continue
            kept = sum(g.expected_l0() for g in gates.values())
            total = sum(g.n for g in gates.values())
            out[name] = (kept / total).detach()
        return out
