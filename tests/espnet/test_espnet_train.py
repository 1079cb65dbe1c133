"""End to end through ESPnet's trainer, in this process: teacher, distillation, CTC-only, errors."""

import glob
import re
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from asrc.bin.train import main
from asrc.distill.losses import LOSS_TERMS

from espnet_helpers import COMMON, copy_model, teacher_config, write_yaml

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "egs" / "demo" / "demo_config.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def reporter_stats(exp):
    """``{epoch: {"train": {...}, "valid": {...}}}`` from the trainer's resume state."""
    return torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["stats"]


def scalar_tags(exp, phase):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard" / phase))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def run(argv):
    start = time.perf_counter()
    rc = main([str(a) for a in argv])
    return rc, time.perf_counter() - start


def test_teacher_training_writes_an_espnet_experiment(trained_teacher, corpus):
    exp = trained_teacher["exp"]
    for name in ("config.yaml", "checkpoint.pth", "1epoch.pth", "2epoch.pth", "valid.loss.best.pth",
                 "valid.loss.ave.pth", "train.log", "train.sh", "shapes/train/speech_shape"):
        assert (exp / name).exists(), name
    assert glob.glob(str(exp / "tensorboard" / "train" / "events.out.tfevents.*"))
    assert {"loss", "student_loss"} <= scalar_tags(exp, "train")
    assert {"loss", "student_loss", "cer"} <= scalar_tags(exp, "valid")
    stats = reporter_stats(exp)
    assert stats[2]["train"]["loss"] < stats[1]["train"]["loss"]
    assert stats[2]["valid"]["loss"] < stats[1]["valid"]["loss"]

    config = yaml.safe_load((exp / "config.yaml").read_text())
    # The dumped config is complete: the resolved architecture, letters with "|" as the space.
    assert config["encoder_conf"]["config"]["vocab_size"] == 32
    assert config["encoder_conf"]["config"]["num_layers"] == 2
    assert config["preprocessor_conf"] == {"space_symbol": "|"}
    assert config["input_size"] == 1 and config["normalize"] is None
    log = (exp / "train.log").read_text()
    assert "The training was finished at 2 epochs" in log
    print(f"\n[teacher: 2 epochs of 6 updates, {trained_teacher['seconds']:.1f} s incl. setup]", file=sys.stderr)


def test_exported_teacher_matches_the_checkpoint(trained_teacher, espnet_ready):
    from asrc.models.espnet_dir import export_model_dir
    from asrc.models import load

    model = load(trained_teacher["model"])
    assert model.tokens[0] == "<blank>" and len(model.tokens) == 32
    state = torch.load(trained_teacher["exp"] / "valid.loss.ave.pth", weights_only=True)
    assert torch.equal(model.ctc_head.weight, state["encoder.model.ctc_head.weight"])
    out = export_model_dir(trained_teacher["exp"], trained_teacher["exp"] / "epoch1", checkpoint="1epoch.pth")
    first = load(out)
    state1 = torch.load(trained_teacher["exp"] / "1epoch.pth", weights_only=True)
    assert torch.equal(first.ctc_head.weight, state1["encoder.model.ctc_head.weight"])
    with pytest.raises(FileNotFoundError, match="9epoch.pth"):
        export_model_dir(trained_teacher["exp"], trained_teacher["exp"] / "x", checkpoint="9epoch.pth")


def test_espnet_inference_decodes_asrc_models(trained_teacher, corpus):
    """ESPnet's Speech2Text builds the model from config.yaml and gets asrc's logits."""
    import soundfile as sf
    from espnet2.bin.asr_inference import Speech2Text

    from asrc.models import load

    exp = trained_teacher["exp"]
    s2t = Speech2Text(asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / "valid.loss.ave.pth"),
                      ctc_weight=1.0, beam_size=1, device="cpu")
    wav, _ = sf.read((corpus["valid"] / "wav.scp").read_text().split()[1], dtype="float32")
    x = torch.from_numpy(wav)[None]
    enc, _ = s2t.asr_model.encode(x, torch.tensor([x.shape[1]]))
    logits, _ = load(trained_teacher["model"])(x)
    assert torch.allclose(s2t.asr_model.ctc.ctc_lo(enc), logits, atol=1e-5)
    assert isinstance(s2t(wav)[0][0], str)


def distill_config(corpus, teacher_dir, **model_conf):
    weights = {"kd_loss": 0.5, "student_loss": 0.5, "hidden_loss": 0.1, "cos_embed_loss": 0.1, "features_pen": 0.01}
    return dict(COMMON, use_matplotlib=False, train_data_dir=str(corpus["train"]),
                valid_data_dir=str(corpus["valid"]), encoder="asrc_wav2vec2",
                encoder_conf={"init": str(teacher_dir), "layer_init": "every_k",
                              "config": {"num_layers": 1, "conv_groups": 2}},
                model="asrc_distill",
                model_conf={"teacher": str(teacher_dir), "temperature": 2.0, "loss_weights": weights, **model_conf})


def test_distillation_logs_every_term_and_leaves_the_teacher_alone(trained_teacher, corpus, tmp_path):
    from asrc.models import load, num_parameters

    teacher_dir = copy_model(trained_teacher["model"], tmp_path / "teacher")
    before = load(teacher_dir).state_dict()
    conf = write_yaml(tmp_path / "distill.yaml", distill_config(corpus, teacher_dir))
    rc, seconds = run(["--config", conf, "--exp_dir", tmp_path / "exp", "--export_model_dir", tmp_path / "student"])
    assert rc == 0
    print(f"\n[distillation: 2 epochs, {seconds:.1f} s incl. setup]", file=sys.stderr)
    exp = tmp_path / "exp" / "distill"
    for phase in ("train", "valid"):
        assert set(LOSS_TERMS) | {"loss", "hidden_l1", "hidden_cos"} <= scalar_tags(exp, phase)
    assert {"cer", "cer_teacher"} <= scalar_tags(exp, "valid")
    stats = reporter_stats(exp)
    assert stats[2]["train"]["loss"] < stats[1]["train"]["loss"]
    # No token list given: the teacher's.
    assert yaml.safe_load((exp / "config.yaml").read_text())["token_list"] == load(teacher_dir).tokens
    checkpoint = torch.load(exp / "checkpoint.pth", weights_only=False)["model"]
    assert not any(k.startswith("teacher") for k in checkpoint)
    assert any(k.startswith("hidden_predictor.heads.s1_t2") for k in checkpoint)
    # The student's grouped CNN kernels were fitted on the training speech, not pink noise.
    encoder_conf = yaml.safe_load((exp / "config.yaml").read_text())["encoder_conf"]
    assert encoder_conf["calibration"] == str(Path(corpus["train"]).resolve())
    assert f"of {Path(corpus['train']).resolve()}" in (exp / "train.log").read_text()
    after = load(teacher_dir).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    student, teacher = load(tmp_path / "student"), load(teacher_dir)
    assert student.config.num_layers == 1 and student.config.conv_groups == 2
    assert num_parameters(student) < num_parameters(teacher)


def test_espnet_inference_needs_only_the_experiment_directory(trained_teacher, corpus, tmp_path):
    """ESPnet's loader builds a model as for training before loading the checkpoint: for a student
    that meant the teacher folder (encoder_conf.init, model_conf.teacher) and the training data
    (encoder_conf.calibration). Experiments moved away from both decode as asrc reads them."""
    import shutil

    import soundfile as sf
    from espnet2.bin.asr_inference import Speech2Text

    from asrc.errors import CheckpointError, ConfigError
    from asrc.models.espnet_dir import read_experiment

    teacher_dir = copy_model(trained_teacher["model"], tmp_path / "teacher")
    train = tmp_path / "train"
    shutil.copytree(corpus["train"], train)
    exps = {}
    for name, extra in (("plain", {}), ("qat", {"qat": {"start_updates": 0}})):
        conf = dict(distill_config(corpus, teacher_dir), max_epoch=1, train_data_dir=str(train), **extra)
        rc, _ = run(["--config", write_yaml(tmp_path / f"{name}.yaml", conf), "--exp_dir", tmp_path / "exp"])
        assert rc == 0
        exps[name] = shutil.copytree(tmp_path / "exp" / name, tmp_path / "moved" / name)
    for gone in (tmp_path / "exp", teacher_dir, train):
        shutil.rmtree(gone)
    config = yaml.safe_load((exps["plain"] / "config.yaml").read_text())
    assert config["model"] == "asrc_distill" and config["encoder_conf"]["calibration"] == str(train.resolve())

    def speech2text(exp, checkpoint="valid.loss.ave.pth"):
        return Speech2Text(asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / checkpoint),
                           ctc_weight=1.0, beam_size=1, device="cpu")

    wav = sf.read((corpus["valid"] / "wav.scp").read_text().split()[1], dtype="float32")[0]
    x = torch.from_numpy(wav)[None]
    s2t = speech2text(exps["plain"])
    enc, _ = s2t.asr_model.encode(x, torch.tensor([x.shape[1]]))
    logits, _ = read_experiment(exps["plain"])(x)
    assert torch.allclose(s2t.asr_model.ctc.ctc_lo(enc), logits, atol=1e-5)
    assert isinstance(s2t(wav)[0][0], str)
    # Quantization-aware training: the student under the fake quantization it was trained with.
    s2t = speech2text(exps["qat"])
    assert s2t.asr_model.encoder.qat_active()
    state = torch.load(exps["qat"] / "valid.loss.ave.pth", weights_only=True)
    assert any(k.endswith("input_range.range") for k in s2t.asr_model.state_dict())
    assert all(torch.equal(v, state[k]) for k, v in s2t.asr_model.state_dict().items())
    assert isinstance(s2t(wav)[0][0], str)

    # A checkpoint that lacks a tensor is an error naming it (ESPnet's strict=False kept the random init),
    # and so is one that does not fit the config (here: QAT weights for a config without qat).
    exp = exps["plain"]
    state = torch.load(exp / "valid.loss.ave.pth", weights_only=True)
    state.pop(next(k for k in state if k.startswith("encoder.model.") and ".layers.0." in k))
    torch.save(state, exp / "cut.pth")
    with pytest.raises(CheckpointError, match="cut.pth.*missing keys"):
        speech2text(exp, "cut.pth")
    shutil.copy(exps["qat"] / "valid.loss.ave.pth", exp / "qat.pth")
    with pytest.raises(CheckpointError, match="qat.pth.*unexpected keys.*input_range"):
        speech2text(exp, "qat.pth")
    # A pruning run's weights mean something only under its gates.
    write_yaml(exp / "config.yaml", dict(config, prune={"target_sparsity": 0.5}))
    with pytest.raises(ConfigError, match="structured-pruning run"):
        speech2text(exp)


def tiny_demo_config(corpus, teacher_dir, tmp_path):
    d = yaml.safe_load(DEMO_CONFIG.read_text())
    d["data_loader"].update(train_data_path=str(corpus["train"]), val_data_path=str(corpus["valid"]),
                            train_batch_size=4, val_batch_size=4, num_workers=0)
    kd = d["knowledge_distillation"]
    kd["general"]["teacher_model_path"] = str(teacher_dir)
    kd["optimization"].update(max_epoch=2, num_iters_per_epoch=4, learning_rate=0.003)
    kd["student_model"]["num_trans_layer_student_model"] = 1
    return write_yaml(tmp_path / "demo_config.yaml", d)


def test_demo_config_distilled_and_ctc_only_students_get_the_same_updates(trained_teacher, corpus, tmp_path):
    demo = tiny_demo_config(corpus, trained_teacher["model"], tmp_path)
    extra = ["--exp_dir", tmp_path / "exp", "--use_matplotlib", "false",
             "--encoder_conf", "freeze_feature_updates=3"]
    rc, _ = run(["--demo_config", demo] + extra)
    assert rc == 0
    rc, _ = run(["--demo_config", demo, "--ctc_only"] + extra)
    assert rc == 0
    distilled, ctc_only = tmp_path / "exp" / "demo_config", tmp_path / "exp" / "demo_config_ctc_only"
    configs = [yaml.safe_load((e / "config.yaml").read_text()) for e in (distilled, ctc_only)]
    assert (configs[0]["model"], configs[1]["model"]) == ("asrc_distill", "asrc_ctc")
    assert configs[0]["encoder_conf"] == configs[1]["encoder_conf"]
    assert configs[0]["scheduler_conf"] == configs[1]["scheduler_conf"] == {
        "warmup_steps_list": [0, 4, 8], "warmup_lr_list": [0.0, 0.003, 0.0]}
    for exp in (distilled, ctc_only):
        # The optimizer hook counted every update: 2 epochs x 4 iterations.
        state = torch.load(exp / "checkpoint.pth", weights_only=False)
        assert int(state["model"]["encoder.num_updates"]) == 8
        assert state["reporter"]["stats"][2]["train"]["total_count"] == 8
    assert "kd_loss" in scalar_tags(distilled, "train") and "kd_loss" not in scalar_tags(ctc_only, "train")


@pytest.mark.parametrize("change,match", [
    (lambda c, d: c["encoder_conf"]["config"].update(num_layer=2), "unknown Wav2Vec2Config keys \\['num_layer'\\]"),
    (lambda c, d: c["model_conf"].update(tempreature=2), "unknown model_conf keys \\['tempreature'\\]"),
    (lambda c, d: c["model_conf"]["loss_weights"].update(kd=1), "unknown loss terms \\['kd'\\]"),
    (lambda c, d: c["model_conf"].update(teacher=str(d / "missing")), "missing is not an asrc model directory"),
    (lambda c, d: c.update(token_list=str(d / "swapped.txt")), "token sets differ"),
    (lambda c, d: c["encoder_conf"].update(layer_init="middle_k"), "middle_k"),
    (lambda c, d: c.update(train_data_dir=str(d / "nodata")), "nodata"),
])
def test_bad_configs_fail_before_training(trained_teacher, corpus, tmp_path, capsys, change, match):
    from asrc.data.tokens import letter_tokens

    swapped = letter_tokens()
    swapped[5], swapped[6] = swapped[6], swapped[5]
    (tmp_path / "swapped.txt").write_text("".join(t + "\n" for t in swapped))
    conf = distill_config(corpus, trained_teacher["model"])
    change(conf, tmp_path)
    rc, _ = run(["--config", write_yaml(tmp_path / "bad.yaml", conf), "--exp_dir", tmp_path / "exp"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "asrc-train: error:" in err and re.search(match, err), err[-2000:]
    assert not (tmp_path / "exp" / "bad" / "checkpoint.pth").exists()


def test_unknown_top_level_key_is_an_espnet_usage_error(corpus, tmp_path, capsys, espnet_ready):
    conf = dict(teacher_config(corpus), temprature=2)
    with pytest.raises(SystemExit) as e:
        main(["--config", str(write_yaml(tmp_path / "bad.yaml", conf)), "--exp_dir", str(tmp_path / "exp")])
    assert e.value.code == 2
    assert "unrecognized arguments: temprature" in capsys.readouterr().err


def test_damaged_resume_checkpoint_is_a_clear_error(trained_teacher, corpus, tmp_path, capsys):
    exp = tmp_path / "exp" / "teacher"
    exp.mkdir(parents=True)
    good = (trained_teacher["exp"] / "checkpoint.pth").read_bytes()
    (exp / "checkpoint.pth").write_bytes(good[: len(good) // 2])  # killed while torch.save wrote it
    conf = write_yaml(tmp_path / "teacher.yaml", teacher_config(corpus))
    assert main(["--config", str(conf), "--exp_dir", str(tmp_path / "exp")]) == 2
    assert "checkpoint.pth is damaged" in capsys.readouterr().err
