import math

import pytest
import torch

from asrc.prune.gates import HardConcrete, init_log_alpha
from asrc.prune.lagrangian import LagrangianConstraint, reverse_gradient, target_at


def gate(log_alpha):
    g = HardConcrete(len(log_alpha))
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor(log_alpha))
    return g


def test_expected_l0_matches_monte_carlo():
    torch.manual_seed(0)
    g = gate([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0]).train()
    samples = torch.stack([g() for _ in range(40000)])
    assert samples.min() == 0.0 and samples.max() == 1.0         # exact zeros and ones occur
    assert ((samples > 0) & (samples < 1)).any()
    mc = (samples != 0).float().mean(0)
    torch.testing.assert_close(g.prob_nonzero().detach(), mc, atol=0.01, rtol=0)
    assert abs(float(g.expected_l0().detach()) - float(mc.sum())) < 0.03


def test_closed_form_values():
    g = gate([0.0])
    # P(z != 0) = sigmoid(log_alpha - beta log(-l/r)) = sigmoid((2/3) log 11)
    assert float(g.prob_nonzero()) == pytest.approx(1 / (1 + 11 ** (-2 / 3)), abs=1e-6)
    assert init_log_alpha(0.01) == pytest.approx(math.log(99))


def test_samples_are_differentiable():
    g = gate([0.0, 1.0, -1.0]).train()
    torch.manual_seed(1)
    z = torch.stack([g() for _ in range(200)]).sum()
    z.backward()
    assert (g.log_alpha.grad > 0).all()


def test_deterministic_gates_keep_the_expected_count():
    g = gate([3.0, -4.0, 2.0, -0.5, 5.0, -6.0]).eval()
    z1, z2 = g(), g()
    assert torch.equal(z1, z2)
    keep = round(float(g.expected_l0()))
    assert int((z1 > 0).sum()) <= keep
    # the zeros are the gates with the smallest log_alpha
    assert set((z1 == 0).nonzero().flatten().tolist()) >= {1, 5}
    assert float(z1[4]) == 1.0


def test_target_ramp():
    assert target_at(0, 0.6, 100) == 0.0
    assert target_at(50, 0.6, 100) == pytest.approx(0.3)
    assert target_at(100, 0.6, 100) == pytest.approx(0.6)
    assert target_at(5000, 0.6, 100) == pytest.approx(0.6)
    assert target_at(0, 0.6, 0) == pytest.approx(0.6)


def test_multipliers_ascend():
    x = torch.zeros((), requires_grad=True)
    (reverse_gradient(x) * 3.0).backward()
    assert float(x.grad) == -3.0
    c = LagrangianConstraint(0.5)
    opt = torch.optim.SGD(c.parameters(), lr=0.1)
    expected = torch.tensor(0.2)               # below target: the penalty must grow
    penalties = []
    for _ in range(3):
        opt.zero_grad()
        penalty, target = c(expected, update=10)
        penalties.append(float(penalty))
        penalty.backward()
        opt.step()
    assert target == 0.5
    assert float(c.lambda1) < 0 and float(c.lambda2) > 0     # both move so that the penalty increases
    assert penalties[0] == 0.0 and penalties[2] > penalties[1] > 0
