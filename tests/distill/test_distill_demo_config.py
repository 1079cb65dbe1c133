import copy
from pathlib import Path

import pytest
import yaml

from asrc.distill.demo_config import read_demo_config, translate, translate_file
from asrc.errors import ConfigError

DEMO = Path(__file__).resolve().parents[2] / "egs" / "demo" / "demo_config.yaml"


@pytest.fixture
def demo():
    return read_demo_config(DEMO)


def test_shipped_demo_config_maps_onto_asrc_train(demo):
    out = translate_file(DEMO)
    assert out["model"] == "asrc_distill"
    assert out["model_conf"] == {
        "teacher": "../an4/teacher", "temperature": 2.0,
        "loss_weights": {"kd_loss": 0.5, "student_loss": 0.5, "hidden_loss": 0, "cos_embed_loss": 0,
                         "features_pen": 0},
    }
    assert out["encoder"] == "asrc_wav2vec2"
    assert out["encoder_conf"] == {"init": "../an4/teacher", "layer_init": "every_k",
                                   "config": {"num_layers": 4, "conv_groups": 2}}
    assert out["train_data_dir"] == "data/train" and out["valid_data_dir"] == "data/dev"
    assert "token_list" not in out  # null: the teacher's
    assert (out["batch_type"], out["batch_size"], out["valid_batch_size"]) == ("sorted", 8, 8)
    assert (out["max_epoch"], out["num_iters_per_epoch"], out["accum_grad"]) == (8, 50, 1)
    assert (out["optim"], out["optim_conf"]) == ("adamw", {"lr": 0.001})
    # Linear warm-up over 1 epoch (50 updates) to 1e-3, then linear decay to 0 at update 400.
    assert out["scheduler"] == "piecewiselinearwarmuplr"
    assert out["scheduler_conf"] == {"warmup_steps_list": [0, 50, 400], "warmup_lr_list": [0.0, 0.001, 0.0]}
    assert (out["ngpu"], out["use_amp"], out["seed"], out["num_workers"]) == (0, False, 42, 1)


def test_ctc_only_is_the_same_student_and_schedule(demo):
    distill, ctc = translate(demo), translate(demo, ctc_only=True)
    assert ctc["model"] == "asrc_ctc" and ctc["model_conf"] == {}
    same = {k: v for k, v in distill.items() if k not in ("model", "model_conf")}
    assert {k: v for k, v in ctc.items() if k not in ("model", "model_conf")} == same


def test_change_conv_layers_false_keeps_the_teacher_front_end(demo):
    demo["knowledge_distillation"]["student_model"]["change_conv_layers"] = False
    assert translate(demo)["encoder_conf"]["config"] == {"num_layers": 4}


def test_student_init_model_and_layer_map(demo):
    kd = demo["knowledge_distillation"]
    kd["student_model"]["student_init_model_path"] = "exp/other/model"
    kd["student_model"]["student_trans_layer_init_method"] = "first_k"
    kd["general"]["teacher_layer_map"] = {1: 2, 4: 6}
    kd["final_loss_coeff"]["hidden_loss"] = 1
    out = translate(demo)
    assert out["encoder_conf"]["init"] == "exp/other/model" and out["encoder_conf"]["layer_init"] == "first_k"
    assert out["model_conf"]["teacher"] == "../an4/teacher"
    assert out["model_conf"]["teacher_layer_map"] == {1: 2, 4: 6}
    kd["student_model"]["student_trans_layer_init_method"] = [1, 3, 5, 6]
    assert translate(demo)["encoder_conf"]["layer_init"] == [1, 3, 5, 6]
    kd["student_model"]["student_trans_layer_init_method"] = [1, "3"]
    with pytest.raises(ConfigError, match="student_trans_layer_init_method='3' must be an integer"):
        translate(demo)


@pytest.mark.parametrize("path,key", [
    ((), "comet_info"),
    (("data_loader",), "use_train_clean_100"),
    (("knowledge_distillation",), "student"),
    (("knowledge_distillation", "student_model"), "num_trans_layer_student_init_model"),
    (("knowledge_distillation", "final_loss_coeff"), "kd"),
])
def test_unknown_keys_are_errors(demo, path, key):
    d = demo
    for p in path:
        d = d[p]
    d[key] = 1
    full = ".".join(path + (key,))
    with pytest.raises(ConfigError, match=f"unknown keys \\['{full}'\\]"):
        translate(demo, source="demo.yaml")


@pytest.mark.parametrize("section,key,value,match", [
    ("general", "teacher_model_path", None, "teacher_model_path is required"),
    ("optimization", "optimize_method", "adam_wav2vec2.0", "must be one of"),
    ("optimization", "scheduler_method", "noam", "must be one of"),
    ("pytorch_lightning_trainer", "precision", 64, "must be 16 or 32"),
    ("student_model", "num_trans_layer_student_model", 0, "integer >= 1"),
    ("student_model", "change_conv_layers", "yes", "true or false"),
    ("final_loss_coeff", "kd_loss", -1, ">= 0"),
])
def test_bad_values_are_errors(demo, section, key, value, match):
    demo["knowledge_distillation"][section][key] = value
    with pytest.raises(ConfigError, match=match):
        translate(demo)


def test_linear_schedule_needs_the_number_of_updates(demo):
    no_iters = copy.deepcopy(demo)
    del no_iters["knowledge_distillation"]["optimization"]["num_iters_per_epoch"]
    with pytest.raises(ConfigError, match="num_iters_per_epoch"):
        translate(no_iters)
    demo["knowledge_distillation"]["optimization"]["num_lr_warm_up_epoch"] = 0
    demo["knowledge_distillation"]["pytorch_lightning_trainer"]["accumulate_grad_batches"] = 2
    out = translate(demo)
    assert out["scheduler_conf"] == {"warmup_steps_list": [0, 200], "warmup_lr_list": [0.001, 0.0]}
    demo["knowledge_distillation"]["optimization"]["scheduler_method"] = "cosine_anneal"
    assert translate(demo)["scheduler_conf"] == {"T_max": 8}


def test_not_a_mapping(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"data_loader": [1, 2]}))
    with pytest.raises(ConfigError, match="data_loader must be a mapping"):
        translate_file(path)
    with pytest.raises(FileNotFoundError):
        translate_file(tmp_path / "missing.yaml")


def test_update_count_flags_reshape_the_schedule():
    """--max_epoch / --num_iters_per_epoch on asrc-train's command line: the schedule decays to 0
    at the new last update, not at the file's (the learning rate would sit at 0 after it)."""
    out = translate_file(DEMO, overrides={"max_epoch": 12})
    assert out["max_epoch"] == 12
    assert out["scheduler_conf"] == {"warmup_steps_list": [0, 50, 600], "warmup_lr_list": [0.0, 0.001, 0.0]}
    out = translate_file(DEMO, overrides={"max_epoch": 2, "num_iters_per_epoch": 10})
    assert out["scheduler_conf"]["warmup_steps_list"] == [0, 10, 20]
    # a smoke test's single epoch: the file's 1-epoch warm-up becomes half of it
    out = translate_file(DEMO, overrides={"max_epoch": 1, "num_iters_per_epoch": 4})
    assert out["scheduler_conf"]["warmup_steps_list"] == [0, 2, 4]


def test_asrc_train_passes_update_count_flags(monkeypatch):
    from asrc.bin import train as train_cli

    seen = {}

    def fake_translate(path, ctc_only=False, overrides=None):
        seen["overrides"] = overrides
        return {}

    monkeypatch.setattr("asrc.distill.demo_config.translate_file", fake_translate)
    monkeypatch.setattr("asrc.espnet.launch.train", lambda *a, **k: None)
    assert train_cli.main(["--demo_config", str(DEMO), "--max_epoch", "12", "--num_iters_per_epoch=30",
                           "--output_dir", "unused"]) == 0
    assert seen["overrides"] == {"max_epoch": 12, "num_iters_per_epoch": 30}
    with pytest.raises(SystemExit):
        train_cli.main(["--demo_config", str(DEMO), "--max_epoch", "many", "--output_dir", "unused"])
