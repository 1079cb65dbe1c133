"""egs/an4/run.sh stage 8 (the distillation experiment's students) end to end on tiny stand-ins:
a random 4-layer teacher, a few utterances of tones. Only the kinds in --student_kinds train;
the kdm kind's data holds AN4 train $mixed_an4_copies times beside the untranscribed audio and
trains with $mixed_batch_size; kdh adds the hidden-state loss (conf/student_hidden.yaml);
ctcm is CTC alone on kdm's audio with the transcripts kept; kds distils on speed-perturbed
copies of AN4 train without their transcripts (ctcs: with them); $student_tag goes into the
experiments' names. Stage 10 decodes AN4 test and, where stage 1 made it, its degraded copy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from recipe_copy import copy_an4_recipe, tiny_an4_teacher

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "espnet"))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.slow
def test_an4_stage_8_kinds_tiny(tmp_path):
    from espnet_helpers import write_data_dir

    recipe = copy_an4_recipe(tmp_path)
    tiny_an4_teacher(recipe, tmp_path / "teacher", num_layers=4)  # conf/student.yaml keeps 4 layers
    for name, n, seed in (("train", 6, 1), ("dev", 4, 2), ("extra", 5, 3), ("test", 3, 4), ("test_degraded", 2, 5)):
        write_data_dir(recipe / "data", name, n, seed)

    args = ["--stage", "8", "--stop_stage", "10", "--student_teacher", str(tmp_path / "teacher"), "--seeds", "7",
            "--student_kinds", "kdm ctc kdh ctcm kds ctcs", "--mixed_an4_copies", "3", "--mixed_batch_size", "5",
            "--untranscribed_sets", "data/extra", "--student_tag", "_x",
            "--student_args", "--max_epoch 1 --num_iters_per_epoch 2 --num_workers 0"]
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, capture_output=True, text=True,
                       env=dict(os.environ), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    data = recipe / "data"
    mixed = [u.split()[0] for u in lines(data / "train_mixed" / "wav.scp")]
    transcribed = [u.split()[0] for u in lines(data / "train_mixed" / "text")]
    train = [u.split()[0] for u in lines(data / "train" / "wav.scp")]
    # AN4 train three times (itself and two prefixed copies), the extra audio and the degraded
    # copy of AN4 train without their transcripts
    assert len(mixed) == 3 * 6 + 5 + 6 and len(set(mixed)) == len(mixed)
    assert sorted(transcribed) == sorted(train + [f"mix{i}-{u}" for i in (1, 2) for u in train])
    assert sum(u.startswith("u-") for u in mixed) == 5 + 6
    # ctcm's data: the same audio, every transcript kept
    labelled = [u.split()[0] for u in lines(data / "train_mixed_labelled" / "text")]
    assert sorted(labelled) == sorted(mixed)

    # kds: AN4 train twice beside its speed-perturbed copies (0.9, 1.1: 1/0.9 and 1/1.1 times as
    # long), those without transcripts; ctcs: the same utterances, every transcript kept
    sp = [u.split()[0] for u in lines(data / "train_sp_mixed" / "wav.scp")]
    assert sorted(sp) == sorted(train + [f"mix1-{u}" for u in train]
                                + [f"u-sp{f}-{u}" for f in ("0.9", "1.1") for u in train])
    assert sorted(u.split()[0] for u in lines(data / "train_sp_mixed" / "text")) == \
        sorted(train + [f"mix1-{u}" for u in train])
    assert sorted(u.split()[0] for u in lines(data / "train_sp_labelled" / "text")) == \
        sorted(train + [f"mix1-{u}" for u in train] + [f"sp{f}-{u}" for f in ("0.9", "1.1") for u in train])
    lengths = {k: int(v) for k, v in (x.split() for x in lines(data / "train_sp_mixed" / "utt2num_samples"))}
    for u in train:
        for f in (0.9, 1.1):
            assert abs(lengths[f"u-sp{f:g}-{u}"] - lengths[u] / f) <= 2, (u, f)

    exp = recipe / "exp"
    assert (exp / "student_kdm_x_s7" / "model" / "model.pth").is_file()
    assert (exp / "student_ctc_x_s7" / "model" / "model.pth").is_file()
    assert (exp / "student_kdh_x_s7" / "model" / "model.pth").is_file()
    assert not (exp / "student_kd_x_s7").exists() and not (exp / "student_kdu_x_s7").exists()
    assert sorted(d.name for d in exp.glob("student_*")) == [
        "student_ctc_x_s7", "student_ctcm_x_s7", "student_ctcs_x_s7", "student_kdh_x_s7", "student_kdm_x_s7",
        "student_kds_x_s7"]
    kds, ctcs = (yaml.safe_load((exp / f"student_{k}_x_s7" / "config.yaml").read_text()) for k in ("kds", "ctcs"))
    assert kds["model"] == "asrc_distill" and "train_sp_mixed" in yaml.safe_dump(kds) and kds["batch_size"] == 5
    assert ctcs["model"] == "asrc_ctc" and "train_sp_labelled" in yaml.safe_dump(ctcs) and ctcs["batch_size"] == 5
    ctcm = yaml.safe_load((exp / "student_ctcm_x_s7" / "config.yaml").read_text())
    assert ctcm["model"] == "asrc_ctc" and ctcm["batch_size"] == 5 and "train_mixed_labelled" in yaml.safe_dump(ctcm)
    kdm, ctc = (yaml.safe_load((exp / f"student_{k}_x_s7" / "config.yaml").read_text()) for k in ("kdm", "ctc"))
    assert kdm["batch_size"] == 5 and ctc["batch_size"] == 8  # conf/train_student.yaml's
    assert kdm["model"] == "asrc_distill" and ctc["model"] == "asrc_ctc"
    assert kdm["seed"] == ctc["seed"] == 7 and kdm["max_epoch"] == ctc["max_epoch"] == 1
    assert "train_mixed" in yaml.safe_dump(kdm) and "train_mixed" not in yaml.safe_dump(ctc)
    kdh = yaml.safe_load((exp / "student_kdh_x_s7" / "config.yaml").read_text())
    assert kdh["model_conf"]["loss_weights"]["hidden_loss"] == 1.0  # conf/student_hidden.yaml
    assert kdm["model_conf"]["loss_weights"]["hidden_loss"] == 0  # conf/student.yaml
    assert {k: v for k, v in kdh["model_conf"]["loss_weights"].items() if k != "hidden_loss"} == \
        {k: v for k, v in kdm["model_conf"]["loss_weights"].items() if k != "hidden_loss"}

    # stage 10: the teacher and every student on both test sets, in one table named with the tag
    sections = {}  # asrc-results: "## <model>", then its WER and CER tables, one row per set
    for part in (exp / "RESULTS_x.md").read_text().split("\n## ")[1:]:
        sections[part.splitlines()[0]] = part
    for model in ["teacher_committed"] + [f"student_{k}_x_s7" for k in ("kdm", "ctc", "kdh", "ctcm", "kds", "ctcs")]:
        for test_set, n in (("test", 3), ("test_degraded", 2)):
            hyp = lines(exp / model / f"decode_{test_set}" / "text")
            assert len(hyp) == n, (model, test_set)
            rows = [r for r in sections[model].splitlines() if r.startswith(f"|{test_set}|{n}|")]
            assert len(rows) == 2, (model, test_set, sections[model])  # WER and CER
    assert not (exp / "student_kd_int8").exists()  # stage 9 did not run; stage 10 only names it without a tag


@pytest.mark.slow
def test_an4_stage_8_rejects_unknown_kind(tmp_path):
    recipe = copy_an4_recipe(tmp_path)
    r = subprocess.run(["bash", str(recipe / "run.sh"), "--stage", "8", "--stop_stage", "8", "--student_kinds", "kd kx"],
                       cwd=recipe, capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode != 0 and "unknown kind 'kx'" in r.stdout + r.stderr
