"""egs/an4/run.sh stage 16 on tiny random models: decoding and scoring of the pruned students
(a scored decode dir of another model under the teacher's label is decoded again, not reused),
asrc-results' WER/CER files, asrc-bench footprint with CER, local/prune_results.py ->
exp/RESULTS_prune.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_copy import copy_an4_recipe

REPO = Path(__file__).resolve().parents[2]


def tiny_models(recipe: Path):
    import torch

    from asrc.data.tokens import letter_tokens
    from asrc.models import Wav2Vec2Config, build_model, save_model_dir
    from asrc.prune.masks import materialise

    sys.path.insert(0, str(REPO / "tests" / "prune"))
    from prune_helpers import random_masks

    tokens = letter_tokens()
    cfg = Wav2Vec2Config(conv_layers=[[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, embed_dim=48, ffn_dim=96,
                         num_heads=4, num_layers=4, pos_conv_kernel=16, pos_conv_groups=4, vocab_size=len(tokens))
    torch.manual_seed(0)
    teacher = build_model(cfg, tokens).eval()
    save_model_dir(teacher, recipe / "tinyteacher", tokens=tokens)
    save_model_dir(build_model(cfg.replace(num_layers=2), tokens).eval(), recipe / "exp/student_kd_s7/model",
                   tokens=tokens)
    save_model_dir(build_model(cfg.replace(embed_dim=24, ffn_dim=48), tokens).eval(), recipe / "exp/narrow_kd/model",
                   tokens=tokens)
    for i, name in enumerate(["prune_0.5", "pruned_0.5", "prune_x", "pruned_x"]):
        masks = random_masks(cfg, torch.Generator().manual_seed(7 + i), keep=0.5)
        save_model_dir(materialise(teacher, masks), recipe / f"exp/{name}/model", tokens=tokens)


def write_test_set(recipe: Path):
    import numpy as np
    import soundfile as sf

    d = recipe / "data" / "test"
    d.mkdir(parents=True)
    texts = {"s1-u1": "HELLO WORLD", "s1-u2": "ONE TWO", "s2-u3": "YES"}
    rng = np.random.default_rng(0)
    for utt in texts:
        sf.write(d / f"{utt}.wav", (0.1 * rng.standard_normal(8000)).astype("float32"), 16000)
    (d / "wav.scp").write_text("".join(f"{u} {d / u}.wav\n" for u in texts))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in texts))
    (d / "spk2utt").write_text("s1 s1-u1 s1-u2\ns2 s2-u3\n")


@pytest.mark.slow
def test_an4_stage_16_tiny(tmp_path):
    recipe = copy_an4_recipe(tmp_path)
    tiny_models(recipe)
    write_test_set(recipe)
    # A scored test decode under the teacher's label, as stage 10 leaves it, but of another
    # teacher (a stand-in hypothesis, asrc's scorer): stage 16 must not take it for tinyteacher's.
    from asrc.score.scorer import score_dir

    refs = dict(line.split(" ", 1) for line in (recipe / "data/test/text").read_text().splitlines())
    hyps = {**refs, "s2-u3": "YET"}
    for unit in ("word", "char"):
        score_dir(refs, hyps, recipe / f"exp/teacher_committed/decode_test/score_{unit[0]}er", unit=unit,
                  use_sclite=False)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # one run of $prune_targets and one of $prune_extra_runs (NAME:TARGET:CONFIG)
    args = ["--stage", "16", "--stop_stage", "16", "--prune_targets", "0.5", "--prune_long_targets", "",
            "--prune_extra_runs", "x:0.6:conf/prune.yaml",
            "--student_teacher", "tinyteacher",
            "--seeds", "7 8", "--nj", "1"]
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "decoding data/test with tinyteacher -> exp/teacher_committed/decode_test" in r.stderr
    assert "decoding data/test with exp/student_kd_s7/model" in r.stderr  # the first seed's, missing: decoded

    exp = recipe / "exp"
    names = ["teacher", "student_kd_s7", "narrow_kd", "prune_0.5", "pruned_0.5", "prune_x", "pruned_x"]
    cer = json.loads((exp / "prune_cer.json").read_text())
    assert list(cer) == names
    footprint = json.loads((exp / "prune_footprint.json").read_text())
    rows = {r["name"]: r for r in footprint["rows"]}
    assert list(rows) == names  # float rows only: no peer, int8 or ONNX rows
    assert all(rows[n]["cer"] == cer[n] for n in names)
    assert cer["teacher"] != round(100 / 21, 2)  # the stand-in's score (YET for YES: 1 of 21 characters)
    assert rows["prune_0.5"]["params"] < rows["teacher"]["params"]
    assert (exp / "prune_pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (exp / "RESULTS_prune.md").read_text()
    for n in names:
        assert f"| {n} | {rows[n]['params'] / 1e6:.2f} | {100 * rows[n]['params'] / rows['teacher']['params']:.1f} |" \
            in text
    assert "![CER against parameters and against speed, with the Pareto fronts](prune_pareto.png)" in text
    goals = text.split("## Goals\n", 1)[1].strip().splitlines()
    assert [g[:7] for g in goals] == ["- **(a)", "- **(b)", "- **(c)"]
    assert all(g.endswith(("**met**", "**not met**", "**not measurable**")) for g in goals)
    assert "narrow_kd:" in goals[1]
    assert (exp / "RESULTS_prune_scores.md").is_file() and (exp / "logs" / "info_pruned_0.5.log").is_file()
