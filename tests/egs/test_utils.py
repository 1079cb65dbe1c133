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
    stages = """printf '%s\\n' "$stage" "$train_args" "$data" "$empty" "$@" > "got.$stage"
if stage_begin 2 "two" st; then
    stage_done 2 st
fi
"""
    recipe = _recipe(tmp_path, stages, options="train_args=\ndata=\nempty=x\n", name="my recipe")
    script = recipe / "run.sh"
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


def test_decode_score_missing_decodes_again_through_asrc_decode(tmp_path):
    """decode_score_missing reused any decode dir with a CER score, whatever model had made it
    (the audit: stage 16's teacher row came from stage 10's teacher whatever --student_teacher
    said). It now calls asrc-decode for every pair (which reuses its jobs only where model,
    audio and options are the same, tests/decode) and scores the result."""
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
    assert "exp/teacher_committed/decode_test: decoded and scored before" in r.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "asrc-decode --model ../teacher --data data/test --out exp/teacher_committed/decode_test --nj 1",
        "asrc-score --ref data/test/text --hyp exp/teacher_committed/decode_test/text "
        "--out exp/teacher_committed/decode_test --utt2spk data/test/utt2spk --cer",
        "asrc-decode --model exp/kd/model --data data/test --out exp/kd/decode_test --nj 1",
        "asrc-score --ref data/test/text --hyp exp/kd/decode_test/text --out exp/kd/decode_test "
        "--utt2spk data/test/utt2spk --cer"]


def _recipe(tmp_path, stages: str, options: str = "", name: str = "r"):
    """A recipe in tmp_path/NAME/run.sh with the usual header, ``options`` and ``stages``."""
    recipe = tmp_path / name
    recipe.mkdir(exist_ok=True)
    script = recipe / "run.sh"
    script.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")"
_recipe_args=${{1+$(printf ' %q' "$@")}}
stage=1
stop_stage=100
force_stages=
nj=1
{options}
. {UTILS}/parse_options.sh
. {UTILS}/lib.sh
{stages}
""")
    script.chmod(0o755)
    return recipe


def _run(recipe, *args):
    return subprocess.run(["bash", str(recipe / "run.sh"), *args], capture_output=True, text=True, cwd=recipe)


STAGES = """
out=out_$lr
if stage_begin 1 "data ($size)" st; then
    echo "$size" > data.txt; echo 1 >> ran; stage_done 1 st
fi
if stage_begin 2 "train" st; then
    echo "$(cat data.txt) $lr $(cat "$conf")" > "$out"; echo 2 >> ran; stage_done 2 st
fi
if stage_begin 3 "score" st; then
    cat "$out" > result; echo 3 >> ran; stage_done 3 st
fi
if stage_begin 4 "report" st "1"; then
    echo "$size $tag $(cat "$model/model.pth")" > report; echo 4 >> ran; stage_done 4 st
fi
"""
OPTIONS = "size=10\nlr=0.1\nconf=a.yaml\ntag=x\nmodel=m\n"


def _ran(recipe):
    path = recipe / "ran"
    text = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return text


def test_a_done_stage_is_redone_when_what_it_reads_changed(tmp_path):
    """The audit's stale outputs with exit 0: another option, an edited config file, an earlier
    stage redone. Each redoes the stages that read it, and those after them, and no other."""
    recipe = _recipe(tmp_path, STAGES, OPTIONS)
    (recipe / "a.yaml").write_text("v1\n")
    (recipe / "m").mkdir()
    (recipe / "m" / "model.pth").write_text("w1")  # a model folder without config.yaml
    assert _run(recipe).returncode == 0 and _ran(recipe) == ["1", "2", "3", "4"]
    r = _run(recipe)
    assert r.returncode == 0 and _ran(recipe) == [] and "already done" in r.stderr
    # An option only stage 2 reads (through $out too): 2 and the stages after it that depend on it.
    r = _run(recipe, "--lr", "0.2")
    assert r.returncode == 0, r.stderr
    assert _ran(recipe) == ["2", "3"] and (recipe / "result").read_text() == "10 0.2 v1\n"
    assert "stage 2: out of date, redone: its inputs changed" in r.stderr and "lr=0.1" in r.stderr
    # An option of stage 4 alone (declared to depend on stage 1 only).
    assert _run(recipe, "--lr", "0.2", "--tag", "y").returncode == 0 and _ran(recipe) == ["4"]
    # The weights in a model folder an option names.
    (recipe / "m" / "model.pth").write_text("w2")
    r = _run(recipe, "--lr", "0.2", "--tag", "y")
    assert r.returncode == 0 and _ran(recipe) == ["4"] and "m/model.pth" in r.stderr
    # The config file a stage's option names, edited.
    (recipe / "a.yaml").write_text("v2\n")
    r = _run(recipe, "--lr", "0.2", "--tag", "y")
    assert r.returncode == 0 and _ran(recipe) == ["2", "3"] and "a.yaml" in r.stderr
    assert (recipe / "result").read_text() == "10 0.2 v2\n"
    # An earlier stage forced: every stage that depends on it follows.
    r = _run(recipe, "--lr", "0.2", "--tag", "y", "--force_stages", "1")
    assert _ran(recipe) == ["1", "2", "3", "4"] and "stage 1, which it depends on, has been redone" in r.stderr
    # Forced alone in one run, the later stages catch up in the next.
    assert _run(recipe, "--lr", "0.2", "--tag", "y", "--force_stages", "1", "--stop_stage", "1").returncode == 0
    assert _ran(recipe) == ["1"]
    assert _run(recipe, "--lr", "0.2", "--tag", "y", "--stage", "3").returncode == 0
    # 3 and 4 depend on stage 1, redone since; 2 is outside the range asked for
    assert _ran(recipe) == ["3", "4"]
    assert (recipe / "result").read_text() == "10 0.2 v2\n"


def test_a_stage_that_did_not_finish_is_not_done(tmp_path):
    """A forced stage that fails (or is killed) loses its stamp when it starts: the next plain
    run redoes it, where it used to say 'already done' over missing outputs."""
    stages = """
if stage_begin 1 "train" st; then
    rm -f model; [ "$fail" = 0 ] || exit 3; echo m > model; stage_done 1 st
fi
"""
    recipe = _recipe(tmp_path, stages, "fail=0\n")
    assert _run(recipe).returncode == 0 and (recipe / "model").exists()
    assert _run(recipe, "--force_stages", "1", "--fail", "1").returncode == 3
    assert not (recipe / "st" / "stage1.done").exists()
    r = _run(recipe)
    assert r.returncode == 0 and (recipe / "model").exists() and "already done" not in r.stderr


def test_stage_options_are_checked(tmp_path):
    recipe = _recipe(tmp_path, 'if stage_begin 1 "one" st; then stage_done 1 st; fi\n')
    for args, message in ((["--stage", "foo"], "--stage takes a number, got 'foo'"),
                          (["--stop_stage", "x"], "--stop_stage takes a number, got 'x'"),
                          (["--stage", "2.5"], "--stage 2.5: not a stage number"),
                          (["--stage", "5", "--stop_stage", "3"], "--stop_stage 3 is before --stage 5"),
                          (["--force_stages", "3,4"], "--force_stages '3,4'"),
                          (["--force_stages", "ALL"], "--force_stages 'ALL'")):
        r = _run(recipe, *args)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    assert _run(recipe, "--force_stages", "all").returncode == 0


def test_the_resume_command_runs_again_and_resumes(tmp_path):
    """stageN.resume ran with exit 127 after a successful run (bash read the file while the
    recipe rewrote it) and kept --force_stages (a resumed stage started over)."""
    recipe = _recipe(tmp_path, 'if stage_begin 1 "one" st; then stage_done 1 st; fi\n'
                               'if stage_begin 2 "two" st; then stage_done 2 st; fi\n')
    assert _run(recipe, "--stage", "1", "--force_stages", "2", "--nj", "3").returncode == 0
    hint = (recipe / "st" / "stage2.resume").read_text()
    assert "--force_stages" not in hint and hint.count("--stage") == 1 and "--nj 3" in hint
    r = subprocess.run(["bash", str(recipe / "st" / "stage2.resume")], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert (recipe / "st" / "stage2.resume").read_text() == hint


def test_stopping_the_recipe_stops_its_background_jobs(tmp_path):
    import os
    import signal
    import time

    body = f"""set -u
. {UTILS}/lib.sh
bg_job a.log bash -c 'echo $$ > child.pid; sleep 60; echo late > late'
wait_jobs
"""
    script = tmp_path / "script.sh"
    script.write_text("#!/usr/bin/env bash\n" + body)
    p = subprocess.Popen(["bash", str(script)], cwd=tmp_path)
    for _ in range(100):
        if (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip():
            break
        time.sleep(0.05)
    child = int((tmp_path / "child.pid").read_text())
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the background job outlived the recipe")


def test_boolean_and_numeric_options_take_values_of_their_kind(tmp_path):
    """--update_teacher yes and --an4_repeats two were taken as false and 0, exit 0."""
    body = f"flag=false\ncount=4\nratio=-1.5\nname=x\n. {UTILS}/parse_options.sh\necho \"$flag $count $ratio $name\"\n"
    r = run_script(tmp_path, body, "--flag", "true", "--count", "12", "--ratio", "0.25", "--name", "7")
    assert r.returncode == 0 and r.stdout.strip() == "true 12 0.25 7", r.stderr
    for args, message in ((["--flag", "yes"], "option --flag takes true or false, got 'yes'"),
                          (["--count", "two"], "option --count takes a number, got 'two'"),
                          (["--ratio", ""], "option --ratio takes a number")):
        r = run_script(tmp_path, body, *args)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)


def test_a_missing_config_file_stops_a_redone_stage_before_its_outputs_are_moved(tmp_path):
    """--force_stages 2 --demo_config typo.yaml moved exp/student aside, then failed."""
    stages = """
if stage_begin 1 "train" st; then
    fresh_outputs exp/run
    mkdir -p exp/run; cat "$conf" > exp/run/model; stage_done 1 st
fi
"""
    recipe = _recipe(tmp_path, stages, "conf=a.yaml\n")
    (recipe / "a.yaml").write_text("x\n")
    assert _run(recipe).returncode == 0
    r = _run(recipe, "--force_stages", "1", "--conf", "typo.yaml")
    assert r.returncode == 1 and "--conf typo.yaml: no such file (stage 1 not started; nothing was moved)" in r.stderr
    assert (recipe / "exp" / "run" / "model").read_text() == "x\n" and not list((recipe / "exp").glob("run.old-*"))
