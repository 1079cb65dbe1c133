"""egs/an4/local/prune_results.py: the pruning experiment's table and goal lines, every figure
from a synthetic footprint JSON and decode dirs scored by asrc's own scorer."""

import json
from pathlib import Path

import pytest
from recipe_copy import load_local_script

from asrc.score.scorer import score_dir

# The test set: 67 two-letter words, 200 characters with the spaces, so every character an
# utterance gets wrong is 0.5 CER points (and one word, 1/67 of the WER).
WORDS = [chr(65 + i % 26) + chr(65 + i // 26) for i in range(67)]
REF = " ".join(WORDS)


@pytest.fixture(scope="module")
def prune_results():
    return load_local_script("prune_results")


def decode_dir(path: Path, cer: float) -> Path:
    """A decode dir whose CER on REF is ``cer`` %: one wrong character in each of the first words."""
    wrong = round(cer * 2)
    assert wrong == cer * 2 <= len(WORDS)
    hyp = " ".join(w[0] + "Z" if i < wrong else w for i, w in enumerate(WORDS))
    score_dir({"u1": REF}, {"u1": hyp}, path / "score_wer", use_sclite=False)
    score_dir({"u1": REF}, {"u1": hyp}, path / "score_cer", unit="char", use_sclite=False)
    return path


def setup(tmp_path, models, plot=True):
    """``models``: {name: (parameters in M, CER %)} -> (footprint JSON, --row arguments)."""
    rows, argv = [], []
    for i, (name, (mparams, cer)) in enumerate(models.items()):
        rows.append({"name": name, "runtime": "asrc", "precision": "fp32", "params": int(mparams * 1e6),
                     "mb": mparams * 4.0, "macs": 1, "latency": 0.1 * mparams / 100 + 0.001 * i,
                     "rtf": 0.01 * mparams / 100 + 0.0001 * i, "wer": None, "cer": cer})
        if cer is not None:
            argv += ["--row", name, "test", str(decode_dir(tmp_path / name / "decode_test", cer))]
    env = {"date": "2026-01-01 00:00:00", "cpu": "Test CPU", "threads": 2, "input_seconds": 10.0, "runs": 5,
           "load_average_before": "1.0 1.0 1.0"}
    (tmp_path / "fp.json").write_text(json.dumps({"environment": env, "rows": rows}))
    argv += ["--footprint", str(tmp_path / "fp.json"), "--out", str(tmp_path / "exp" / "RESULTS_prune.md")]
    if plot:
        (tmp_path / "fp.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        argv += ["--plot", str(tmp_path / "fp.png")]
    return argv


def goals(text: str) -> dict:
    lines = text.split("## Goals\n", 1)[1].strip().splitlines()
    return {line[4:7]: line for line in lines}


def test_goals_met_at_their_boundaries(tmp_path, prune_results, capsys):
    argv = setup(tmp_path, {"teacher": (100, 10.0), "student_kd_s42": (40, 20.0), "narrow_kd": (30, 15.0),
                            "prune_0.6": (41, 18.5), "pruned_0.6": (39, 19.0), "pruned_0.7": (31, 11.0)})
    assert prune_results.main(argv + ["--layer-dropped", "student_kd_s42", "--narrow", "narrow_kd",
                                      "--pruned", "prune_0.6", "pruned_0.6", "pruned_0.7"]) == 0
    text = (tmp_path / "exp" / "RESULTS_prune.md").read_text()
    assert capsys.readouterr().out == text
    assert "| model | params (M) | % of teacher params | MB | latency (ms) | RTF | WER % | CER % |" in text
    assert "| teacher | 100.00 | 100.0 | 400.0 | 100.0 | 0.0100 | 29.85 | 10.00 |" in text  # 20 of 67 words
    assert "| pruned_0.7 | 31.00 | 31.0 | 124.0 | 36.0 | 0.0036 | 32.84 | 11.00 |" in text
    assert "![CER against parameters and against speed, with the Pareto fronts](../fp.png)" in text
    assert "WER and CER on test (1 utterance, 67 words, 200 characters, one is 0.5 CER points)." in text
    assert "on Test CPU, 2 threads, 10 s input, median latency of 5 interleaved runs" in text
    g = goals(text)
    # (a) window 38-42 M: prune_0.6 (18.5) and pruned_0.6 (19.0); 20.0 - 18.5 = 1.5 exactly
    assert g["(a)"].endswith("prune_0.6 (41.00 M, CER 18.50 %, the best of 2 in the window) is 1.50 points better "
                             "(goal: at least 1.5 better) — **met**"), g["(a)"]
    assert "window ±5 %: 38.00-42.00 M" in g["(a)"]
    # (b) window 28.5-31.5 M: pruned_0.7, 15.0 - 11.0
    assert g["(b)"].endswith("pruned_0.7 (31.00 M, CER 11.00 %) is 4.00 points better (goal: at least 2 better) "
                             "— **met**"), g["(b)"]
    # (c) 30 M: pruned_0.7 is nearest, 11.0 vs 10.0 = 10 % above
    assert "30 % of it: 30.00 M, window ±5 %: 28.50-31.50 M" in g["(c)"]
    assert g["(c)"].endswith("pruned_0.7 (31.00 M, 31.0 % of the teacher's), CER 11.00 %: 10.0 % above the "
                             "teacher's (goal: at most 10 % above) — **met**"), g["(c)"]


def test_goals_not_met_and_not_measurable(tmp_path, prune_results):
    argv = setup(tmp_path, {"teacher": (100, 10.0), "student_kd_s42": (40, 20.0), "prune_0.6": (41.5, 19.5),
                            "pruned_0.6": (41.5, 19.0), "pruned_0.7": (29, 11.5)}, plot=False)
    assert prune_results.main(argv + ["--layer-dropped", "student_kd_s42", "--pruned", "prune_0.6", "pruned_0.6",
                                      "pruned_0.7"]) == 0
    text = (tmp_path / "exp" / "RESULTS_prune.md").read_text()
    g = goals(text)
    assert g["(a)"].endswith("is 1.00 points better (goal: at least 1.5 better) — **not met**"), g["(a)"]
    assert g["(b)"].endswith("no narrow student in this run — **not measurable**"), g["(b)"]
    assert g["(c)"].endswith("CER 11.50 %: 15.0 % above the teacher's (goal: at most 10 % above) — **not met**")
    assert "![" not in text and "narrow student:" not in text

    # Nothing within 5 %: the 4-layer student's window is 38-42 M, 30 % of the teacher 28.5-31.5 M.
    argv = setup(tmp_path, {"teacher": (100, 10.0), "student_kd_s42": (40, 20.0), "narrow_kd": (30, 15.0),
                            "pruned_0.5": (50, 12.0), "pruned_0.85": (15, 30.0)})
    assert prune_results.main(argv + ["--layer-dropped", "student_kd_s42", "--narrow", "narrow_kd",
                                      "--pruned", "pruned_0.5", "pruned_0.85"]) == 0
    g = goals((tmp_path / "exp" / "RESULTS_prune.md").read_text())
    assert g["(a)"].endswith("no pruned student with a CER in the window — **not measurable**"), g["(a)"]
    assert g["(b)"].endswith("no pruned student with a CER in the window — **not measurable**"), g["(b)"]
    assert g["(c)"].endswith("the nearest pruned student, pruned_0.85 (15.00 M, 15.0 % of the teacher's), is "
                             "outside the window — **not measurable**"), g["(c)"]
    # A wider window (--tolerance 0.25: 30-50 M) takes pruned_0.5 into (a)'s: 20.0 - 12.0 = 8 points.
    assert prune_results.main(argv + ["--layer-dropped", "student_kd_s42", "--pruned", "pruned_0.5",
                                      "--tolerance", "0.25"]) == 0
    g = goals((tmp_path / "exp" / "RESULTS_prune.md").read_text())
    assert g["(a)"].endswith("pruned_0.5 (50.00 M, CER 12.00 %) is 8.00 points better (goal: at least 1.5 better) "
                             "— **met**"), g["(a)"]


def test_goal_c_met_by_a_smaller_student(tmp_path, prune_results):
    """(c): the student in the window misses the limit, a smaller one within it meets the goal
    (it dominates); the smaller one must itself be within the limit."""
    argv = setup(tmp_path, {"teacher": (100, 10.0), "pruned_0.7": (31, 12.0), "pruned_long_0.7": (27, 10.5),
                            "pruned_0.85": (20, 11.5)}, plot=False)
    assert prune_results.main(argv + ["--pruned", "pruned_0.7", "pruned_long_0.7", "pruned_0.85"]) == 0
    g = goals((tmp_path / "exp" / "RESULTS_prune.md").read_text())
    assert g["(c)"].endswith(
        "pruned_0.7 (31.00 M, 31.0 % of the teacher's), CER 12.00 %: 20.0 % above the teacher's (goal: at most "
        "10 % above); with fewer parameters, pruned_long_0.7 (27.00 M, 27.0 % of the teacher's), CER 10.50 %: "
        "5.0 % above the teacher's (goal: at most 10 % above; smaller and within it) — **met**"), g["(c)"]
    # nothing in the window: the smaller one alone
    argv = setup(tmp_path, {"teacher": (100, 10.0), "pruned_long_0.7": (27, 9.5)}, plot=False)
    assert prune_results.main(argv + ["--pruned", "pruned_long_0.7"]) == 0
    g = goals((tmp_path / "exp" / "RESULTS_prune.md").read_text())
    assert "is outside the window; with fewer parameters, pruned_long_0.7" in g["(c)"]
    assert g["(c)"].endswith("5.0 % below the teacher's (goal: at most 10 % above; smaller and within it) — **met**")
    # the smaller one over the limit too: not met
    argv = setup(tmp_path, {"teacher": (100, 10.0), "pruned_0.7": (31, 12.0), "pruned_0.85": (20, 11.5)},
                 plot=False)
    assert prune_results.main(argv + ["--pruned", "pruned_0.7", "pruned_0.85"]) == 0
    g = goals((tmp_path / "exp" / "RESULTS_prune.md").read_text())
    assert g["(c)"].endswith("(goal: at most 10 % above) — **not met**"), g["(c)"]


def test_user_errors_are_one_line(tmp_path, prune_results, capsys):
    argv = setup(tmp_path, {"teacher": (100, 10.0), "pruned_0.7": (30, 11.0)})
    assert prune_results.main(argv + ["--pruned", "pruned_0.9"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prune_results.py: error: --pruned pruned_0.9: no such row") and "\n" not in err
    # The footprint JSON's CER must be this run's score.
    data = json.loads((tmp_path / "fp.json").read_text())
    data["rows"][1]["cer"] = 12.0
    (tmp_path / "fp.json").write_text(json.dumps(data))
    assert prune_results.main(argv + ["--pruned", "pruned_0.7"]) == 1
    err = capsys.readouterr().err.strip()
    assert "CER of pruned_0.7 is 12.0, its decode dir's score 11.00: not the same run" in err and "\n" not in err
    # ... and its decode dir the decoding of the same model (asrc-decode's rtf.json).
    data["rows"][1]["cer"] = None
    (tmp_path / "fp.json").write_text(json.dumps(data))
    (tmp_path / "pruned_0.7" / "decode_test" / "rtf.json").write_text(json.dumps({"model": {"params": 29_000_000}}))
    assert prune_results.main(argv + ["--pruned", "pruned_0.7"]) == 1
    assert capsys.readouterr().err.strip() == (
        "prune_results.py: error: pruned_0.7: its decode dir was made by a model of 29000000 parameters, its "
        "footprint row has 30000000: not the same model (decode it again)")
    (tmp_path / "pruned_0.7" / "decode_test" / "rtf.json").write_text(json.dumps({"model": {"params": 30_000_000}}))
    assert prune_results.main(argv + ["--pruned", "pruned_0.7"]) == 0
    capsys.readouterr()
    (tmp_path / "fp.json").write_text("[]")
    assert prune_results.main(argv + ["--pruned", "pruned_0.7"]) == 1
    assert capsys.readouterr().err.startswith("prune_results.py: error: ")
    with pytest.raises(SystemExit) as e:
        prune_results.main(argv + ["--pruned", "pruned_0.7", "--tolerance", "nan"])
    assert e.value.code == 2 and "--tolerance: 'nan' is not a share in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        prune_results.main(["--help"])
    assert e.value.code == 0 and "--layer-dropped" in capsys.readouterr().out
