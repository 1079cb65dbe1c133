"""The Lagrangian drives the expected cost to the target on a tiny teacher -> student run."""

import copy

import pytest
import torch

from asrc.distill.losses import kd_loss
from asrc.prune.masks import apply_masks
from asrc.prune.objective import PruningObjective
from asrc.prune.spec import PruneSpec

from prune_helpers import batch, tiny_model


def prune_tiny(spec: PruneSpec, updates: int, seed: int = 0):
    torch.manual_seed(seed)
    teacher = tiny_model(seed)
    student = copy.deepcopy(teacher).train()
    objective = PruningObjective(student.config, spec).train()
    opt = torch.optim.AdamW([{"params": student.parameters(), "lr": 1e-3},
                             {"params": objective.parameters(), "lr": spec.reg_lr, "weight_decay": 0.0}])
    wav, lengths = batch()
    with torch.no_grad():
        t_logits, _ = teacher(wav, lengths)
    history = []
    for update in range(updates):
        masks = objective.gates()
        with apply_masks(student, masks):
            logits, out_lengths = student(wav, lengths)
        penalty, stats = objective(update)
        loss = kd_loss(logits, t_logits, out_lengths) + penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(stats)
    return objective, history


@pytest.mark.parametrize("kind", ["params", "macs"])
def test_lagrangian_reaches_the_target(kind):
    spec = PruneSpec(structures=["conv", "heads", "ffn", "attention_layer", "ffn_layer"], target_sparsity=0.5,
                     cost=kind, cost_seconds=0.25, warmup_updates=100, reg_lr=0.1)
    objective, history = prune_tiny(spec, updates=250)
    final = 1.0 - float(objective.expected_cost().detach()) / objective.full_cost
    assert history[0]["expected_sparsity"] < 0.05           # the gates start open
    kept = 1.0 - final
    assert abs(kept - 0.5) / 0.5 < 0.05, f"expected {kind} kept {kept:.3f}, target 0.5"
    assert float(history[-1]["target_sparsity"]) == pytest.approx(0.5)
    assert {"expected_params", "lambda1", "lambda2", "kept_conv", "kept_heads", "kept_ffn"} <= set(history[-1])


def test_lagrangian_reaches_the_target_with_the_width_pruned():
    spec = PruneSpec(structures=["conv", "heads", "ffn", "attention_layer", "ffn_layer", "hidden"],
                     target_sparsity=0.5, warmup_updates=100, reg_lr=0.1)
    objective, history = prune_tiny(spec, updates=250)
    kept = float(objective.expected_cost().detach()) / objective.full_cost
    assert abs(kept - 0.5) / 0.5 < 0.05, f"expected params kept {kept:.3f}, target 0.5"
    assert "kept_hidden" in history[-1]
