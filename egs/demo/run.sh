#!/usr/bin/env bash
# The wav2vec 2.0 compression demo (`make demo`): distil the committed AN4 teacher
# (egs/an4/teacher) into a 4-layer student with grouped convolutions as demo_config.yaml says,
# quantize it to int8, decode and score teacher / student / student-int8, and compare size
# and speed side by side. Runs offline: its speech is synthesised on the spot (piper-tts,
# espeak-ng, flite) in the teacher's domain, and AN4 is used too when it is on disk (db.sh).
#
#   ./run.sh                              # everything -> exp/RESULTS.md, exp/footprint.png
#   ./run.sh --stage 2 --stop_stage 2     # distillation only
#   ./run.sh --force_stages all           # redo everything
#   (a done stage is redone by itself when an option it reads, a file that option names, e.g.
#   demo_config.yaml, or an earlier stage changed since: utils/lib.sh)
#
# Stages (stamps in exp/stages/):
#   1  data: synthetic corpus (db/synth) -> data/synth/*, AN4 -> data/an4/*, data/{train,dev}
#   2  distillation with ESPnet's trainer as demo_config.yaml says (asrc-train --demo_config)
#   3  int8 quantization of the student (asrc-quantize)
#   4  decoding of every test set by teacher, student, student-int8 (asrc-decode)
#   5  scoring (sclite) -> exp/RESULTS.md (+ local/notes.md and this run's differences), exp/wer.json
#   6  footprint: size and speed side by side -> exp/footprint.{md,json,png}, appended to RESULTS.md
set -euo pipefail
cd "$(dirname "$0")"
_recipe_args=${1+$(printf " %q" "$@")}

stage=1
stop_stage=6
force_stages=
nj=2                                   # synthesis and decoding jobs
synth_subsets="train:240,dev:30,test:60"
synth_engines=                         # default: every engine installed (piper, espeak, flite)
use_an4=auto                           # auto: when $AN4 (db.sh) is on disk; true; false
demo_config=demo_config.yaml
teacher=../an4/teacher
train_args=                            # extra asrc-train flags, e.g. "--max_epoch 1"
train_threads=auto                     # torch threads of the training job (auto: the CPUs, at most 4)
bench_args=                            # extra asrc-bench footprint flags, e.g. "--runs 3"

. ./path.sh
. ./cmd.sh
. ./db.sh
. utils/parse_options.sh
. utils/lib.sh
. utils/decode_score.sh

stamps=exp/stages
# Distillation is the demo's one long job and runs alone: give it the machine (path.sh: 1 thread).
if [ "$train_threads" = auto ]; then
    train_threads=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)  # nproc obeys OMP_*
    [ "$train_threads" -gt 4 ] && train_threads=4
fi
[ -f "$teacher/model.pth" ] || die "no teacher at $teacher (egs/an4/run.sh trains it; --teacher DIR takes another)"
if [ "$use_an4" = auto ]; then
    if [ -d "$AN4/wav" ]; then use_an4=true; else use_an4=false; fi
fi

test_sets="synth/test"
[ "$use_an4" = true ] && test_sets="$test_sets an4/test"

if stage_begin 1 "data (synthetic speech$([ "$use_an4" = true ] && echo ' + AN4'))" $stamps; then
    opts=()
    [ -n "$synth_engines" ] && opts+=(--engines "$synth_engines")
    run_logged exp/logs/synth.log asrc-data synth db/synth --subsets "$synth_subsets" --overwrite --nj "$nj" "${opts[@]}"
    run_logged exp/logs/prepare_synth.log asrc-data prepare-librispeech db/synth data/synth --no-combine --nj "$nj"
    train_dirs="data/synth/train"
    dev_dirs="data/synth/dev"
    if [ "$use_an4" = true ]; then
        run_logged exp/logs/prepare_an4.log asrc-data prepare-an4 "$AN4" data/an4
        train_dirs="$train_dirs data/an4/train"
        dev_dirs="$dev_dirs data/an4/dev"
    fi
    # shellcheck disable=SC2086
    run_logged exp/logs/combine_train.log asrc-data combine data/train $train_dirs
    # shellcheck disable=SC2086
    run_logged exp/logs/combine_dev.log asrc-data combine data/dev $dev_dirs
    # shellcheck disable=SC2086
    run_logged exp/logs/validate.log asrc-data validate data/train data/dev $(printf 'data/%s ' $test_sets) \
        --tokens "$teacher/tokens.txt"
    stage_done 1 $stamps
fi

if stage_begin 2 "distillation ($demo_config)" $stamps; then
    fresh_outputs exp/student
    log "log: exp/logs/distill.log (tensorboard --logdir exp/student)"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$train_threads $train_cmd exp/logs/distill.log \
        asrc-train --demo_config "$demo_config" --model_conf "teacher=$teacher" --encoder_conf "init=$teacher" \
            --output_dir exp/student --export_model_dir exp/student/model $train_args
    stage_done 2 $stamps
fi

if stage_begin 3 "int8 quantization" $stamps; then
    run_logged exp/logs/quantize.log asrc-quantize exp/student/model exp/student_int8/model --mode static-pos \
        --calib data/dev --overwrite
    stage_done 3 $stamps
fi

models="teacher=$teacher student=exp/student/model student_int8=exp/student_int8/model"

if stage_begin 4 "decoding ($test_sets)" $stamps; then
    decode_sets "$models" "$test_sets"
    stage_done 4 $stamps
fi

# exp/notes.md: local/notes.md (no figures) + the differences computed from this run's scores.
write_notes() {
    # shellcheck disable=SC2046
    run_logged exp/logs/compare.log local/compare.py --out exp/comparison.md $(results_rows "$models" "$test_sets")
    cat local/notes.md exp/comparison.md > exp/notes.md
}

if stage_begin 5 "scoring -> exp/RESULTS.md" $stamps; then
    score_sets "$models" "$test_sets"
    # shellcheck disable=SC2086
    last_test=$(echo $test_sets | awk '{print $NF}')
    write_notes
    write_results exp/logs/results.log exp/RESULTS.md "$models" "$test_sets" --note exp/notes.md \
        --wer-json exp/wer.json --wer-dataset "${last_test//\//_}"
    stage_done 5 $stamps
fi

if stage_begin 6 "footprint report" $stamps; then
    # shellcheck disable=SC2086
    run_logged exp/logs/footprint.log asrc-bench footprint --teacher "$teacher" --student student=exp/student/model \
        --int8-mode static-pos --calib data/dev --wer exp/wer.json \
        --json exp/footprint.json --markdown exp/footprint.md --plot exp/footprint.png $bench_args
    write_notes
    cat exp/notes.md - > exp/notes_with_footprint.md <<EOF

## Footprint (\`asrc-bench footprint\`, exp/footprint.png)

$(cat exp/footprint.md)
EOF
    write_results exp/logs/results_footprint.log exp/RESULTS.md "$models" "$test_sets" \
        --note exp/notes_with_footprint.md
    stage_done 6 $stamps
fi
[ -f exp/RESULTS.md ] && cat exp/RESULTS.md
log "done: stages $stage..$stop_stage"
