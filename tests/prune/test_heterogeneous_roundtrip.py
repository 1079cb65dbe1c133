"""A pruned (heterogeneous) model directory works like any other: YAML, load, info, int8, ONNX."""

import json

import pytest
import torch

from asrc.errors import ConfigError
from asrc.models import Wav2Vec2Config, load, num_parameters, save_model_dir
from asrc.prune.masks import materialise

from prune_helpers import batch, random_masks, tiny_config, tiny_model


@pytest.fixture(scope="module", params=[False, True], ids=["layers", "layers+width"])
def pruned_dir(tmp_path_factory, request):
    model = tiny_model(conv_groups=2)
    masks = random_masks(model.config, torch.Generator().manual_seed(7), hidden=request.param)
    masks.attention_layer[2] = torch.tensor(0.0)
    masks.ffn_layer[1] = torch.tensor(0.0)
    dense = materialise(model, masks)
    out = tmp_path_factory.mktemp("pruned") / "model"
    save_model_dir(dense, out)
    return out, dense


def test_config_yaml_round_trip():
    config = tiny_config(layer_num_heads=[4, 0, 1], layer_ffn_dims=[0, 9, 40])
    again = Wav2Vec2Config.from_yaml(config.to_yaml())
    assert again == config
    assert again.heads(1) == 0 and again.ffn_width(0) == 0 and again.ffn_width(2) == 40
    # homogeneous configs are written as before heterogeneous layers existed
    assert "layer_num_heads" not in tiny_config().to_yaml() and "attention_head_dim" not in tiny_config().to_yaml()
    narrow = tiny_config(embed_dim=24, attention_head_dim=8)
    assert Wav2Vec2Config.from_yaml(narrow.to_yaml()) == narrow and narrow.head_dim == 8 and narrow.is_heterogeneous


@pytest.mark.parametrize("change,match", [
    (dict(layer_num_heads=[4, 4]), r"layer_num_heads has 2 entries for num_layers=3"),
    (dict(layer_ffn_dims=[1, -1, 2]), r"layer_ffn_dims=\[1, -1, 2\] is not a list of integers >= 0"),
    (dict(layer_num_heads="4"), r"layer_num_heads='4' is not a list"),
    (dict(attention_head_dim=0), r"attention_head_dim=0 is not an integer >= 1"),
    (dict(attention_head_dim="8"), r"attention_head_dim='8' is not an integer >= 1"),
    (dict(embed_dim=30), r"embed_dim=30 is not divisible by num_heads=4"),
])
def test_bad_heterogeneous_configs_are_named(change, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**change)


def test_save_load_round_trip(pruned_dir):
    out, dense = pruned_dir
    loaded = load(out)
    assert loaded.config == dense.config and loaded.config.is_heterogeneous
    assert loaded.config.layer_num_heads[2] == 0 and loaded.config.layer_ffn_dims[1] == 0
    wav, lengths = batch()
    with torch.no_grad():
        assert torch.equal(loaded(wav, lengths)[0], dense(wav, lengths)[0])


def test_fast_path_equals_plain_path_on_heterogeneous_layers(pruned_dir):
    from asrc.models.wav2vec2 import plain_ops

    _, dense = pruned_dir
    wav, lengths = batch()
    with torch.no_grad():
        fast = dense(wav, lengths)[0]
        with plain_ops():
            plain = dense(wav, lengths)[0]
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_info_reports_the_parameter_count(pruned_dir, capsys):
    from asrc.bin.info import main

    out, dense = pruned_dir
    assert main([str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["footprint"]["total"]["params"] == num_parameters(dense)
    assert info["config"]["layer_num_heads"] == dense.config.layer_num_heads


def test_int8_round_trip(pruned_dir, tmp_path, capsys):
    from asrc.bin.quantize import main

    out, dense = pruned_dir
    assert main([str(out), str(tmp_path / "int8")]) == 0
    q = load(tmp_path / "int8")
    # every weight kept; the positional conv's weight norm is folded (weight_g, one per kernel tap, goes)
    assert num_parameters(q) == num_parameters(dense) - dense.config.pos_conv_kernel
    assert [m.num_heads for m in (l.self_attn for l in q.encoder.layers) if m is not None] == \
        [h for h in dense.config.layer_num_heads if h]
    wav, lengths = batch()
    with torch.no_grad():
        (a, n), b = q(wav, lengths), dense(wav, lengths)[0]
    valid = torch.arange(a.shape[1])[None, :] < n[:, None]  # padded frames are no output
    cos = torch.nn.functional.cosine_similarity(a[valid].flatten(), b[valid].flatten(), dim=0)
    assert float(cos) > 0.99


def test_onnx_export(pruned_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from asrc.quant.export import export_onnx, run_export

    _, dense = pruned_dir
    path = export_onnx(dense, tmp_path / "m.onnx")
    wav, lengths = batch()
    out, out_lengths = run_export(path, "onnx", threads=1)(wav, lengths)
    with torch.no_grad():
        ref, ref_lengths = dense(wav, lengths)
    assert torch.equal(torch.as_tensor(out_lengths), ref_lengths)
    valid = torch.arange(ref.shape[1])[None, :] < ref_lengths[:, None]
    torch.testing.assert_close(torch.as_tensor(out)[valid], ref[valid], rtol=1e-4, atol=1e-4)


def test_layerwise_student_of_a_pruned_model_is_refused(pruned_dir):
    from asrc.models.student import build_student

    _, dense = pruned_dir
    with pytest.raises(ValueError, match="the teacher has heterogeneous \\(pruned\\) layers"):
        build_student(dense, dense.config.replace(layer_num_heads=None, layer_ffn_dims=None, num_layers=1))
