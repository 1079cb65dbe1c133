import pytest
import torch

from asrc.errors import ConfigError
from asrc.models import Wav2Vec2Config, build_model, load, num_parameters, save_model_dir

TINY = dict(conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 2, 2]], embed_dim=48, ffn_dim=96,
            num_heads=4, num_layers=3, pos_conv_kernel=16, pos_conv_groups=4, vocab_size=10)


def tiny(**kw):
    return Wav2Vec2Config(**{**TINY, **kw})


@pytest.mark.parametrize("layer_norm_first,mode", [(False, "group_norm"), (True, "layer_norm")])
@pytest.mark.parametrize("normalize", [False, True])
def test_padded_batch_matches_single(layer_norm_first, mode, normalize):
    torch.manual_seed(0)
    model = build_model(tiny(layer_norm_first=layer_norm_first, extractor_mode=mode,
                             normalize_waveform=normalize)).eval()
    lengths = torch.tensor([4000, 2500, 1234])
    wav = torch.randn(3, 4000)
    wav[1, 2500:] = 0.3  # padding content must not matter
    wav[2, 1234:] = -1.0
    logits, out_lengths = model(wav, lengths)
    for i in range(3):
        single, single_len = model(wav[i:i + 1, :lengths[i]])
        assert single_len.item() == out_lengths[i].item()
        assert torch.allclose(single[0], logits[i, :out_lengths[i]], atol=1e-5)


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_inference_fast_path_matches_plain_ops(layer_norm_first, monkeypatch):
    from asrc.models import wav2vec2

    if wav2vec2._LINEAR_POINTWISE is None:
        pytest.skip("this torch build has no oneDNN linear kernel (the fast path is off)")
    torch.manual_seed(0)
    model = build_model(tiny(layer_norm_first=layer_norm_first)).eval()
    lengths = torch.tensor([4000, 2500])
    wav = torch.randn(2, 4000)
    calls = []
    fast = wav2vec2.TransformerLayer._forward_fast
    monkeypatch.setattr(wav2vec2.TransformerLayer, "_forward_fast", lambda *a: calls.append(1) or fast(*a))
    with torch.inference_mode():
        with wav2vec2.plain_ops():
            plain, _ = model(wav, lengths)
        assert not calls
        quick, _ = model(wav, lengths)
        assert len(calls) == 3
        assert torch.allclose(quick, plain, atol=1e-5)
        # the positional-conv kernel follows writes through .data (EMA, user code), which do
        # not bump the parameters' version counters
        model.encoder.pos_conv.weight_g.data.mul_(0.5)
        model.encoder.pos_conv.weight_v.data[0].neg_()
        with wav2vec2.plain_ops():
            plain2, _ = model(wav, lengths)
        assert not torch.allclose(plain2, plain, atol=1e-3)
        assert torch.allclose(model(wav, lengths)[0], plain2, atol=1e-5)
    calls.clear()
    model(wav, lengths)[0].sum().backward()  # autograd on: the plain path, gradients flow
    assert not calls and model.encoder.layers[0].fc1.weight.grad is not None


def test_output_lengths_formula():
    model = build_model(Wav2Vec2Config(num_layers=0, embed_dim=32, ffn_dim=32, num_heads=2,
                                       pos_conv_kernel=4, pos_conv_groups=2, conv_layers=[[8, 10, 5]] + [[8, 3, 2]] * 4 + [[8, 2, 2]] * 2))
    lengths = torch.tensor([400, 401, 719, 720, 16000, 160000])
    expected = (lengths - 400) // 320 + 1
    assert model.output_lengths(lengths).tolist() == expected.tolist()
    _, out = model(torch.randn(1, 16000))
    assert out.item() == 49


def test_hidden_states_and_layer_reuse():
    model = build_model(tiny(layer_reuse=2)).eval()
    wav = torch.randn(2, 3000)
    logits, lengths, hidden = model(wav, torch.tensor([3000, 3000]), output_hidden_states=True)
    assert len(hidden) == 3 * 2 + 1
    assert all(h.shape == (2, logits.shape[1], 48) for h in hidden)
    # Reusing a layer applies the same weights again: layer 0 twice.
    layer0 = model.encoder.layers[0]
    assert torch.allclose(hidden[2], layer0(layer0(hidden[0])), atol=1e-5)
    # Post-LN: the last hidden state is what the CTC head sees.
    assert torch.allclose(model.ctc_head(hidden[-1]), logits, atol=1e-6)


def test_conv_groups_and_sharing_parameter_counts():
    base = tiny()
    c = 32
    full = num_parameters(build_model(base))
    grouped = num_parameters(build_model(base.replace(conv_groups=2)))
    # Layers 2..4 are grouped (the first has one input channel): each loses half its kernel.
    kernels = [3, 3, 2]
    assert full - grouped == sum(c * c * k // 2 for k in kernels)
    shared = num_parameters(build_model(base.replace(conv_share=True)))
    # The two k=3 layers share one kernel.
    assert full - shared == c * c * 3
    both = num_parameters(build_model(base.replace(conv_share=True, conv_groups=2)))
    assert full - both == c * c * 3 // 2 + c * c * 3 + c * c * 2 // 2
    reuse = build_model(base.replace(layer_reuse=3))
    assert num_parameters(reuse) == full


def test_shared_conv_kernels_stay_tied_after_save_and_load(tmp_path):
    model = build_model(tiny(conv_share=True))
    convs = [b.conv for b in model.feature_extractor.conv_layers]
    assert convs[1].weight is convs[2].weight
    save_model_dir(model, tmp_path, tokens=[f"t{i}" for i in range(10)])
    loaded = load(tmp_path)
    convs = [b.conv for b in loaded.feature_extractor.conv_layers]
    assert convs[1].weight is convs[2].weight
    assert loaded.tokens[3] == "t3"
    wav = torch.randn(1, 3000)
    assert torch.equal(model.eval()(wav)[0], loaded(wav)[0])


def test_config_yaml_round_trip_and_unknown_keys(tmp_path):
    cfg = tiny(conv_groups=2, layer_norm_first=True)
    assert Wav2Vec2Config.from_yaml(cfg.to_yaml()) == cfg
    (tmp_path / "c.yaml").write_text(cfg.to_yaml() + "conv_grups: 2\n")
    with pytest.raises(ConfigError, match="conv_grups"):
        Wav2Vec2Config.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="num_heads"):
        tiny(num_heads=5)


def test_short_input_is_a_clear_error():
    model = build_model(tiny()).eval()
    rf = model.config.receptive_field
    with pytest.raises(ValueError, match="at least"):
        model(torch.randn(1, rf - 1))
    with pytest.raises(ValueError, match=r"utterances \[1\]"):
        model(torch.randn(2, 2000), torch.tensor([2000, rf - 1]))
    with pytest.raises(ValueError, match="batch, sample"):
        model(torch.randn(2000))


def test_masks_only_in_training_and_layer_drop():
    torch.manual_seed(0)
    model = build_model(tiny(mask_time_prob=0.5, mask_time_length=2, layer_drop=0.5, dropout=0.0,
                             attention_dropout=0.0))
    wav = torch.randn(2, 3000)
    model.eval()
    a = model.encode(wav, apply_mask=True).x
    b = model.encode(wav, apply_mask=False).x
    assert torch.equal(a, b)
    model.train()
    c = model.encode(wav, apply_mask=True).x
    assert not torch.allclose(b, c)
