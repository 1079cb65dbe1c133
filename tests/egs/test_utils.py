"""The shell helpers every recipe sources: option parsing and idempotent stages."""

import shutil
import subprocess
from pathlib import Path

UTILS = Path(__file__).resolve().parents[2] / "egs" / "utils"


def run_script(tmp_path, body, *args):
    script = tmp_path / "script.sh"
    script.write_text("#!/usr/bin/env bash\n# Demo script.\nset -e\n" + body)
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=tmp_path)


def test_parse_options_sets_known_variables_and_rejects_unknown(tmp_path):
    body = f"stage=1\nstop_stage=9\nmy_opt=x\n. {UTILS}/parse_options.sh\necho \"$stage|$stop_stage|$my_opt|$*\"\n"
    r = run_script(tmp_path, body, "--stage", "3", "--my-opt", "a b", "--stop_stage=5", "p1", "p2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3|5|a b|p1 p2"
    r = run_script(tmp_path, body, "--HOME", "/x")
    assert r.returncode != 0 and "unknown option --HOME" in r.stderr
    r = run_script(tmp_path, body, "--help")
    assert r.returncode == 0 and "--my-opt x" in r.stdout and "Demo script." in r.stdout
    (tmp_path / "opts.conf").write_text("my_opt=fromfile\n")
    r = run_script(tmp_path, body, "--config", "opts.conf", "--stage", "2")
    assert r.stdout.strip() == "2|9|fromfile|"


def test_stages_are_idempotent_and_failures_show_the_log(tmp_path):
    body = f"""stage=1
stop_stage=100
force_stages=
fail=0
. {UTILS}/parse_options.sh
. {UTILS}/lib.sh
if stage_begin 1 "count" st; then
    run_logged logs/one.log bash -c "echo ran >> counter; [ $fail = 0 ] || {{ echo boom-detail; exit 3; }}"
    stage_done 1 st
fi
"""
    assert run_script(tmp_path, body).returncode == 0
    assert run_script(tmp_path, body).returncode == 0
    assert (tmp_path / "counter").read_text().count("ran") == 1
    assert (tmp_path / "st" / "stage1.resume").read_text().endswith("--stage 1\n")
    r = run_script(tmp_path, body, "--force_stages", "1", "--fail", "1")
    assert r.returncode == 3
    assert "boom-detail" in r.stderr and "logs/one.log" in r.stderr
    assert (tmp_path / "counter").read_text().count("ran") == 2


def test_background_jobs_are_all_awaited_and_failures_named(tmp_path):
    body = f"""set -u
. {UTILS}/lib.sh
bg_job a.log bash -c "sleep 0.3; echo a > a.done"
bg_job b.log bash -c "exit ${{FAIL_B:-0}}"
bg_job c.log bash -c "echo c > c.done"
wait_jobs
echo all-done
"""
    r = run_script(tmp_path, body)
    assert r.returncode == 0 and r.stdout.strip() == "all-done", r.stderr
    (tmp_path / "a.done").unlink()
    r = subprocess.run(["bash", str(tmp_path / "script.sh")], capture_output=True, text=True, cwd=tmp_path,
                       env={"FAIL_B": "2", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "failed: see b.log" in r.stderr and "all-done" not in r.stdout
    assert (tmp_path / "a.done").is_file()  # the slow job was waited for, not abandoned


def test_forced_stage_starts_training_outputs_over(tmp_path):
    body = f"""stage=1
stop_stage=100
force_stages=
. {UTILS}/parse_options.sh
. {UTILS}/lib.sh
if stage_begin 1 "train" st; then
    fresh_outputs exp/run
    mkdir -p exp/run
    echo x >> exp/run/checkpoint
    stage_done 1 st
fi
"""
    # A first run (or one resumed after a kill: no stamp yet) keeps what is there.
    (tmp_path / "exp" / "run").mkdir(parents=True)
    (tmp_path / "exp" / "run" / "checkpoint").write_text("killed\n")
    assert run_script(tmp_path, body).returncode == 0
    assert (tmp_path / "exp" / "run" / "checkpoint").read_text() == "killed\nx\n"
    assert not list((tmp_path / "exp").glob("run.old-*"))
    # Forced: the finished run is moved aside, the stage starts from nothing.
    r = run_script(tmp_path, body, "--force_stages", "1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "exp" / "run" / "checkpoint").read_text() == "x\n"
    old = list((tmp_path / "exp").glob("run.old-*"))
    assert len(old) == 1 and (old[0] / "checkpoint").read_text() == "killed\nx\n"
    assert "the stage starts over" in r.stderr


def test_resume_hint_gives_bash_the_same_arguments(tmp_path):
    """exp/stages/stageN.resume, run by bash, passes every argument back unchanged: paths with
    spaces, options with quotes inside, an empty value; also when run.sh was called by a
    relative path from elsewhere (recipes cd into their own folder)."""
    recipe = tmp_path / "my recipe"
    recipe.mkdir()
    script = recipe / "run.sh"
    script.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")"
_recipe_args=${{1+$(printf ' %q' "$@")}}
stage=1
stop_stage=100
force_stages=
train_args=
data=
empty=x
. {UTILS}/parse_options.sh
. {UTILS}/lib.sh
printf '%s\\n' "$stage" "$train_args" "$data" "$empty" "$@" > "got.$stage"
if stage_begin 2 "two" st; then
    stage_done 2 st
fi
""")
    script.chmod(0o755)
    args = ["--train_args", "--max_epoch 1 --optim_conf \"lr=1e-3\" --tag 'a b'", "--data", "/corpora/my data/x*",
            "--empty", "", "pos 1", "$HOME"]
    r = subprocess.run(["bash", "my recipe/run.sh", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = (recipe / "got.1").read_text().split("\n")
    hint = (recipe / "st" / "stage2.resume").read_text()
    r = subprocess.run(["bash", "-c", hint], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, hint + r.stderr
    assert (recipe / "got.2").read_text().split("\n")[1:] == first[1:]
    assert first[1:6] == ["--max_epoch 1 --optim_conf \"lr=1e-3\" --tag 'a b'", "/corpora/my data/x*", "", "pos 1",
                          "$HOME"]
    # Without arguments (an absolute path to run.sh this time): nothing but --stage.
    shutil.rmtree(recipe / "st")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    hint = (recipe / "st" / "stage2.resume").read_text()
    assert hint.endswith("/my\\ recipe/run.sh --stage 2\n"), hint
    assert subprocess.run(["bash", "-c", hint], cwd="/").returncode == 0
    assert (recipe / "got.2").read_text() == "2\n\n\nx\n"


def test_decode_score_results_loop(tmp_path):
    """utils/decode_score.sh: the commands, output dirs, logs and RESULTS.md rows the recipes had
    written out by hand (asrc-* replaced by stubs that record their arguments)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("asrc-decode", "asrc-score", "asrc-results"):
        (stubs / name).write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "{name} $*" >> "$CALLS"\n')
        (stubs / name).chmod(0o755)
    body = f"""set -u
. {UTILS}/lib.sh
. {UTILS}/decode_score.sh
logged() {{ local logfile=$1; shift; echo "log $logfile" >> "$CALLS"; "$@"; }}
decode_cmd=logged
nj=3
models="teacher=exp/teacher12/model@exp/teacher12 student=exp/student/model"
sets="test=an4_test synth/lj_dev"
decode_sets "$models" "$sets"
score_sets "$models" test=an4_test
decode_args="--threads 2"
decode_sets student=m synth/x
write_results exp/logs/results.log exp/RESULTS.md "$models" "$sets" --note notes.md
"""
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")}
    script = tmp_path / "script.sh"
    script.write_text("#!/usr/bin/env bash\n" + body)
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "log exp/logs/decode_teacher_test.log",
        "asrc-decode --model exp/teacher12/model --data data/test --out exp/teacher12/decode_test --nj 3",
        "log exp/logs/decode_teacher_synth_lj_dev.log",
        "asrc-decode --model exp/teacher12/model --data data/synth/lj_dev --out exp/teacher12/decode_synth_lj_dev --nj 3",
        "log exp/logs/decode_student_test.log",
        "asrc-decode --model exp/student/model --data data/test --out exp/student/decode_test --nj 3",
        "log exp/logs/decode_student_synth_lj_dev.log",
        "asrc-decode --model exp/student/model --data data/synth/lj_dev --out exp/student/decode_synth_lj_dev --nj 3",
        "asrc-score --ref data/test/text --hyp exp/teacher12/decode_test/text --out exp/teacher12/decode_test "
        "--utt2spk data/test/utt2spk --cer",
        "asrc-score --ref data/test/text --hyp exp/student/decode_test/text --out exp/student/decode_test "
        "--utt2spk data/test/utt2spk --cer",
        "log exp/logs/decode_student_synth_x.log",
        "asrc-decode --model m --data data/synth/x --out exp/student/decode_synth_x --nj 3 --threads 2",
        "asrc-results --out exp/RESULTS.md --row teacher an4_test exp/teacher12/decode_test "
        "--row teacher synth_lj_dev exp/teacher12/decode_synth_lj_dev --row student an4_test exp/student/decode_test "
        "--row student synth_lj_dev exp/student/decode_synth_lj_dev --note notes.md",
    ]
    assert (tmp_path / "exp" / "logs" / "score_student_test.log").is_file()


def test_decode_score_missing_reuses_scored_decode_dirs(tmp_path):
    """decode_score_missing decodes and scores only the model/set pairs without a CER score."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("asrc-decode", "asrc-score"):
        (stubs / name).write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "{name} $*" >> "$CALLS"\n')
        (stubs / name).chmod(0o755)
    (tmp_path / "exp" / "teacher_committed" / "decode_test" / "score_cer").mkdir(parents=True)
    (tmp_path / "exp" / "teacher_committed" / "decode_test" / "score_cer" / "score.json").write_text("{}")
    body = f"""set -eu
. {UTILS}/lib.sh
. {UTILS}/decode_score.sh
logged() {{ shift; "$@"; }}
decode_cmd=logged
nj=1
decode_score_missing "teacher=../teacher@exp/teacher_committed kd=exp/kd/model" test
"""
    script = tmp_path / "script.sh"
    script.write_text("#!/usr/bin/env bash\n" + body)
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")})
    assert r.returncode == 0, r.stderr
    assert "exp/teacher_committed/decode_test: scored already, reused" in r.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "asrc-decode --model exp/kd/model --data data/test --out exp/kd/decode_test --nj 1",
        "asrc-score --ref data/test/text --hyp exp/kd/decode_test/text --out exp/kd/decode_test "
        "--utt2spk data/test/utt2spk --cer"]
