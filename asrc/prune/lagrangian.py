"""The Lagrangian constraint that drives the expected cost of a gated model to a target.

    penalty = lambda1 * (s - t) + lambda2 * (s - t)^2

with ``s`` the expected sparsity (1 - expected cost / cost of the unpruned model) and ``t`` the
target sparsity of this update: 0 at update 0, rising linearly to ``target_sparsity`` over
``warmup_updates`` and constant afterwards (:func:`target_at`), as in CoFi and DPHuBERT.
The model's parameters (gates included) *minimise* the total loss; the multipliers
``lambda1, lambda2`` (initially 0) *maximise* it. The ascent is built into the graph: the
multipliers enter the penalty through :func:`reverse_gradient`, so any optimizer that descends
the loss ascends in them, with no special optimizer step (it works unchanged in ESPnet's
trainer, with gradient clipping, accumulation and DDP).
"""

import torch
from torch import Tensor, nn

__all__ = ["LagrangianConstraint", "reverse_gradient", "target_at"]


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def reverse_gradient(x: Tensor) -> Tensor:
    """``x`` in the forward pass; the gradient that reaches ``x`` is negated."""
    return _ReverseGradient.apply(x)


def target_at(update: int, target_sparsity: float, warmup_updates: int) -> float:
    """Target sparsity at optimizer update ``update`` (module doc)."""
    if warmup_updates <= 0 or update >= warmup_updates:
        return float(target_sparsity)
    return float(target_sparsity) * max(update, 0) / warmup_updates


class LagrangianConstraint(nn.Module):
    """``forward(expected_sparsity, update) -> (penalty, target)``; see the module doc."""

    def __init__(self, target_sparsity: float, warmup_updates: int = 0):
        super().__init__()
        if not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"target_sparsity={target_sparsity} is not in [0, 1)")
        self.target_sparsity = float(target_sparsity)
        self.warmup_updates = int(warmup_updates)
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.zeros(()))

    def forward(self, expected_sparsity: Tensor, update: int):
        target = target_at(update, self.target_sparsity, self.warmup_updates)
        gap = expected_sparsity - target
        penalty = reverse_gradient(self.lambda1) * gap + reverse_gradient(self.lambda2) * gap * gap
        return penalty, target
