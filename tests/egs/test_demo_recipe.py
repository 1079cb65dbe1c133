"""egs/demo/run.sh end to end with tiny settings: synthesis, distillation in ESPnet's trainer,
int8, decoding, scoring, footprint. A random stand-in teacher with the committed teacher's
architecture keeps the test independent of the committed weights."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_recipe_tiny(tmp_path):
    from asrc.data.tokens import letter_tokens
    from asrc.models import Wav2Vec2Config, build_model, save_model_dir

    cfg = Wav2Vec2Config.from_yaml(REPO / "egs" / "an4" / "conf" / "teacher_model.yaml")
    cfg = cfg.replace(num_layers=4, embed_dim=64, ffn_dim=128, conv_layers=[[32, k, s] for _, k, s in cfg.conv_layers])
    save_model_dir(build_model(cfg, letter_tokens()), tmp_path / "teacher")

    recipe = tmp_path / "demo"
    shutil.copytree(REPO / "egs" / "demo", recipe, symlinks=True, ignore=shutil.ignore_patterns("exp", "data", "db"))
    (recipe / "utils").unlink()
    (recipe / "utils").symlink_to(REPO / "egs" / "utils")
    args = ["--teacher", str(tmp_path / "teacher"), "--synth_subsets", "train:12,dev:4,test:6", "--use_an4", "false",
            "--train_args", "--max_epoch 1 --num_iters_per_epoch 3",
            "--bench_args", "--runs 1 --warmup 0 --seconds 1 --no-onnx --no-peer"]
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, capture_output=True, text=True,
                       env=dict(os.environ), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    exp = recipe / "exp"
    student = yaml.safe_load((exp / "student" / "model" / "config.yaml").read_text())
    assert student["num_layers"] == 4 and student["conv_groups"] == 2  # demo_config.yaml's student
    results = (exp / "RESULTS.md").read_text()
    for model in ("teacher", "student", "student_int8"):
        assert f"## {model}\n" in results
    assert "|synth_test|6|" in results
    assert "## Footprint" in results and (exp / "footprint.png").is_file()
    synth_speakers = (recipe / "db" / "synth" / "SPEAKERS.tsv").read_text()
    assert "piper" in synth_speakers

    # An identical rerun finds every stage done.
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, capture_output=True, text=True,
                       env=dict(os.environ), timeout=900)
    assert r.returncode == 0 and r.stderr.count("already done") == 6, r.stderr[-3000:]
    # demo_config.yaml edited (the audit: every stage said "already done" and the old RESULTS.md
    # was printed): the distillation and every stage after it are redone, the data is not.
    config = recipe / "demo_config.yaml"
    config.write_text(config.read_text().replace("num_trans_layer_student_model: 4",
                                                 "num_trans_layer_student_model: 2"))
    before = (exp / "RESULTS.md").read_text()
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, capture_output=True, text=True,
                       env=dict(os.environ), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "stage 1: data" in r.stderr and r.stderr.count("already done") == 1
    assert "stage 2: out of date, redone: its inputs changed" in r.stderr and "demo_config.yaml" in r.stderr
    for n in (3, 4, 5, 6):
        assert f"stage {n}: out of date, redone: stage 2, which it depends on, has been redone since" in r.stderr
    student = yaml.safe_load((exp / "student" / "model" / "config.yaml").read_text())
    assert student["num_layers"] == 2
    assert (exp / "RESULTS.md").read_text() != before
