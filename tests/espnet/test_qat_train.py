"""Quantization-aware training through ESPnet's trainer: CTC fine-tuning and distillation,
resuming, and the int8 model directory it converts to."""

import re

import pytest
import torch
import yaml

from asrc.bin.train import main
from asrc.errors import ConfigError

from espnet_helpers import COMMON, copy_model, write_yaml

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# 24 utterances in batches of 4: 6 updates per epoch.
START = 3


def finetune_config(corpus, init, **extra):
    return dict(COMMON, train_data_dir=str(corpus["train"]), valid_data_dir=str(corpus["valid"]),
                encoder="asrc_wav2vec2", encoder_conf={"init": str(init)}, model="asrc_ctc",
                qat={"start_updates": START}, **extra)


def train(conf, exp, *extra):
    return main(["--config", str(conf), "--exp_dir", str(exp), *map(str, extra)])


def checkpoint_model(exp):
    return torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def qat_runs(trained_teacher, corpus, tmp_path_factory, espnet_ready):
    """CTC fine-tuning with QAT from update 3: 2 epochs straight (exported), and 1 epoch then resumed."""
    root = tmp_path_factory.mktemp("qat")
    init = copy_model(trained_teacher["model"], root / "init")
    conf = write_yaml(root / "qat.yaml", finetune_config(corpus, init))
    assert train(conf, root / "straight", "--export_model_dir", root / "int8") == 0
    conf1 = write_yaml(root / "qat1.yaml", finetune_config(corpus, init, max_epoch=1))
    assert train(conf1, root / "resumed") == 0
    first = checkpoint_model(root / "resumed" / "qat1")
    conf1.write_text(conf.read_text())  # same experiment dir, now 2 epochs: resumes from checkpoint.pth
    assert train(conf1, root / "resumed") == 0
    return {"straight": root / "straight" / "qat", "resumed": root / "resumed" / "qat1", "int8": root / "int8",
            "first": first, "init": init}


def test_qat_ranges_start_after_n_updates_and_are_checkpointed(qat_runs):
    first = qat_runs["first"]
    assert int(first["encoder.num_updates"]) == 6
    ranges = {k: v for k, v in first.items() if k.endswith("_range.range")}
    assert "encoder.model.feature_extractor.conv_layers.1.conv.input_range.range" in ranges
    assert "encoder.model.encoder.pos_conv.output_range.range" in ranges
    assert all(bool(v[0] <= v[1]) for v in ranges.values())  # observed from update 3 on
    assert yaml.safe_load((qat_runs["straight"] / "config.yaml").read_text())["qat"] == {"start_updates": START}


def test_qat_checkpoint_resumes(qat_runs):
    straight, resumed = checkpoint_model(qat_runs["straight"]), checkpoint_model(qat_runs["resumed"])
    assert int(resumed["encoder.num_updates"]) == int(straight["encoder.num_updates"]) == 12
    assert straight.keys() == resumed.keys()
    for k, v in straight.items():
        if v.is_floating_point():
            torch.testing.assert_close(resumed[k], v, rtol=1e-4, atol=1e-5, msg=k)
    # The resumed run went on from the first epoch's ranges, not from fresh ones.
    key = "encoder.model.feature_extractor.conv_layers.1.conv.input_range.range"
    assert not torch.equal(resumed[key], qat_runs["first"][key])


def test_exported_int8_model_follows_the_fake_quantized_one(qat_runs, corpus):
    from asrc.core.audio import read_waveforms
    from asrc.models import load
    from asrc.models.ctc import greedy_ids
    from asrc.quant.qat import read_qat_experiment

    int8 = load(qat_runs["int8"])
    assert int8.quantization.mode == "qat"
    assert int8.quantization.calibration["qat"]["start_updates"] == START
    fake = read_qat_experiment(qat_runs["straight"], "valid.loss.ave.pth")
    waves, _ = read_waveforms(corpus["valid"], max_utterances=8)
    same = 0
    with torch.inference_mode():
        for w in waves:
            ref, got = fake(w[None])[0], int8(w[None])[0]
            assert torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.999
            same += greedy_ids(ref) == greedy_ids(got)
    assert same >= len(waves) - 1
    # The float reader points at the conversion instead of loading half a model.
    with pytest.raises(ConfigError, match="--mode qat"):
        load(qat_runs["straight"])


def test_asrc_quantize_converts_a_qat_experiment(qat_runs, tmp_path, capsys):
    from asrc.bin.quantize import main as quantize

    assert quantize([str(qat_runs["straight"]), str(tmp_path / "q"), "--mode", "qat", "--checkpoint", "latest.pth"]) == 0
    assert "int8 Conv" in capsys.readouterr().out
    spec = yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())
    assert spec["mode"] == "qat" and spec["calibration"]["checkpoint"] == "latest.pth"
    assert quantize([str(qat_runs["init"]), str(tmp_path / "r"), "--mode", "qat"]) != 0
    assert "qat" in capsys.readouterr().err


def test_distillation_with_qat(trained_teacher, corpus, tmp_path):
    from asrc.models import load

    teacher = copy_model(trained_teacher["model"], tmp_path / "teacher")
    conf = write_yaml(tmp_path / "distill.yaml", dict(
        COMMON, max_epoch=1, train_data_dir=str(corpus["train"]), valid_data_dir=str(corpus["valid"]),
        encoder="asrc_wav2vec2", encoder_conf={"init": str(teacher), "layer_init": "every_k",
                                               "config": {"num_layers": 1, "conv_groups": 2}},
        model="asrc_distill", model_conf={"teacher": str(teacher), "temperature": 2.0},
        qat={"start_updates": 2, "activation_bits": 7}))
    assert train(conf, tmp_path / "exp", "--export_model_dir", tmp_path / "int8") == 0
    int8 = load(tmp_path / "int8")
    assert int8.quantization.mode == "qat" and int8.quantization.activation_reduce_range
    assert int8.config.num_layers == 1


@pytest.mark.parametrize("qat, match", [
    ({"start_update": 3}, r"qat: unknown keys \['start_update'\]"),
    ({"activation_bits": 4}, "qat.activation_bits=4 must be 7 or 8"),
])
def test_bad_qat_section_is_one_line(trained_teacher, corpus, tmp_path, capsys, qat, match):
    from asrc.bin.train import main as train_main

    d = finetune_config(corpus, trained_teacher["model"])
    d["qat"] = qat
    conf = write_yaml(tmp_path / "bad.yaml", d)
    assert train_main(["--config", str(conf), "--exp_dir", str(tmp_path / "exp")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "asrc-train: error:" in line]
    assert len(errors) == 1 and re.search(match, errors[0]), errors
    assert not (tmp_path / "exp" / "bad" / "checkpoint.pth").exists()
