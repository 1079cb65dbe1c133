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
