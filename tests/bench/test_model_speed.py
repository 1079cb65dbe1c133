"""asrc-bench model-speed: asrc's model against transformers' on the same weights."""

import dataclasses
import json

import pytest

from asrc.bench import footprint
from asrc.bin import bench
from asrc.models import build_model, save_model_dir

pytest.importorskip("transformers")


def test_model_speed_of_a_model_directory(tmp_path, capsys):
    """--config-of times the architecture of a model directory: both models hold the same
    weights (logits agree), the ratio is the ratio of the medians printed."""
    model = build_model(footprint.TINY_TEACHER)
    save_model_dir(model, tmp_path / "m")
    assert bench.main(["model-speed", "--config-of", str(tmp_path / "m"), "--seconds", "0.5", "--runs", "2",
                       "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["architecture"].startswith(str(tmp_path / "m"))
    assert f"{footprint.TINY_TEACHER.num_layers} layers, width {footprint.TINY_TEACHER.embed_dim}" in \
        result["architecture"]
    assert result["max_abs_logit_diff"] < 1e-4
    assert result["asrc_over_transformers"] == pytest.approx(
        result["asrc_median_s"] / result["transformers_median_s"], rel=0.02)


def test_model_speed_refuses_what_transformers_cannot_build(tmp_path, capsys):
    model = build_model(dataclasses.replace(footprint.TINY_TEACHER, conv_groups=2))
    save_model_dir(model, tmp_path / "g2")
    assert bench.main(["model-speed", "--config-of", str(tmp_path / "g2"), "--runs", "1"]) != 0
    err = capsys.readouterr().err
    assert "grouped" in err and "Traceback" not in err
    assert bench.main(["model-speed", "--config-of", str(tmp_path / "missing")]) != 0
    assert "no config.yaml" in capsys.readouterr().err

