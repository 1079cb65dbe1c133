"""egs/an4/run.sh stages 17-18 (int8 of the CNN) end to end on tiny stand-ins: a random 2-layer
teacher, a random 1-layer grouped-conv "distilled student" where stage 8 leaves it, a few
utterances of tones. Post-training variants, the float fine-tune and its QAT twin one after the
other, decoding, scoring, RESULTS_int8.md and the summary table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_copy import copy_an4_recipe, tiny_an4_teacher
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "espnet"))


@pytest.mark.slow
def test_an4_int8_stages_tiny(tmp_path):
    from espnet_helpers import write_data_dir

    from asrc.data.tokens import letter_tokens
    from asrc.models import build_model, save_model_dir

    recipe = copy_an4_recipe(tmp_path)
    cfg = tiny_an4_teacher(recipe, tmp_path / "teacher", num_layers=2)
    save_model_dir(build_model(cfg.replace(num_layers=1, conv_groups=2), letter_tokens()),
                   recipe / "exp" / "student_kd_s42" / "model")
    for name, n, seed in (("train", 8, 1), ("dev", 4, 2), ("test", 4, 3)):
        write_data_dir(recipe / "data", name, n, seed)

    args = ["--stage", "17", "--stop_stage", "18", "--student_teacher", str(tmp_path / "teacher"), "--nj", "1",
            "--int8_ptq", "pos:--mode=static-pos conv_pt_mse:--mode=static-conv,--conv-weights=per-tensor,"
                          "--conv-calibration=mse conv_bc:--mode=static-conv,--bias-correction",
            "--student_args", "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 2 --num_workers 0"]
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, capture_output=True, text=True,
                       env=dict(os.environ), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    int8 = recipe / "exp" / "int8"
    spec = {m: yaml.safe_load((int8 / m / "model" / "quantization.yaml").read_text())
            for m in ("pos", "conv_pt_mse", "conv_bc", "ft_qat")}
    assert {m: s["mode"] for m, s in spec.items()} == {"pos": "static-pos", "conv_pt_mse": "static-conv",
                                                       "conv_bc": "static-conv", "ft_qat": "qat"}
    cnn = {m: [n for n in s["static_int8_conv"] if n.startswith("feature_extractor.")] for m, s in spec.items()}
    assert not cnn["pos"] and len(cnn["conv_bc"]) == 6  # static-pos: the CNN stays float; layers 2..7 in int8
    assert spec["ft_qat"]["static_int8_conv"] == spec["conv_bc"]["static_int8_conv"]
    assert not spec["ft_qat"]["activation_reduce_range"]  # --int8_activation_bits 8, as the PTQ variants
    assert not (int8 / "ft_float" / "model" / "quantization.yaml").exists()
    qat, control = (yaml.safe_load((int8 / m / "config.yaml").read_text()) for m in ("ft_qat", "ft_float"))
    assert qat["qat"] == {"activation_bits": 8, "start_updates": 0} and control["qat"] is None
    for run in (qat, control):  # the same fine-tune from the float student: only qat differs
        assert run["encoder_conf"]["init"] == "exp/student_kd_s42/model" and run["model"] == "asrc_distill"
        assert run["optim_conf"] == {"lr": 5.0e-5} and run["max_epoch"] == 1
    assert {k for k in qat if qat[k] != control[k]} == {"qat", "output_dir", "train_shape_file", "valid_shape_file"}

    results = (recipe / "exp" / "RESULTS_int8.md").read_text()
    labels = ["student_kd_s42", "int8_pos", "int8_conv_pt_mse", "int8_conv_bc", "ft_float", "ft_qat"]
    assert all(f"## {m}\n" in results for m in labels)
    summary = (recipe / "exp" / "int8_summary.md").read_text()
    assert results.endswith(summary)
    rows = [line.split("|")[1:3] + line.split("|")[-2:-1] for line in summary.splitlines() if line.startswith("|")]
    assert [r[0] for r in rows[2:]] == labels
    what = {r[0]: r[1] for r in rows[2:]}
    assert what["int8_conv_pt_mse"] == "asrc-quantize --mode static-conv --conv-weights per-tensor --conv-calibration mse"
    assert rows[2][2] == "-" and rows[-1][2].endswith("(ft_float)")
