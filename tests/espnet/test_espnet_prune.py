"""Structured pruning inside ESPnet's trainer: a ``prune:`` section, the logs, the dense export,
and a distillation fine-tune of the dense model."""

import json
import re
import sys
import time

import pytest
import torch
import yaml

from asrc.bin.train import main

from espnet_helpers import COMMON, copy_model, write_yaml

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

PRUNE = {"structures": ["conv", "heads", "ffn", "attention_layer", "ffn_layer"], "target_sparsity": 0.4,
         "warmup_updates": 6, "reg_lr": 0.1, "init_drop_rate": 0.5}


def run(argv):
    start = time.perf_counter()
    rc = main([str(a) for a in argv])
    return rc, time.perf_counter() - start


def prune_config(corpus, teacher_dir, **extra):
    return dict(COMMON, train_data_dir=str(corpus["train"]), valid_data_dir=str(corpus["valid"]),
                encoder="asrc_wav2vec2", encoder_conf={"init": str(teacher_dir)}, model="asrc_distill",
                model_conf={"teacher": str(teacher_dir),
                            "loss_weights": {"kd_loss": 1.0, "student_loss": 0.5, "hidden_loss": 1.0}},
                prune=dict(PRUNE), **extra)


def scalar_tags(exp, phase):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard" / phase))
    acc.Reload()
    return set(acc.Tags()["scalars"])


@pytest.fixture(scope="module")
def pruned(trained_teacher, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    teacher_dir = copy_model(trained_teacher["model"], root / "teacher")
    conf = write_yaml(root / "prune.yaml", prune_config(corpus, teacher_dir))
    rc, seconds = run(["--config", conf, "--exp_dir", root / "exp", "--export_model_dir", root / "dense"])
    assert rc == 0
    print(f"\n[pruning: 2 epochs, {seconds:.1f} s incl. setup]", file=sys.stderr)
    return {"exp": root / "exp" / "prune", "dense": root / "dense", "teacher": teacher_dir, "root": root}


def test_pruning_logs_the_constraint(pruned):
    exp = pruned["exp"]
    logged = {"expected_params", "expected_sparsity", "target_sparsity", "lambda1", "lambda2", "lagrangian",
              "kept_conv", "kept_heads", "kept_ffn", "kept_attention_layer", "kept_ffn_layer"}
    assert logged <= scalar_tags(exp, "train")
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["prune"] == {**PRUNE, "cost": "params", "cost_seconds": 1.0, "export_at_target": False}
    state = torch.load(exp / "checkpoint.pth", weights_only=False)
    assert any(k.startswith("pruning.gates.heads.0.log_alpha") for k in state["model"])
    # gates and multipliers have their own optimizer group: reg_lr, no weight decay
    groups = state["optimizers"][0]["param_groups"]
    assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0
    stats = state["reporter"]["stats"]
    assert stats[2]["train"]["target_sparsity"] == pytest.approx(0.4, abs=0.05)
    assert stats[2]["train"]["lambda2"] > 0


def test_dense_export_equals_the_gated_student(pruned, capsys):
    from asrc.bin.info import main as info
    from asrc.errors import ConfigError
    from asrc.models import load, num_parameters
    from asrc.prune.export import read_pruned_experiment
    from asrc.prune.masks import apply_masks

    dense, teacher = load(pruned["dense"]), load(pruned["teacher"])
    assert num_parameters(dense) < num_parameters(teacher)
    student, objective, path = read_pruned_experiment(pruned["exp"])
    assert path.name == "latest.pth" or path.resolve().name == "2epoch.pth"
    gen = torch.Generator().manual_seed(0)
    wav, lengths = 0.1 * torch.randn(2, 6000, generator=gen), torch.tensor([6000, 4500])
    with torch.no_grad(), apply_masks(student, objective.gates()):
        masked, _ = student(wav, lengths)
    with torch.no_grad():
        out, out_lengths = dense(wav, lengths)
    valid = torch.arange(out.shape[1])[None, :] < out_lengths[:, None]
    torch.testing.assert_close(out[valid], masked[valid], rtol=1e-5, atol=1e-5)
    # the count asrc-info reports is the dense model's
    assert info([str(pruned["dense"]), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)["footprint"]["total"]["params"]
    assert reported == num_parameters(dense)
    with pytest.raises(ConfigError, match="structured-pruning run"):
        load(pruned["exp"])


def test_export_at_the_target(pruned):
    """A 2-epoch run ends off its target (0.4 sparsity of the teacher); exported at the target, the
    dense model has the target's parameter count within 5 %."""
    from asrc.models import load, num_parameters
    from asrc.prune.export import export_pruned_model_dir, read_pruned_experiment

    _, objective, _ = read_pruned_experiment(pruned["exp"])
    export_pruned_model_dir(pruned["exp"], pruned["root"] / "at_target", at_target=True)
    want = (1 - objective.spec.target_sparsity) * objective.full_params
    got, plain = num_parameters(load(pruned["root"] / "at_target")), num_parameters(load(pruned["dense"]))
    assert abs(plain - want) > 0.05 * want  # the run's own export is off the target
    assert abs(got - want) <= 0.05 * want


def test_dense_model_fine_tunes_with_distillation(pruned, corpus):
    from asrc.models import load

    root = pruned["root"]
    conf = dict(COMMON, max_epoch=1, train_data_dir=str(corpus["train"]), valid_data_dir=str(corpus["valid"]),
                encoder="asrc_wav2vec2", encoder_conf={"init": str(pruned["dense"])}, model="asrc_distill",
                model_conf={"teacher": str(pruned["teacher"]), "loss_weights": {"kd_loss": 1.0, "hidden_loss": 1.0}})
    rc, _ = run(["--config", write_yaml(root / "final.yaml", conf), "--exp_dir", root / "exp",
                 "--export_model_dir", root / "final"])
    assert rc == 0
    dense, final = load(pruned["dense"]), load(root / "final")
    assert final.config.to_dict() == dense.config.to_dict()
    assert any(not torch.equal(a, b) for a, b in zip(dense.state_dict().values(), final.state_dict().values()))


@pytest.mark.parametrize("change,match", [
    (lambda c: c["prune"].update(target=0.5), r"prune: unknown keys \['target'\]"),
    (lambda c: c["prune"].update(structures=["heads", "layers"]), r"structures \['layers'\] unknown"),
    (lambda c: c["prune"].update(target_sparsity=1.5), r"target_sparsity=1.5 must be a number in \[0, 1\)"),
    (lambda c: c.update(model="asrc_ctc", model_conf={}), r"prune: structured pruning runs with distillation"),
])
def test_bad_prune_sections_fail_before_training(trained_teacher, corpus, tmp_path, capsys, change, match):
    conf = prune_config(corpus, trained_teacher["model"])
    change(conf)
    rc, _ = run(["--config", write_yaml(tmp_path / "bad.yaml", conf), "--exp_dir", tmp_path / "exp"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "asrc-train: error:" in err and re.search(match, err), err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("asrc-train: error:")]
    assert len(errors) == 1 and re.search(match, errors[0])


def test_gates_keep_their_learning_rate_under_any_scheduler(espnet_ready):
    from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR

    from asrc.espnet.task import _own_group

    w, gate = torch.nn.Parameter(torch.zeros(())), torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w, gate], lr=1e-3)
    _own_group(opt, [gate], lr=0.1)
    scheduler = PiecewiseLinearWarmupLR(opt, warmup_steps_list=[0, 10], warmup_lr_list=[0.0, 1e-3])
    for _ in range(3):
        opt.zero_grad()
        (w + gate).backward()          # gradient 1 for both
        opt.step()
        scheduler.step()
    assert float(gate) == pytest.approx(-0.3)           # 3 steps of the constant 0.1
    assert -3e-3 < float(w) < 0                          # the warming-up model lr
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
