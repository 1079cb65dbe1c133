import dataclasses

import pytest
import torch

from asrc.errors import ConfigError
from asrc.models import num_parameters
from asrc.prune.masks import Masks, apply_masks, materialise, pruned_config

from prune_helpers import batch, random_masks, tiny_model


def masked_and_dense(model, masks):
    wav, lengths = batch()
    with torch.no_grad(), apply_masks(model, masks):
        masked, masked_len, masked_hidden = model(wav, lengths, output_hidden_states=True)
    dense = materialise(model, masks)
    with torch.no_grad():
        out, out_len, hidden = dense(wav, lengths, output_hidden_states=True)
    assert torch.equal(out_len, masked_len)
    valid = torch.arange(out.shape[1])[None, :] < out_len[:, None]
    return masked[valid], out[valid], dense, (masked_hidden, hidden, valid)


@pytest.mark.parametrize("kw", [
    dict(),                                                   # post-LN, group norm
    dict(layer_norm_first=True, extractor_mode="layer_norm", conv_bias=True),
    dict(conv_groups=2),                                      # grouped convs: tied channels
    dict(layer_reuse=2),
])
def test_dense_model_equals_masked_model(kw):
    model = tiny_model(**kw)
    masks = random_masks(model.config, torch.Generator().manual_seed(3))
    masked, dense_out, dense, (mh, dh, valid) = masked_and_dense(model, masks)
    torch.testing.assert_close(dense_out, masked, rtol=1e-5, atol=1e-5)
    for a, b in zip(mh, dh):
        torch.testing.assert_close(b[valid], a[valid], rtol=1e-5, atol=1e-5)
    assert num_parameters(dense) < num_parameters(model)
    # the masks did remove something of every kind
    c = dense.config
    assert [x[0] for x in c.conv_layers] != [x[0] for x in model.config.conv_layers]
    assert c.layer_num_heads is not None and c.layer_ffn_dims is not None


def test_whole_sublayers_removed():
    model = tiny_model()
    masks = random_masks(model.config, torch.Generator().manual_seed(4))
    masks.attention_layer[1] = torch.tensor(0.0)        # gate closed
    masks.heads[2] = torch.zeros(4)                      # no head left: the sub-layer goes too
    masks.ffn_layer[0] = torch.tensor(0.0)
    masks.ffn[2] = torch.zeros(40)
    masked, out, dense, _ = masked_and_dense(model, masks)
    torch.testing.assert_close(out, masked, rtol=1e-5, atol=1e-5)
    assert dense.config.layer_num_heads[1:] == [0, 0]
    assert dense.config.layer_ffn_dims[0] == 0 and dense.config.layer_ffn_dims[2] == 0
    assert dense.encoder.layers[1].self_attn is None and dense.encoder.layers[0].fc1 is None
    # post-LN keeps the LayerNorm of a removed sub-layer
    assert dense.encoder.layers[1].self_attn_layer_norm is not None


def test_pre_ln_drops_the_norm_of_a_removed_sublayer():
    model = tiny_model(layer_norm_first=True)
    masks = Masks.none(model.config)
    masks.attention_layer[0] = torch.tensor(0.0)
    masked, out, dense, _ = masked_and_dense(model, masks)
    torch.testing.assert_close(out, masked, rtol=1e-5, atol=1e-5)
    assert dense.encoder.layers[0].self_attn_layer_norm is None
    assert "encoder.layers.0.self_attn_layer_norm.weight" not in dense.state_dict()


def test_no_masks_is_the_same_model():
    model = tiny_model()
    dense = materialise(model, Masks.none(model.config))
    assert dense.config.to_dict() == model.config.to_dict()
    wav, lengths = batch()
    with torch.no_grad():
        assert torch.equal(dense(wav, lengths)[0], model(wav, lengths)[0])


def test_masks_leave_the_model_as_it_was():
    model = tiny_model()
    wav, lengths = batch()
    with torch.no_grad():
        before = model(wav, lengths)[0]
        with apply_masks(model, random_masks(model.config, torch.Generator().manual_seed(5))):
            masked = model(wav, lengths)[0]
        after = model(wav, lengths)[0]
    assert not torch.allclose(masked, before)
    assert torch.equal(after, before)


def test_bad_masks_are_named():
    model = tiny_model(conv_groups=2)
    masks = Masks.none(model.config)
    masks.heads[1] = torch.ones(3)
    with pytest.raises(ValueError, match=r"masks.heads\[1\] has shape \(3,\)"):
        pruned_config(model.config, masks)
    masks = Masks.none(model.config)
    m = torch.ones(16)
    m[1] = 0.0                                # only in the first group
    masks.conv[1] = m
    with pytest.raises(ValueError, match=r"masks.conv\[1\] differs between the 2 channel groups"):
        pruned_config(model.config, masks)
    masks = Masks.none(model.config)
    masks.conv[0] = torch.zeros(16)
    with pytest.raises(ConfigError, match=r"every channel of conv layer\(s\) \[0\]"):
        pruned_config(model.config, masks)


@pytest.mark.parametrize("kw", [dict(), dict(layer_norm_first=True, extractor_mode="layer_norm", conv_bias=True),
                                dict(conv_groups=2, layer_reuse=2)])
def test_hidden_dimension_pruned(kw):
    """The residual stream narrowed (CoFi's hidden mask) with every other structure: the dense
    model computes the masked one's logits, and its hidden states are the kept dimensions of
    the masked model's (the others are 0 there)."""
    model = tiny_model(**kw)
    masks = random_masks(model.config, torch.Generator().manual_seed(5), hidden=True)
    keep = (masks.hidden != 0).nonzero().flatten()
    assert 0 < len(keep) < 32
    masked, dense_out, dense, (mh, dh, valid) = masked_and_dense(model, masks)
    torch.testing.assert_close(dense_out, masked, rtol=1e-5, atol=1e-5)
    c = dense.config
    assert c.embed_dim == len(keep) and c.attention_head_dim == 8 and c.head_dim == 8
    assert c.embed_dim % c.pos_conv_groups == 0
    for a, b in zip(mh[1:], dh[1:]):  # after the first layer: the stream (mask_emb aside) is 0 off the kept dims
        torch.testing.assert_close(b[valid], a[valid][:, keep], rtol=1e-5, atol=1e-5)
        assert a[valid][:, (masks.hidden == 0)].abs().max() == 0
    assert num_parameters(dense) < num_parameters(materialise(model, dataclasses.replace(masks, hidden=None)))


def test_hidden_mask_must_be_tied_and_keep_something():
    model = tiny_model()
    masks = random_masks(model.config, torch.Generator().manual_seed(6), hidden=True)
    untied = masks.hidden.clone()
    untied[0], untied[8] = 0.5, 0.0
    with pytest.raises(ValueError, match="hidden differs between the 4 groups"):
        pruned_config(model.config, dataclasses.replace(masks, hidden=untied))
    with pytest.raises(ConfigError, match="every dimension of the residual stream"):
        pruned_config(model.config, dataclasses.replace(masks, hidden=torch.zeros(32)))
    with pytest.raises(ValueError, match=r"masks.hidden has shape \(31,\)"):
        pruned_config(model.config, dataclasses.replace(masks, hidden=torch.ones(31)))
