import pytest
import torch

from asrc.models import Wav2Vec2Config, Wav2Vec2CTC, load, save_model_dir
from asrc.models.grow import grow_depth, grown_layer_sources


def tiny(layer_norm_first=True, layers=3):
    config = Wav2Vec2Config(conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)], embed_dim=32, ffn_dim=64, num_heads=4,
                            num_layers=layers, pos_conv_kernel=8, pos_conv_groups=4, layer_norm_first=layer_norm_first,
                            vocab_size=7, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = Wav2Vec2CTC(config).eval()
    for p in model.parameters():  # random non-zero everything, biases included
        p.data.normal_(0, 0.2)
    return model


def test_layer_layout():
    assert grown_layer_sources(6, 12) == [0, None, 1, None, 2, None, 3, None, 4, None, 5, None]
    assert grown_layer_sources(3, 4) == [0, 1, 2, None]
    assert grown_layer_sources(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        grown_layer_sources(4, 3)


def test_grown_model_computes_the_same_function(tmp_path):
    model = tiny()
    grown = grow_depth(model, 7)
    assert grown.config.num_layers == 7 and len(grown.encoder.layers) == 7
    wav, lengths = torch.randn(2, 4000), torch.tensor([4000, 3100])
    with torch.no_grad():
        ref, ref_len = model(wav, lengths)
        out, out_len = grown(wav, lengths)
    assert torch.equal(ref_len, out_len)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the new layers are not dead: their inputs are the copied layer's, only the outputs are zero
    new = grown.encoder.layers[1]
    assert torch.equal(new.fc1.weight, model.encoder.layers[0].fc1.weight)
    assert new.fc2.weight.abs().sum() == 0 and new.self_attn.out_proj.weight.abs().sum() == 0
    # ... and a gradient step moves the function away (the zero projections get gradients)
    grown.train()
    logits, _ = grown(wav, lengths)
    logits.pow(2).mean().backward()
    assert new.fc2.weight.grad.abs().sum() > 0 and new.self_attn.out_proj.weight.grad.abs().sum() > 0
    # it saves and loads as any model directory
    save_model_dir(grown.eval(), tmp_path / "m", tokens=[str(i) for i in range(7)])
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "m")(wav, lengths)[0], ref, atol=1e-5, rtol=1e-5)
    assert model.config.num_layers == 3  # the source model is untouched


def test_post_ln_is_refused():
    with pytest.raises(ValueError, match="pre-LN"):
        grow_depth(tiny(layer_norm_first=False), 6)
