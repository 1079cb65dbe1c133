import json

import yaml

from asrc.bin.info import main
from asrc.models import Wav2Vec2Config, build_model, num_parameters, save_model_dir

TINY = dict(conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 2, 2]], embed_dim=48, ffn_dim=96,
            num_heads=4, num_layers=2, pos_conv_kernel=16, pos_conv_groups=4, vocab_size=10, conv_groups=2)


def test_model_dir_text_and_json(tmp_path, capsys):
    config = Wav2Vec2Config(**TINY)
    model = build_model(config, [f"t{i}" for i in range(10)])
    save_model_dir(model, tmp_path / "m")
    assert main([str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "model.pth" in out and "tokens.txt" in out
    assert "conv_groups: 2" in out  # the config, as YAML
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1] == f"{num_parameters(model):,}"
    assert "feature_extractor" in out and "GMACs/s" in out

    assert main([str(tmp_path / "m"), "--json", "--seconds", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert Wav2Vec2Config.from_dict(d["config"]) == config
    assert d["footprint"]["total"]["params"] == num_parameters(model)
    assert d["footprint"]["samples"] == 32000 and d["footprint"]["frames"] == 799
    assert d["files"]["model.pth"] > 0 and d["quantization"] is None


def test_config_yaml_alone_needs_no_weights(tmp_path, capsys):
    path = tmp_path / "student.yaml"
    path.write_text(Wav2Vec2Config(**TINY).to_yaml())
    assert main([str(path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| total" in out and "|:---" in out
    yaml_part = out.split("\n\n")[1]
    assert yaml.safe_load(yaml_part)["conv_groups"] == 2
    # A directory holding only config.yaml: the architecture, said to be weightless.
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "config.yaml").write_text(path.read_text())
    assert main([str(tmp_path / "arch")]) == 0
    assert "no model.pth: architecture only" in capsys.readouterr().out


def test_errors_name_the_culprit(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 1
    assert "missing: no such model directory or config file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 1
    assert "no config.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_layrs: 2\n")
    assert main([str(bad)]) == 1
    assert "num_layrs" in capsys.readouterr().err


def test_int8_dir_says_its_activation_width_and_how_this_cpu_runs_it(tmp_path, capsys, monkeypatch):
    """An int8 directory with static convs: the mode and the width of its static activations; on
    a CPU without VNNI, that 8-bit convs run exactly as float products (not at int8 speed)."""
    import torch

    import asrc.bin.info as info
    from asrc.models.quantized import save_quantized
    from asrc.quant import quantize_model

    torch.manual_seed(0)
    model = build_model(Wav2Vec2Config(**TINY), [f"t{i}" for i in range(10)]).eval()
    calib = [0.1 * torch.randn(16000)]
    for bits in (7, 8):
        qmodel, spec = quantize_model(model, "static-conv", calib, reduce_range=bits == 7)
        save_quantized(qmodel, spec, tmp_path / f"q{bits}")
    qmodel, spec = quantize_model(model, "dynamic")
    save_quantized(qmodel, spec, tmp_path / "dyn")
    monkeypatch.setattr(info, "cpu_has_vnni", lambda: False)
    head = "# quantized: asrc.quant mode 'static-conv', "
    assert main([str(tmp_path / "q8")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(head + "8-bit static activations (this CPU has no VNNI")
    assert main([str(tmp_path / "q7")]) == 0
    assert capsys.readouterr().out.splitlines()[1] == head + "7-bit static activations"
    monkeypatch.setattr(info, "cpu_has_vnni", lambda: True)
    assert main([str(tmp_path / "q8")]) == 0
    assert capsys.readouterr().out.splitlines()[1] == head + "8-bit static activations"
    assert main([str(tmp_path / "dyn"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["quantization"] == "dynamic" and d["activation_bits"] is None
