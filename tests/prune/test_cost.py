import pytest
import torch

from asrc.models import footprint, num_parameters
from asrc.prune.cost import Sizes, cost, mac_count, param_count
from asrc.prune.masks import apply_masks
from asrc.prune.model_gates import ModelGates

from prune_helpers import tiny_config, tiny_model

HETERO = dict(layer_num_heads=[4, 0, 2], layer_ffn_dims=[40, 7, 0])


@pytest.mark.parametrize("kw", [
    dict(), HETERO, dict(HETERO, layer_norm_first=True, extractor_mode="layer_norm", conv_bias=True),
    dict(HETERO, conv_groups=2), dict(HETERO, layer_reuse=2), dict(conv_share=True),
    dict(HETERO, embed_dim=24, attention_head_dim=8),  # a narrowed residual stream (hidden pruned)
])
def test_cost_of_a_config_is_the_footprint(kw):
    config = tiny_config(**kw)
    model = tiny_model(**kw)
    sizes = Sizes.of_config(config)
    assert param_count(config, sizes) == num_parameters(model)
    fp = footprint(config, seconds=0.5)
    assert mac_count(config, sizes, seconds=0.5) == fp.total.macs
    assert cost(config, sizes, "params") == fp.total.params


@pytest.mark.parametrize("structures", [["conv", "heads", "ffn", "attention_layer", "ffn_layer"],
                                        ["conv", "heads", "ffn", "attention_layer", "ffn_layer", "hidden"],
                                        ["hidden"]])
def test_expected_cost_is_differentiable_and_matches_sampled_cost(structures):
    config = tiny_config()
    gates = ModelGates(config, structures).train()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in gates.parameters():
            p.copy_(torch.randn_like(p))
    expected = cost(config, gates.expected_sizes(), "params")
    expected.backward()
    expected = float(expected.detach())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gates.parameters())
    # Monte Carlo: the parameter count of the dense model each sample of masks leaves
    from asrc.prune.masks import pruned_config

    counts = []
    for _ in range(400):
        with torch.no_grad():
            masks = gates()
        if any(m is not None and int((m != 0).sum()) == 0 for m in masks.conv + [masks.hidden]):
            counts.append(None)
            continue
        counts.append(param_count(config, Sizes.of_config(pruned_config(config, masks))))
    valid = [c for c in counts if c is not None]
    assert len(valid) > 300
    mc = sum(valid) / len(valid)
    assert abs(mc - expected) / expected < 0.03


def test_kept_fractions_logged_per_structure():
    gates = ModelGates(tiny_config(), ["heads", "ffn_layer"])
    kept = gates.kept_fractions()
    assert set(kept) == {"heads", "ffn_layer"}
    assert all(0.95 < float(v) <= 1.0 for v in kept.values())          # gates start open
