"""Hard-concrete gates (Louizos, Welling & Kingma, "Learning sparse neural networks through L0
regularization", ICLR 2018).

A gate vector of ``n`` units has one trainable ``log_alpha`` per unit. With ``u ~ U(0, 1)``,

    s = sigmoid((log u - log(1 - u) + log_alpha) / beta)       the binary concrete sample
    z = min(1, max(0, s * (r - l) + l))                         stretched to (l, r), clipped

so ``z`` is exactly 0 or exactly 1 with non-zero probability and differentiable in between.
``beta = 2/3``, ``(l, r) = (-0.1, 1.1)`` as in the paper. The probability that a unit is
*not* zero, the expected L0 norm of that unit, has a closed form:

    P(z != 0) = sigmoid(log_alpha - beta * log(-l / r))

In training mode :meth:`HardConcrete.forward` draws a sample; in eval mode it is
deterministic: the ``k = round(sum P(z != 0))`` units with the largest ``log_alpha`` take the
paper's test-time value ``min(1, max(0, sigmoid(log_alpha) * (r - l) + l))``, the others 0
(a kept unit whose test-time value is 0 is removed too), so the structure that is kept has
about as many units as the expected count the Lagrangian constrained.
"""

import math

import torch
from torch import Tensor, nn

__all__ = ["BETA", "LIMITS", "HardConcrete", "init_log_alpha"]

BETA = 2.0 / 3.0
LIMITS = (-0.1, 1.1)


def init_log_alpha(drop_rate: float) -> float:
    """``log_alpha`` whose binary concrete is below 0.5 with probability ``drop_rate``."""
    if not 0.0 < drop_rate < 1.0:
        raise ValueError(f"init drop rate {drop_rate} is not in (0, 1)")
    return math.log(1.0 - drop_rate) - math.log(drop_rate)


class HardConcrete(nn.Module):
    """``n`` hard-concrete gates; ``forward()`` returns ``z [n]`` (see the module doc).

    ``init_drop_rate`` sets the initial ``log_alpha`` (plus noise of std ``init_std``): a small
    rate starts with every unit nearly always open, i.e. with the model it was built from.
    """

    def __init__(self, n: int, init_drop_rate: float = 0.01, init_std: float = 0.01,
                 beta: float = BETA, limits=LIMITS):
        super().__init__()
        if n < 1:
            raise ValueError(f"HardConcrete needs at least one unit, got n={n}")
        self.n = n
        self.beta = beta
        self.low, self.high = limits
        if not (self.low < 0.0 and self.high > 1.0):
            raise ValueError(f"hard-concrete limits {limits} must straddle [0, 1]")
        self.log_alpha = nn.Parameter(torch.empty(n).normal_(init_log_alpha(init_drop_rate), init_std))

    def extra_repr(self) -> str:
        return f"n={self.n}, beta={self.beta:.4g}, limits=({self.low}, {self.high})"

    def prob_nonzero(self) -> Tensor:
        """``[n]`` probability that each gate is not exactly 0 (its expected L0 norm); differentiable."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.low / self.high))

    def expected_l0(self) -> Tensor:
        """Expected number of units not exactly 0 (scalar, differentiable)."""
        return self.prob_nonzero().sum()

    def sample(self) -> Tensor:
        """A training-time sample ``z [n]``, differentiable in ``log_alpha``."""
        eps = torch.finfo(self.log_alpha.dtype).eps
        u = torch.rand_like(self.log_alpha).clamp(eps, 1.0 - eps)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (self.high - self.low) + self.low).clamp(0.0, 1.0)

    def deterministic(self) -> Tensor:
        """The eval-time gate values ``[n]`` (module doc); no gradient."""
        with torch.no_grad():
            keep = int(round(float(self.expected_l0())))
            z = (torch.sigmoid(self.log_alpha) * (self.high - self.low) + self.low).clamp(0.0, 1.0)
            if keep < self.n:
                order = torch.argsort(self.log_alpha, descending=True)
                z[order[keep:]] = 0.0
        return z

    def forward(self) -> Tensor:
        return self.sample() if self.training else self.deterministic()
