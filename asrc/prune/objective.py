"""``PruningObjective``: the gates of a student and the Lagrangian on their expected cost.

One module for a training loop (ESPnet's, :mod:`asrc.espnet.models`, or a plain one):

    objective = PruningObjective(student.config, PruneSpec(target_sparsity=0.7))
    masks = objective.gates()                       # sampled (train) / deterministic (eval)
    with apply_masks(student, masks):
        loss = distillation_loss(student(...))
    penalty, stats = objective(update)              # expected cost, target, multipliers, kept fractions
    (loss + penalty).backward()

The optimizer should give :meth:`PruningObjective.parameters` (gates and multipliers) the
learning rate ``spec.reg_lr`` and no weight decay; the multipliers' gradient ascent needs nothing
else (:mod:`asrc.prune.lagrangian`).
"""

from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.prune.cost import Sizes, cost
from asrc.prune.lagrangian import LagrangianConstraint
from asrc.prune.model_gates import ModelGates
from asrc.prune.spec import PruneSpec

__all__ = ["PruningObjective"]


class PruningObjective(nn.Module):
    def __init__(self, config: Wav2Vec2Config, spec: PruneSpec):
        super().__init__()
        self.spec = spec
        self.config = config
        self.gates = ModelGates(config, spec.structures, spec.init_drop_rate)
        self.constraint = LagrangianConstraint(spec.target_sparsity, spec.warmup_updates)
        full = Sizes.of_config(config)
        if spec.cost == "macs" and spec.cost_seconds * SAMPLE_RATE < config.receptive_field:
            raise ConfigError(f"prune.cost_seconds={spec.cost_seconds} is {int(spec.cost_seconds * SAMPLE_RATE)} "
                              f"samples, shorter than the student's receptive field ({config.receptive_field}): "
                              f"give a clip of at least {config.receptive_field / SAMPLE_RATE:.3f} s")
        #: Cost of the unpruned model (the spec's kind) and its parameter count.
        self.full_cost = float(cost(config, full, spec.cost, spec.cost_seconds))
        self.full_params = float(cost(config, full, "params"))

    def dense_cost(self, kind: str = None) -> float:
        """Cost (``spec.cost`` unless ``kind``) of the dense model the deterministic gates leave
        (:func:`asrc.prune.masks.pruned_config`); 0 when they leave no model."""
        from asrc.prune.masks import pruned_config

        was_training = self.gates.training
        self.gates.eval()
        try:
            with torch.no_grad():
                config = pruned_config(self.config, self.gates())
        except (ConfigError, ValueError):
            return 0.0
        finally:
            self.gates.train(was_training)
        return float(cost(config, Sizes.of_config(config), kind or self.spec.cost, self.spec.cost_seconds))

    @torch.no_grad()
    def shift_to_target(self, sparsity: float = None, iterations: int = 40) -> float:
        """Move every gate's ``log_alpha`` by one common offset so that the dense model the
        deterministic gates leave (:meth:`dense_cost`) comes nearest to ``1 - sparsity`` of the
        full cost (default: the spec's target); the order of the gates within and across
        structures is kept. Returns the offset. For the export of a run whose multipliers left the
        expected cost off the target at its last update: the structures least sure to stay go
        first (or the most sure of the closed ones come back)."""
        sparsity = self.spec.target_sparsity if sparsity is None else sparsity
        want = (1.0 - sparsity) * self.full_cost
        gates = [g.log_alpha for g in self.gates.modules() if hasattr(g, "log_alpha")]
        if not gates:
            return 0.0
        base = [g.clone() for g in gates]

        def cost_at(offset: float) -> float:
            for g, b in zip(gates, base):
                g.copy_(b + offset)
            return self.dense_cost()

        lo, hi = -50.0, 50.0  # the dense cost grows with the offset, in steps
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cost_at(mid) < want else (lo, mid)
        offset = lo if abs(cost_at(lo) - want) < abs(cost_at(hi) - want) else hi
        cost_at(offset)
        return offset

    def expected_cost(self, kind: str = None) -> Tensor:
        """Expected cost (``spec.cost`` unless ``kind``) of the gated model; differentiable."""
        return cost(self.config, self.gates.expected_sizes(), kind or self.spec.cost, self.spec.cost_seconds)

    def forward(self, update: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``(penalty, stats)`` at optimizer update ``update``; stats are detached scalars for the logs."""
        expected = self.expected_cost()
        sparsity = 1.0 - expected / self.full_cost
        penalty, target = self.constraint(sparsity, update)
        params = expected if self.spec.cost == "params" else self.expected_cost("params")
        stats = {"expected_params": params.detach(), "expected_sparsity": sparsity.detach(),
                 "target_sparsity": torch.tensor(target), "lambda1": self.constraint.lambda1.detach().clone(),
                 "lambda2": self.constraint.lambda2.detach().clone(), "lagrangian": penalty.detach()}
        if self.spec.cost == "macs":
            stats["expected_macs"] = expected.detach()
        stats.update({f"kept_{name}": v for name, v in self.gates.kept_fractions().items()})
        return penalty, stats
