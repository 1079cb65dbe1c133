"""Export at the target (``prune: export_at_target``): one common shift of the gates brings the
dense model onto the target cost, keeping the gates' order; the cost it aims at is the
materialised model's."""

import pytest
import torch

from asrc.models import num_parameters
from asrc.prune.masks import materialise
from asrc.prune.objective import PruningObjective
from asrc.prune.spec import PruneSpec
from asrc.errors import ConfigError

from prune_helpers import tiny_model

STRUCTURES = ["conv", "heads", "ffn", "attention_layer", "ffn_layer"]


def _objective(model, target: float, cost: str = "params", seed: int = 0) -> PruningObjective:
    objective = PruningObjective(model.config, PruneSpec(structures=STRUCTURES, target_sparsity=target, cost=cost,
                                                         cost_seconds=0.5))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # gates as a run leaves them: some sure, some not
        for g in objective.gates.modules():
            if hasattr(g, "log_alpha"):
                g.log_alpha.copy_(3.0 * torch.randn(g.log_alpha.shape, generator=gen))
    return objective.eval()


@pytest.mark.parametrize("target,cost", [(0.3, "params"), (0.6, "params"), (0.5, "macs")])
def test_shift_lands_on_the_target_and_keeps_the_order(target, cost):
    model = tiny_model()
    objective = _objective(model, target, cost)
    before = [g.log_alpha.clone() for g in objective.gates.modules() if hasattr(g, "log_alpha")]
    offset = objective.shift_to_target()
    after = [g.log_alpha for g in objective.gates.modules() if hasattr(g, "log_alpha")]
    assert all(torch.allclose(a - b, torch.full_like(a, offset)) for a, b in zip(after, before))
    want = (1 - target) * objective.full_cost
    assert abs(objective.dense_cost() - want) <= 0.05 * want
    # the cost aimed at is the materialised model's
    dense = materialise(model, objective.gates())
    assert objective.dense_cost("params") == num_parameters(dense)


def test_the_spec_key_is_checked():
    assert PruneSpec(export_at_target=True).export_at_target
    with pytest.raises(ConfigError, match="export_at_target"):
        PruneSpec(export_at_target="yes")
