#!/usr/bin/env bash
# LibriSpeech 960 h: import a fine-tuned wav2vec 2.0 teacher, distil a 4-layer grouped-conv
# student, quantize it to int8, decode and score teacher / student / student-int8, report
# size and speed side by side, and pack the student.
#
#   TEACHER=/models/wav2vec2-base-960h ./run.sh                 # everything
#   ./run.sh --stage 6 --stop_stage 6 --ngpu 4                   # distillation only, 4 GPUs
#   ./run.sh --force_stages "8 9"                                # redo finished stages
#   (a done stage is also redone when an option it reads, a file that option names or an
#   earlier stage changed since: utils/lib.sh)
#   tensorboard --logdir exp                                     # watch training
#
# Stages (stamps in exp/stages/; each writes the command that resumes it beside the stamp):
#   1  download the subsets (resumable, md5-checked); subsets already extracted under $LIBRISPEECH
#      (db.sh) are used as they are
#   2  Kaldi-style data dirs data/<subset> (+ train_960, dev) and validation
#   3  training/validation sets: combine $train_subsets / $valid_subsets
#   4  letter token list (fairseq dict.ltr.txt order) and a check of every transcript
#   5  teacher: convert $TEACHER (asrc-convert), optionally fine-tune it (--teacher_finetune true)
#   6  distillation into the student of $student_spec (a student spec) with ESPnet's trainer
#      (asrc-train, conf/distill.yaml); a student with init.from random (conf/student_narrow.yaml)
#      first gets a front-end warm start on the teacher's features;
#      with --student_method prune: structured pruning of a copy of the teacher while distilling
#      (conf/prune.yaml -> the dense model exp/student_pruned/model), then the final distillation
#      of that model (conf/prune_final_distill.yaml -> exp/student/model)
#   7  int8 quantization of the student (asrc-quantize)
#   8  decoding of $test_sets by teacher, student and student-int8 (asrc-decode); with --lm
#      (an ARPA word LM: URL or file, .gz too, e.g. openslr's 4-gram, fetched into exp/lm by
#      asrc-data download-lm) also beam search with it and the lexicon of its words, LM weight
#      $lm_weight and word score $lm_word_score (models <name>_lm)
#   9  scoring (sclite) -> exp/RESULTS.md
#   10 footprint: size/speed/WER side by side (asrc-bench footprint) -> exp/footprint.{md,json,png}
#   11 pack the student: exp/student_pack.zip (config, model, tokens, RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")"
_recipe_args=${1+$(printf ' %q' "$@")}   # the command line, quoted (utils/lib.sh)

stage=1
stop_stage=11
force_stages=
subsets="train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other"
train_subsets="train_clean_100 train_clean_360 train_other_500"
valid_subsets="dev_clean dev_other"
test_sets="dev_clean dev_other test_clean test_other"
nj=4                                # data preparation and decoding jobs
decode_threads=1                    # torch threads per decoding job
ngpu=0                              # GPUs for training (more than one: ESPnet's distributed training)
teacher_finetune=false              # stage 5: CTC fine-tuning of the imported teacher
finetune_config=conf/finetune_teacher.yaml
distill_config=conf/distill.yaml
student_spec=conf/student.yaml      # the student spec; conf/student_narrow.yaml (with conf/distill_narrow.yaml):
                                    # a narrower student, its front end warm-started on the teacher's features
student_init_steps=2000             # stage 6, for a student with init.from random: front-end warm-start steps
student_method=distill              # stage 6: distill (the student of $student_spec) or prune (structured pruning)
prune_config=conf/prune.yaml        # stage 6, student_method=prune: pruning with distillation
prune_final_config=conf/prune_final_distill.yaml   # stage 6, student_method=prune: final distillation
train_args=                         # extra asrc-train flags for stages 5 and 6, e.g. "--max_epoch 1"
quant_mode=static-pos               # dynamic: Linear layers; static-pos: + positional conv (calibrated); static-conv: + CNN (fastest, costs accuracy)
bench_args=                         # extra asrc-bench footprint flags, e.g. "--runs 3 --no-peer"
lm=                                 # stages 8-9: a word n-gram LM (ARPA; URL or file, .gz too) for beam search,
                                    #   e.g. https://www.openslr.org/resources/11/4-gram.arpa.gz ("" = greedy only)
lm_weight=2.0                       # stages 8-9: LM weight of the beam search
lm_word_score=-1.0                  # stages 8-9: score per word (tune both on dev for your model and LM)
lm_beam_size=50                     # stages 8-9: hypotheses kept per frame

. ./path.sh
. ./cmd.sh
. ./db.sh
. utils/parse_options.sh
. utils/lib.sh
. utils/decode_score.sh

stamps=exp/stages
teacher=exp/teacher/model
student=exp/student/model
student_int8=exp/student_int8/model
train_set=train
valid_set=valid

# extracted DIR: DIR is a whole extracted subset: it has <speaker>/<chapter>/ folders, and no
# extraction of asrc-data into its parent was cut short (that leaves .extract-<subset>.tar.gz).
extracted() {
    local dir=$1
    compgen -G "$dir/[0-9]*/[0-9]*/" > /dev/null || return 1
    ! compgen -G "$(dirname "$(dirname "$dir")")/.extract-$(basename "$dir").tar.gz" > /dev/null
}

# The LibriSpeech/ folder: $LIBRISPEECH/LibriSpeech, or $LIBRISPEECH itself when it is that
# folder (named LibriSpeech, or holding extracted subsets). Archives unpack into
# <parent>/LibriSpeech/<subset>: downloads go into its parent.
corpus=$LIBRISPEECH/LibriSpeech
if [ ! -d "$corpus" ]; then
    [ "$(basename "$LIBRISPEECH")" = LibriSpeech ] && corpus=$LIBRISPEECH
    for s in $subsets; do
        extracted "$LIBRISPEECH/$s" && corpus=$LIBRISPEECH && break
    done
fi

if stage_begin 1 "download LibriSpeech ($subsets)" $stamps; then
    missing=()
    for s in $subsets; do
        if extracted "$corpus/$s"; then
            log "$s: already extracted in $corpus/$s, not downloaded"
        else
            missing+=("$s")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(basename "$corpus")" = LibriSpeech ] || die "$corpus holds extracted subsets but not ${missing[*]}," \
            "and downloads unpack into a folder named LibriSpeech: extract them into $corpus too"
        opts=()
        [ -n "$LIBRISPEECH_URL" ] && opts+=(--base-url "$LIBRISPEECH_URL" --mirror "$LIBRISPEECH_URL")
        [ -n "$LIBRISPEECH_MD5" ] && opts+=(--md5-file "$LIBRISPEECH_MD5")
        run_logged exp/logs/download.log asrc-data download-librispeech "$(dirname "$corpus")" \
            --subsets "${missing[@]}" "${opts[@]}"
    fi
    stage_done 1 $stamps
fi

if stage_begin 2 "data preparation" $stamps; then
    # shellcheck disable=SC2086
    run_logged exp/logs/prepare.log asrc-data prepare-librispeech "$corpus" data \
        --subsets $subsets --nj "$nj"
    stage_done 2 $stamps
fi

if stage_begin 3 "training and validation sets" $stamps; then
    # shellcheck disable=SC2086
    run_logged exp/logs/combine_train.log asrc-data combine data/$train_set $(printf 'data/%s ' $train_subsets)
    # shellcheck disable=SC2086
    run_logged exp/logs/combine_valid.log asrc-data combine data/$valid_set $(printf 'data/%s ' $valid_subsets)
    stage_done 3 $stamps
fi

if stage_begin 4 "token list and transcript check" $stamps; then
    run_logged exp/logs/tokens.log asrc-data tokens data/tokens.txt --type letter
    # shellcheck disable=SC2086
    run_logged exp/logs/validate.log asrc-data validate data/$train_set data/$valid_set \
        $(printf 'data/%s ' $test_sets) --tokens data/tokens.txt --nj "$nj"
    stage_done 4 $stamps
fi

if stage_begin 5 "teacher" $stamps; then
    [ -n "$TEACHER" ] || die "set TEACHER (db.sh or the environment) to a Hugging Face folder or fairseq .pt"
    [ -e "$TEACHER" ] || die "TEACHER=$TEACHER does not exist"
    imported=exp/teacher_import
    run_logged exp/logs/convert_teacher.log asrc-convert --from "$TEACHER_FORMAT" "$TEACHER" $imported --overwrite
    run_logged exp/logs/check_tokens.log python local/check_tokens.py $imported/tokens.txt data/tokens.txt
    if [ "$teacher_finetune" = true ]; then
        fresh_outputs exp/teacher
        log "log: exp/logs/finetune_teacher.log (tensorboard --logdir exp/teacher)"
        # shellcheck disable=SC2086
        $train_cmd --gpu "$ngpu" exp/logs/finetune_teacher.log \
            asrc-train --config "$finetune_config" --encoder_conf "init=$imported" \
                --train_data_dir data/$train_set --valid_data_dir data/$valid_set --token_list data/tokens.txt \
                --ngpu "$ngpu" --output_dir exp/teacher --export_model_dir $teacher $train_args
    else
        rm -rf $teacher && mkdir -p exp/teacher && cp -r $imported $teacher
    fi
    stage_done 5 $stamps
fi

if [ "$student_method" = prune ] && stage_begin 6 "structured pruning + final distillation (ESPnet trainer)" $stamps; then
    fresh_outputs exp/student exp/student_pruned
    log "log: exp/logs/prune.log (tensorboard --logdir exp/student_pruned)"
    # shellcheck disable=SC2086
    $train_cmd --gpu "$ngpu" exp/logs/prune.log \
        asrc-train --config "$prune_config" --model_conf "teacher=$teacher" --encoder_conf "init=$teacher" \
            --train_data_dir data/$train_set --valid_data_dir data/$valid_set \
            --ngpu "$ngpu" --output_dir exp/student_pruned --export_model_dir exp/student_pruned/model $train_args
    log "log: exp/logs/prune_final_distill.log (tensorboard --logdir exp/student)"
    # shellcheck disable=SC2086
    $train_cmd --gpu "$ngpu" exp/logs/prune_final_distill.log \
        asrc-train --config "$prune_final_config" --model_conf "teacher=$teacher" \
            --encoder_conf "init=exp/student_pruned/model" \
            --train_data_dir data/$train_set --valid_data_dir data/$valid_set \
            --ngpu "$ngpu" --output_dir exp/student --export_model_dir $student $train_args
    stage_done 6 $stamps
elif [ "$student_method" != distill ] && [ "$student_method" != prune ]; then
    die "--student_method must be distill or prune, got '$student_method'"
fi

if [ "$student_method" = distill ] && stage_begin 6 "distillation (ESPnet trainer)" $stamps; then
    fresh_outputs exp/student exp/student_frontend_init
    student_init=$teacher
    if [ "$(spec_value "$student_spec" init_from)" = random ]; then
        student_init=exp/student_frontend_init
        if [ ! -f $student_init/model.pth ]; then
            log "log: exp/logs/student_frontend_init.log (front end of $student_spec on the teacher's features)"
            $train_cmd exp/logs/student_frontend_init.log \
                python -m asrc.bin.frontend_init --student "$student_spec" --tokens "$teacher/tokens.txt" \
                    --teacher "$teacher" --data-dir data/$train_set --steps "$student_init_steps" --out $student_init
        fi
    fi
    log "log: exp/logs/distill.log (tensorboard --logdir exp/student)"
    # shellcheck disable=SC2086
    $train_cmd --gpu "$ngpu" exp/logs/distill.log \
        asrc-train --config "$distill_config" --student "$student_spec" --model_conf "teacher=$teacher" \
            --encoder_conf "init=$student_init" \
            --train_data_dir data/$train_set --valid_data_dir data/$valid_set \
            --ngpu "$ngpu" --output_dir exp/student --export_model_dir $student $train_args
    stage_done 6 $stamps
fi

if stage_begin 7 "int8 quantization ($quant_mode)" $stamps; then
    calib=()
    [[ $quant_mode == static-* ]] && calib=(--calib "data/$valid_set")  # dynamic takes no calibration
    run_logged exp/logs/quantize.log asrc-quantize $student $student_int8 --mode "$quant_mode" \
        "${calib[@]+"${calib[@]}"}" --overwrite
    stage_done 7 $stamps
fi

models="teacher=$teacher student=$student student_int8=$student_int8"
decode_args="--threads $decode_threads"
lm_models=
lm_file=exp/lm/lm.arpa
if [ -n "$lm" ]; then  # the same models, decoded with the LM into exp/<name>_lm/decode_<set>
    lm_models="teacher_lm=$teacher student_lm=$student student_int8_lm=$student_int8"
    lm_decode_args="$decode_args --method beam --lm $lm_file --lexicon-words $lm_file --lm-weight $lm_weight"
    lm_decode_args="$lm_decode_args --word-score $lm_word_score --beam-size $lm_beam_size"
fi

if stage_begin 8 "decoding ($test_sets)" $stamps; then
    decode_sets "$models" "$test_sets"
    if [ -n "$lm" ]; then
        run_logged exp/logs/download_lm.log asrc-data download-lm "$lm" "$lm_file"
        decode_args=$lm_decode_args decode_sets "$lm_models" "$test_sets"
    fi
    stage_done 8 $stamps
fi

if stage_begin 9 "scoring -> exp/RESULTS.md" $stamps; then
    score_sets "$models $lm_models" "$test_sets"
    # shellcheck disable=SC2086
    last_test=$(echo $test_sets | awk '{print $NF}')
    write_results exp/logs/results.log exp/RESULTS.md "$models" "$test_sets" \
        --wer-json exp/wer.json --wer-dataset "$last_test"   # the footprint's WERs: greedy search
    [ -n "$lm" ] && write_results exp/logs/results.log exp/RESULTS.md "$models $lm_models" "$test_sets"
    cat exp/RESULTS.md
    stage_done 9 $stamps
fi

if stage_begin 10 "footprint report" $stamps; then
    # shellcheck disable=SC2086
    run_logged exp/logs/footprint.log asrc-bench footprint --teacher $teacher --student $student \
        --int8-mode "$quant_mode" --calib data/$valid_set --wer exp/wer.json \
        --json exp/footprint.json --markdown exp/footprint.md --plot exp/footprint.png $bench_args
    stage_done 10 $stamps
fi

if stage_begin 11 "pack the student" $stamps; then
    pack=exp/student_pack
    rm -rf $pack $pack.zip && mkdir -p $pack
    cp -r $student $pack/student && cp -r $student_int8 $pack/student_int8
    cp exp/RESULTS.md $pack/
    [ -f exp/footprint.md ] && cp exp/footprint.md $pack/
    (cd exp && python -m zipfile -c student_pack.zip student_pack/)
    rm -rf $pack
    log "packed exp/student_pack.zip"
    stage_done 11 $stamps
fi
log "done: stages $stage..$stop_stage"
