#!/usr/bin/env bash
# AN4 (CMU census, real speech): trains the small raw-waveform wav2vec 2.0 CTC teacher that
# the compression demo starts from, then decodes and scores it.
#
#   ./run.sh                          # all stages
#   ./run.sh --stage 4 --stop_stage 6 # retrain the teacher, decode, score
#   ./run.sh --force_stages "4"       # redo a finished stage (stamps in exp/stages/)
#
# Stages:
#   1  AN4 -> data/{train,dev,test} (downloads the corpus when $AN4 from db.sh is missing)
#   2  letter token list data/tokens.txt (fairseq dict.ltr.txt order, 32 tokens)
#   3  front-end warm start: CNN + projection regress 80-dim log-mel (asrc-frontend-init)
#   4  CTC training of the teacher with ESPnet's trainer (asrc-train), 15 epochs -> exp/teacher/model
#   5  second pass: 10 more epochs from that model -> exp/teacher_continue/model
#   6  greedy CTC decoding of data/test (asrc-decode)
#   7  scoring (asrc-score, sclite when installed) -> exp/teacher_continue/RESULTS.md
#   8  (only with --update_teacher true) replace the committed teacher in teacher/
#      with exp/teacher_continue/model
#   9  the distillation experiment, from the committed teacher/ ($student_teacher): the
#      demo's student (4 layers, conv_groups 2; ../demo/demo_config.yaml) distilled, and the
#      same student trained with CTC alone for the same updates, side by side
#   10 int8 quantization of the distilled student
#   11 decoding + scoring of data/test by teacher and students -> exp/RESULTS.md
#   ./run.sh --stage 1 --stop_stage 2 && ./run.sh --stage 9   # the experiment alone
# Why stage 3 exists and what each option bought: RESULTS.md in this folder.
set -euo pipefail
cd "$(dirname "$0")"
_recipe_args="$*"

stage=1
stop_stage=11
update_teacher=false                       # stage 8: overwrite teacher/ with the new teacher
student_teacher=teacher                    # stages 9-11: the teacher the students learn from
student_config=../demo/demo_config.yaml    # stages 9-11: the student and its schedule
student_args=                              # extra asrc-train flags for stage 9
force_stages=
nj=2                                       # decoding jobs
train_config=conf/train_teacher.yaml       # ESPnet options of stage 4
continue_config=conf/train_teacher_continue.yaml  # ESPnet options of stage 5
model_config=conf/teacher_model.yaml       # architecture (Wav2Vec2Config) built in stage 3
frontend_init_steps=240                    # stage 3 regression steps
pass1_exp=exp/teacher
teacher_exp=exp/teacher_continue           # the final teacher's experiment
train_args=                                # extra asrc-train flags, e.g. "--max_epoch 2"

. ./path.sh
. ./cmd.sh
. ./db.sh
. utils/parse_options.sh
. utils/lib.sh

stamps=exp/stages

if stage_begin 1 "data preparation" $stamps; then
    if [ ! -d "$AN4/wav" ]; then
        log "AN4 not found at $AN4: downloading"
        run_logged exp/logs/download_an4.log asrc-data download-an4 downloads
        AN4=downloads/an4
    fi
    run_logged exp/logs/prepare_an4.log asrc-data prepare-an4 "$AN4" data
    run_logged exp/logs/validate_data.log asrc-data validate data/train data/dev data/test
    stage_done 1 $stamps
fi

if stage_begin 2 "token list" $stamps; then
    run_logged exp/logs/tokens.log asrc-data tokens data/tokens.txt --type letter
    stage_done 2 $stamps
fi

init_dir=exp/teacher_frontend_init

if stage_begin 3 "front-end warm start on log-mel ($frontend_init_steps steps)" $stamps; then
    log "log: exp/logs/frontend_init.log"
    $train_cmd exp/logs/frontend_init.log \
        python -m asrc.bin.frontend_init --config "$model_config" --tokens data/tokens.txt \
            --data-dir data/train --steps "$frontend_init_steps" --out "$init_dir"
    stage_done 3 $stamps
fi

if stage_begin 4 "teacher CTC training (ESPnet trainer)" $stamps; then
    log "log: exp/logs/train_teacher.log (and $pass1_exp/train.log; tensorboard --logdir $pass1_exp)"
    # shellcheck disable=SC2086
    $train_cmd exp/logs/train_teacher.log \
        asrc-train --config "$train_config" --encoder_conf "init=$init_dir" \
            --train_data_dir data/train --valid_data_dir data/dev --token_list data/tokens.txt \
            --output_dir "$pass1_exp" --export_model_dir "$pass1_exp/model" --export_checkpoint valid.cer.ave.pth \
            $train_args
    stage_done 4 $stamps
fi

if stage_begin 5 "teacher CTC training, second pass" $stamps; then
    log "log: exp/logs/train_teacher_continue.log (and $teacher_exp/train.log)"
    # shellcheck disable=SC2086
    $train_cmd exp/logs/train_teacher_continue.log \
        asrc-train --config "$continue_config" --encoder_conf "init=$pass1_exp/model" \
            --train_data_dir data/train --valid_data_dir data/dev --token_list data/tokens.txt \
            --output_dir "$teacher_exp" --export_model_dir "$teacher_exp/model" --export_checkpoint valid.cer.ave.pth \
            $train_args
    stage_done 5 $stamps
fi

if stage_begin 6 "decoding data/test" $stamps; then
    log "log: exp/logs/decode_teacher_test.log"
    $decode_cmd exp/logs/decode_teacher_test.log \
        asrc-decode --model "$teacher_exp/model" --data data/test --out "$teacher_exp/decode_test" --nj "$nj"
    stage_done 6 $stamps
fi

if stage_begin 7 "scoring" $stamps; then
    run_logged exp/logs/score_teacher_test.log asrc-score --ref data/test/text \
        --hyp "$teacher_exp/decode_test/text" --out "$teacher_exp/decode_test" --utt2spk data/test/utt2spk --cer
    run_logged exp/logs/results_teacher.log python local/teacher_results.py "$teacher_exp"
    stage_done 7 $stamps
fi
if [ "$update_teacher" = true ] && stage_begin 8 "replace the committed teacher/ with $teacher_exp/model" $stamps; then
    mkdir -p teacher
    for f in config.yaml model.pth tokens.txt; do
        cp "$teacher_exp/model/$f" "teacher/$f"
    done
    log "teacher/ updated; put $teacher_exp/RESULTS.md and the curve into teacher/RESULTS.md"
    stage_done 8 $stamps
fi

# ---- the distillation experiment: distilled vs CTC-only student, same student, same updates ----
students="student_kd student_ctc"

if stage_begin 9 "students: distillation and the CTC-only baseline (in parallel)" $stamps; then
    # Both runs start from the same every_k initialisation of the teacher, with the same
    # schedule ($student_config: max_epoch x num_iters_per_epoch updates); only the loss differs.
    log "logs: exp/logs/train_student_kd.log, exp/logs/train_student_ctc.log (tensorboard --logdir exp)"
    # shellcheck disable=SC2086
    $train_cmd exp/logs/train_student_kd.log \
        asrc-train --demo_config "$student_config" --model_conf "teacher=$student_teacher" \
            --encoder_conf "init=$student_teacher" --output_dir exp/student_kd \
            --export_model_dir exp/student_kd/model --export_checkpoint valid.cer.ave.pth $student_args &
    kd_pid=$!
    # shellcheck disable=SC2086
    $train_cmd exp/logs/train_student_ctc.log \
        asrc-train --demo_config "$student_config" --ctc_only \
            --encoder_conf "init=$student_teacher" --output_dir exp/student_ctc \
            --export_model_dir exp/student_ctc/model --export_checkpoint valid.cer.ave.pth $student_args &
    ctc_pid=$!
    wait $kd_pid || die "distillation failed (exp/logs/train_student_kd.log)"
    wait $ctc_pid || die "CTC-only training failed (exp/logs/train_student_ctc.log)"
    stage_done 9 $stamps
fi

if stage_begin 10 "int8 quantization of the distilled student" $stamps; then
    run_logged exp/logs/quantize.log asrc-quantize exp/student_kd/model exp/student_kd_int8/model \
        --mode static-pos --calib data/dev --overwrite
    stage_done 10 $stamps
fi

if stage_begin 11 "decoding and scoring data/test -> exp/RESULTS.md" $stamps; then
    rows=()
    for m in teacher_committed $students student_kd_int8; do
        model=exp/$m/model
        [ $m = teacher_committed ] && model=$student_teacher
        $decode_cmd exp/logs/decode_${m}_test.log \
            asrc-decode --model "$model" --data data/test --out exp/$m/decode_test --nj "$nj"
        run_logged exp/logs/score_${m}_test.log asrc-score --ref data/test/text --hyp exp/$m/decode_test/text \
            --out exp/$m/decode_test --utt2spk data/test/utt2spk --cer
        rows+=(--row "$m" test "exp/$m/decode_test")
    done
    run_logged exp/logs/results.log asrc-results --out exp/RESULTS.md "${rows[@]}" --note local/experiment_notes.md
    cat exp/RESULTS.md
    stage_done 11 $stamps
fi
log "done: stages $stage..$stop_stage"

