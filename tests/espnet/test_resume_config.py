"""Resuming a run (``--resume true``, the default) with options that change what is trained is
refused in one line, before anything is written; the same command, or one that only trains longer,
resumes."""

import argparse
import re

import pytest
import torch
import yaml

from espnet_helpers import COMMON, TINY_ENCODER, copy_model, teacher_config, write_yaml

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def train(conf: dict, tmp_path, name: str = "run", *extra) -> int:
    from asrc.bin.train import main

    argv = ["--config", write_yaml(tmp_path / f"{name}.yaml", conf), "--exp_dir", tmp_path / "exp", *extra]
    return main([str(a) for a in argv])


def epochs(exp):
    return sorted(torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["stats"])


def snapshot(exp) -> dict:
    """The bytes of what a refused rerun must leave alone."""
    names = ("config.yaml", "checkpoint.pth", "shapes/train/speech_shape", "shapes/valid/speech_shape", "train.sh")
    return {name: (exp / name).read_bytes() for name in names}


def one_line_error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("asrc-train:")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("asrc-train: error: ")
    return lines[0]


@pytest.fixture
def first_run(corpus, tmp_path, espnet_ready):
    """A teacher trained for 1 epoch in ``tmp_path/exp/run``: ``(conf, exp)``."""
    conf = dict(teacher_config(corpus), max_epoch=1)
    assert train(conf, tmp_path) == 0
    return conf, tmp_path / "exp" / "run"


def test_the_same_command_with_more_epochs_resumes(first_run, tmp_path, capsys):
    conf, exp = first_run
    # Training longer, keeping other checkpoints, logging more often: the same model.
    more = dict(conf, max_epoch=2, keep_nbest_models=1, log_interval=2, patience=3)
    assert train(more, tmp_path) == 0, capsys.readouterr().err[-2000:]
    log = (exp / "train.log").read_text()
    assert "The training was resumed using" in log and "The training was finished at 2 epochs" in log
    assert epochs(exp) == [1, 2]
    assert yaml.safe_load((exp / "config.yaml").read_text())["max_epoch"] == 2
    # The identical command again: nothing left to train, no false alarm.
    assert train(more, tmp_path) == 0, capsys.readouterr().err[-2000:]
    assert epochs(exp) == [1, 2]


def test_another_learning_rate_is_refused_and_config_yaml_kept(first_run, tmp_path, capsys):
    conf, exp = first_run
    before = snapshot(exp)
    capsys.readouterr()
    assert train(dict(conf, optim_conf={"lr": 1.0e-3}, max_epoch=2), tmp_path) == 2
    line = one_line_error(capsys)
    assert str(exp) in line and "optim_conf.lr: 0.003 -> 0.001" in line, line
    assert "max_epoch" not in line  # allowed to change
    assert "--output_dir" in line and "--resume false" in line and "config.yaml" in line
    assert snapshot(exp) == before
    assert epochs(exp) == [1]
    assert "optim_conf.lr: 0.003 -> 0.001" in (exp / "train.log").read_text()

    # The way out it names: start over in place.
    assert train(dict(conf, optim_conf={"lr": 1.0e-3}), tmp_path, "run", "--resume", "false") == 0
    assert yaml.safe_load((exp / "config.yaml").read_text())["optim_conf"] == {"lr": 1.0e-3}
    assert "The training was resumed using" not in (exp / "train.log").read_text()


def test_another_student_shape_is_refused_before_loading_the_checkpoint(first_run, tmp_path, capsys):
    conf, exp = first_run
    before = snapshot(exp)
    capsys.readouterr()
    bigger = dict(conf, encoder_conf={"config": dict(TINY_ENCODER, num_layers=3, ffn_dim=48)})
    assert train(bigger, tmp_path) == 2
    line = one_line_error(capsys)
    assert "encoder_conf.config.num_layers: 2 -> 3" in line and "encoder_conf.config.ffn_dim: 64 -> 48" in line, line
    assert "load_state_dict" not in line
    assert snapshot(exp) == before


def test_another_token_list_and_data_are_refused(first_run, corpus, tmp_path, capsys):
    conf, exp = first_run
    tokens = corpus["tokens"].read_text().splitlines()
    (tmp_path / "fewer.txt").write_text("".join(t + "\n" for t in tokens[:-3]))
    capsys.readouterr()
    assert train(dict(conf, token_list=str(tmp_path / "fewer.txt")), tmp_path) == 2
    line = one_line_error(capsys)
    assert re.search(r"token_list: \[.*\.\.\. \(32 items\) -> \[.*\.\.\. \(29 items\)", line), line
    assert "encoder_conf.config.vocab_size: 32 -> 29" in line
    # The same tokens from another file are the same token list.
    (tmp_path / "copy.txt").write_text(corpus["tokens"].read_text())
    capsys.readouterr()
    assert train(dict(conf, token_list=str(tmp_path / "copy.txt"), valid_data_dir=str(corpus["train"])),
                 tmp_path) == 2
    line = one_line_error(capsys)
    assert "token_list" not in line.replace(str(tmp_path), "")
    assert "valid_data_path_and_name_and_type[0][0]: " in line and "/valid/wav.scp' -> " in line, line
    assert "/train/wav.scp'" in line and "valid_data_path_and_name_and_type[1][0]: " in line, line
    # A token list of the same length: the tokens that differ.
    swapped = list(tokens)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    (tmp_path / "swapped.txt").write_text("".join(t + "\n" for t in swapped))
    capsys.readouterr()
    assert train(dict(conf, token_list=str(tmp_path / "swapped.txt")), tmp_path) == 2
    line = one_line_error(capsys)
    assert "token_list[5]: 'E' -> 'T'; token_list[6]: 'T' -> 'E'" in line, line


def distill_config(corpus, teacher_dir, **model_conf):
    weights = {"kd_loss": 0.5, "student_loss": 0.5, "hidden_loss": 0.1, "cos_embed_loss": 0.1}
    return dict(COMMON, max_epoch=1, train_data_dir=str(corpus["train"]), valid_data_dir=str(corpus["valid"]),
                encoder="asrc_wav2vec2",
                encoder_conf={"init": str(teacher_dir), "layer_init": "every_k",
                              "config": {"num_layers": 1, "conv_groups": 2}},
                model="asrc_distill",
                model_conf={"teacher": str(teacher_dir), "temperature": 2.0, "loss_weights": weights, **model_conf})


def test_distillation_resumes_and_refuses_another_temperature(trained_teacher, corpus, tmp_path, capsys):
    """The completed distillation options (the teacher's token list and architecture, the calibration
    data) compare equal on a rerun; another temperature changes the objective."""
    teacher_dir = copy_model(trained_teacher["model"], tmp_path / "teacher")
    conf = distill_config(corpus, teacher_dir)
    assert train(conf, tmp_path) == 0
    exp = tmp_path / "exp" / "run"
    assert train(dict(conf, max_epoch=2), tmp_path) == 0, capsys.readouterr().err[-2000:]
    assert epochs(exp) == [1, 2] and "The training was resumed using" in (exp / "train.log").read_text()
    before = snapshot(exp)
    capsys.readouterr()
    assert train(distill_config(corpus, teacher_dir, temperature=4.0), tmp_path) == 2
    line = one_line_error(capsys)
    assert "model_conf.temperature: 2.0 -> 4.0" in line, line
    assert snapshot(exp) == before


# ---- check_resume_config alone, on hand-made output directories --------------------------------

def namespace(tmp_path, **options) -> argparse.Namespace:
    from asrc.espnet.task import RESUME_KEYS

    values = {k: None for k in RESUME_KEYS}
    values.update(output_dir=str(tmp_path), resume=True, input_size=1, model_conf={})
    values.update(options)
    return argparse.Namespace(**values)


def dump(tmp_path, **options):
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    (tmp_path / "checkpoint.pth").write_bytes(b"")
    (tmp_path / "config.yaml").write_text(yaml_no_alias_safe_dump(vars(namespace(tmp_path, **options))))


def test_compared_options_exist_and_training_length_is_not_one_of_them(espnet_ready):
    from asrc.espnet.task import RESUME_KEYS, AsrcASRTask

    dests = {a.dest for a in AsrcASRTask.get_parser()._actions}
    assert sorted(set(RESUME_KEYS) - dests) == []
    assert len(set(RESUME_KEYS)) == len(RESUME_KEYS)
    for free in ("max_epoch", "num_iters_per_epoch", "patience", "num_workers", "ngpu", "output_dir", "resume",
                 "keep_nbest_models", "log_interval", "print_config", "multiprocessing_distributed", "config"):
        assert free in dests and free not in RESUME_KEYS, free


def test_what_espnet_does_to_the_options_it_dumps_is_no_difference(tmp_path, espnet_ready):
    from asrc.espnet.task import check_resume_config

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\na\nb\n")
    data = [("d/wav.scp", "speech", "sound"), ("d/text", "text", "text")]
    # ESPnet's build_model reads the token list and drops the front end; yaml makes tuples lists.
    dump(tmp_path, token_list=["<blank>", "a", "b"], frontend=None, frontend_conf={},
         train_data_path_and_name_and_type=[list(x) for x in data], optim_conf={"lr": 1e-3})
    args = namespace(tmp_path, token_list=str(tokens), frontend="default", frontend_conf={"n_fft": 512},
                     train_data_path_and_name_and_type=data, optim_conf={"lr": 0.001})
    check_resume_config(args)
    # Nothing to compare with: no checkpoint, --resume false, an emptied config.yaml.
    args.optim_conf = {"lr": 0.1}
    check_resume_config(argparse.Namespace(**dict(vars(args), resume=False)))
    (tmp_path / "config.yaml").write_text("")
    check_resume_config(args)
    (tmp_path / "checkpoint.pth").unlink()
    dump(tmp_path)
    (tmp_path / "checkpoint.pth").unlink()
    check_resume_config(args)


def test_the_message_names_each_difference_shortly(tmp_path, espnet_ready):
    from asrc.errors import ConfigError
    from asrc.espnet.task import check_resume_config

    dump(tmp_path, optim="adam", init_param=[f"/very/long/path/number/{i}/model.pth:encoder" for i in range(5)])
    config = (tmp_path / "config.yaml").read_bytes()
    old = yaml.safe_load(config)
    del old["qat"]  # a config.yaml from before qat: unset
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    args = namespace(tmp_path, optim="sgd", init_param=[], qat={"start_updates": 0}, seed=1,
                     model_conf={"extra": 1})
    with pytest.raises(ConfigError) as e:
        check_resume_config(args)
    message = str(e.value)
    assert "\n" not in message
    assert "optim: 'adam' -> 'sgd'" in message
    assert re.search(r"init_param: \['/very/long.*\.\.\. \(5 items\) -> \[\]", message)
    assert "qat: None -> {'start_updates': 0}" in message
    assert "seed: None -> 1" in message
    assert "model_conf.extra: (not set) -> 1" in message
    assert len(message) < 1200
