"""asrc-train's --student: a student spec expanded into encoder_conf / model_conf, the same options
the demo's dialect and the ESPnet options it replaced give."""

from pathlib import Path

import pytest

from asrc.errors import ConfigError

EGS = Path(__file__).resolve().parents[2] / "egs"
TEACHER = str(EGS / "an4" / "teacher")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def parse(cmd, defaults=None):
    from asrc.espnet.task import AsrcASRTask, apply_student_spec

    args = AsrcASRTask.parse_args(cmd, defaults)
    apply_student_spec(args)
    return args


def test_an4_student_options_are_the_demo_configs(espnet_ready, monkeypatch):
    """egs/an4 (conf/train_student_lr1e-3.yaml + conf/student.yaml) trains what
    ../demo/demo_config.yaml says, option for option, for the distilled and the CTC-only student;
    conf/train_student.yaml (the first runs) differs only in the learning rate."""
    from asrc.distill.demo_config import read_demo_config, translate

    monkeypatch.chdir(EGS / "an4")
    for ctc_only in (False, True):
        demo = read_demo_config(EGS / "demo" / "demo_config.yaml")
        demo["knowledge_distillation"]["general"]["teacher_model_path"] = TEACHER
        from_demo = vars(parse([], translate(demo, ctc_only=ctc_only)))
        cmd = ["--encoder_conf", f"init={TEACHER}"]
        cmd += ["--model", "asrc_ctc"] if ctc_only else ["--model_conf", f"teacher={TEACHER}"]
        from_spec = vars(parse(["--config", "conf/train_student_lr1e-3.yaml"] + cmd))
        first = vars(parse(["--config", "conf/train_student.yaml"] + cmd))
        assert sorted(k for k in first if k != "config" and first[k] != from_spec[k]) == ["optim_conf", "scheduler_conf"]
        assert first["optim_conf"] == {"lr": 0.0005} and from_spec["optim_conf"] == {"lr": 0.001}
        assert from_spec["student"] is None  # expanded: the dumped config.yaml reads back alone
        differ = sorted(k for k in from_demo if k != "config" and from_demo[k] != from_spec[k])
        assert differ == [], [(k, from_demo[k], from_spec[k]) for k in differ]
        assert from_spec["encoder_conf"]["layer_init"] == "every_k"
        assert from_spec["encoder_conf"]["config"] == {"num_layers": 4, "conv_groups": 2}
        assert from_spec["model_conf"] == ({} if ctc_only else {
            "teacher": TEACHER, "temperature": 2.0, "loss_weights": {
                "kd_loss": 0.5, "student_loss": 0.5, "hidden_loss": 0, "cos_embed_loss": 0, "features_pen": 0}})


def test_each_setting_in_one_place(espnet_ready, monkeypatch):
    monkeypatch.chdir(EGS / "an4")
    base = ["--student", "conf/student.yaml", "--model", "asrc_distill", "--model_conf", f"teacher={TEACHER}"]
    with pytest.raises(ConfigError, match=r"\['model_conf.temperature'\].*set each in one place"):
        parse(base + ["--model_conf", "temperature=3.0"])
    with pytest.raises(ConfigError, match=r"\['encoder_conf.config.conv_groups'\]"):
        parse(base + ["--encoder_conf", "config={conv_groups: 4}"])
    # a setting the spec leaves alone is merged; one set to the same value is fine
    args = parse(base + ["--encoder_conf", "config={dropout: 0.2, conv_groups: 2}"])
    assert args.encoder_conf["config"] == {"dropout": 0.2, "conv_groups": 2, "num_layers": 4}
    assert args.encoder_conf["init"] == TEACHER  # init.from teacher: built from model_conf.teacher
    with pytest.raises(ConfigError, match="give model_conf.teacher"):
        parse(["--student", "conf/student.yaml", "--model", "asrc_ctc"])
    # inline in the YAML (a mapping under student:); no distill section: model_conf as given
    args = parse(["--model", "asrc_distill", "--model_conf", f"teacher={TEACHER}"],
                 {"student": {"layers": {"num": 2, "select": "last_k"}}})
    assert args.encoder_conf == {"init": TEACHER, "layer_init": "last_k", "config": {"num_layers": 2}}
    assert args.model_conf == {"teacher": TEACHER}
    with pytest.raises(ConfigError, match=r"--student: layers: unknown keys \['nm'\]"):
        parse(["--model", "asrc_distill", "--model_conf", f"teacher={TEACHER}"], {"student": {"layers": {"nm": 2}}})


def test_random_init_checks_the_warm_started_model(espnet_ready, monkeypatch, tmp_path):
    """init.from random: encoder_conf.init is a model made from the spec; the encoder refuses one
    whose architecture is not the spec's."""
    import torch

    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.models import load, load_config, save_model_dir
    from asrc.models.student import build_from_spec
    from asrc.models.student_spec import StudentSpec

    monkeypatch.chdir(EGS / "an4")
    spec = StudentSpec.from_yaml_file("conf/student_narrow.yaml")
    torch.manual_seed(0)
    warm, _ = build_from_spec(load(TEACHER), spec)
    save_model_dir(warm, tmp_path / "warm")
    args = parse(["--student", "conf/student_narrow.yaml", "--model", "asrc_ctc",
                  "--encoder_conf", f"init={tmp_path / 'warm'}"])
    assert "layer_init" not in args.encoder_conf
    AsrcWav2Vec2Encoder(**args.encoder_conf)  # loads as it is
    save_model_dir(load(TEACHER), tmp_path / "other")
    args = parse(["--student", "conf/student_narrow.yaml", "--model", "asrc_ctc",
                  "--encoder_conf", f"init={tmp_path / 'other'}"])
    with pytest.raises(ConfigError, match="would not fit its weights"):
        AsrcWav2Vec2Encoder(**args.encoder_conf)
    # without init: the whole architecture, from scratch
    args = parse(["--student", "conf/student_narrow.yaml", "--model", "asrc_distill",
                  "--model_conf", f"teacher={TEACHER}"])
    assert args.encoder_conf["config"] == spec.student_config(load_config(TEACHER)).to_dict()
    assert args.model_conf["loss_weights"]["hidden_loss"] == 1.0


def test_prune_section_of_the_spec_becomes_the_prune_option(espnet_ready, tmp_path):
    """A student spec's ``prune:`` (registered by asrc.prune) reaches asrc-train as --prune, validated
    and complete; the same key set differently on the command line is refused."""
    from asrc.prune.spec import PruneSpec

    spec = tmp_path / "pruned.yaml"
    spec.write_text("distill: {temperature: 1.0}\nprune: {target_sparsity: 0.7, warmup_updates: 10}\n")
    base = ["--student", str(spec), "--model", "asrc_distill", "--model_conf", f"teacher={TEACHER}"]
    args = parse(base)
    assert args.prune == PruneSpec.from_dict({"target_sparsity": 0.7, "warmup_updates": 10}).to_dict()
    assert args.prune["target_sparsity"] == 0.7 and args.prune["warmup_updates"] == 10
    with pytest.raises(ConfigError, match=r"\['prune.target_sparsity'\]"):
        parse(base + ["--prune", "target_sparsity=0.5"])
    spec.write_text("prune: {target_sparsty: 0.7}\n")
    with pytest.raises(ConfigError, match="target_sparsty"):
        parse(base)


def test_qat_section_of_the_spec_becomes_the_qat_option(espnet_ready, tmp_path):
    from asrc.quant.qat import QATConfig

    spec = tmp_path / "qat.yaml"
    spec.write_text("qat: {start_updates: 100}\n")
    args = parse(["--student", str(spec), "--model", "asrc_distill", "--model_conf", f"teacher={TEACHER}"])
    assert args.qat == QATConfig.from_dict({"start_updates": 100}).to_dict()
    spec.write_text("qat: {start_update: 100}\n")
    with pytest.raises(ConfigError, match="start_update"):
        parse(["--student", str(spec), "--model", "asrc_distill", "--model_conf", f"teacher={TEACHER}"])


def test_an4_int8_finetune_keeps_the_distillation_loss(espnet_ready, monkeypatch):
    """egs/an4 stage 17 fine-tunes stage 8's distilled student with conf/train_qat.yaml: the loss
    of its distillation (conf/student.yaml's distill section), the student as it is (no layer
    selection, no refit of its kernels), and --qat only where run.sh adds it."""
    from asrc.quant.qat import QATConfig

    monkeypatch.chdir(EGS / "an4")
    stage8 = parse(["--config", "conf/train_student.yaml", "--encoder_conf", f"init={TEACHER}",
                    "--model_conf", f"teacher={TEACHER}"])
    student = "exp/student_kd_s42/model"
    common = ["--config", "conf/train_qat.yaml", "--model_conf", f"teacher={TEACHER}", "--encoder_conf", f"init={student}"]
    control = parse(common)
    qat = parse(common + ["--qat", "activation_bits=8", "--qat", "start_updates=0"])
    for args in (control, qat):
        assert args.model == "asrc_distill" and args.model_conf == stage8.model_conf
        assert args.encoder_conf == {"init": student}
        assert args.batch_size == stage8.batch_size and args.optim_conf == {"lr": 5.0e-5} and args.scheduler is None
    assert control.qat is None and QATConfig.from_dict(qat.qat) == QATConfig(start_updates=0, activation_bits=8)
    assert {k for k, v in vars(qat).items() if vars(control)[k] != v} == {"qat"}
