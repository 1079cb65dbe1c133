#!/usr/bin/env bash
# AN4 (CMU census, real speech): trains the small raw-waveform wav2vec 2.0 CTC teacher that
# the compression demo starts from, then decodes and scores it; and runs the distillation
# experiment (distilled vs CTC-only student) from the committed teacher.
#
#   ./run.sh --stop_stage 6           # the teacher: data, warm start, training, decoding, scoring
#   ./run.sh --stage 4 --stop_stage 6 --force_stages 4  # retrain the teacher, decode, score
#   ./run.sh --force_stages "4"       # redo a finished stage (stamps in exp/stages/); a done
#                                     # stage is also redone when an option it reads, a file
#                                     # that option names or a stage it depends on changed
#   OMP_NUM_THREADS=2 ./run.sh ...    # training and decoding threads per job (path.sh: 1)
#
# Stages:
#   1  AN4 -> data/{train,dev,test} (downloads the corpus when $AN4 from db.sh is missing);
#      synthetic speech in AN4's style ($synth_subsets, seed $synth_seed; asrc-data synth)
#      -> data/synth/{train,dev}; the 6-layer teacher's data = both: data/teacher_{train,dev};
#      for the 12-layer teacher: more synthetic speech from every installed voice (AN4-domain
#      words and sequences $words_subsets, LJ Speech sentences $lj_subsets), augmentation
#      material (simulated rooms, noises: local/make_augment.py), degraded copies of AN4 dev and
#      test (local/degrade.py: room, 10 dB noise, 8 kHz band) -> data/teacher12_{train,dev};
#      the same with AN4 train $an4_repeats more times (asrc-data copy, prefixed ids)
#      -> data/teacher12_train_weighted
#   2  letter token list data/tokens.txt (fairseq dict.ltr.txt order, 32 tokens)
#   3  front-end warm start: CNN + projection regress 80-dim log-mel (asrc-frontend-init)
#   4  CTC training of the teacher with ESPnet's trainer (asrc-train): 6 layers: pass 1, 30
#      epochs from the warm start, CNN frozen -> exp/teacher/model; pass 2, 8 epochs from it,
#      CNN frozen -> exp/teacher_pass2/model; pass 3, 6 epochs, CNN trained too ->
#      exp/teacher_pass3/model; then 12 layers: pass 3's model grown to 12 layers
#      (local/grow_teacher.py, same function) and trained on data/teacher12_train with
#      augmentation on the fly (conf/train_teacher12.yaml) -> exp/teacher12_pass1/model; its
#      second pass on data/teacher12_train_weighted (conf/train_teacher12_pass2.yaml: AN4
#      weighted up, gentler augmentation) -> exp/teacher12/model
#   5  greedy CTC decoding of AN4 test, its degraded copy and the synthetic dev sets (asrc-decode)
#   6  scoring (asrc-score, sclite when installed) -> exp/teacher12/RESULTS.md
#   7  (only with --update_teacher true) replace the committed teacher in teacher/
#      with exp/teacher12/model, weights stored in float16 (local/store_fp16.py)
#   8  the distillation experiment, from the committed teacher/ ($student_teacher): the
#      student of conf/student.yaml (4 layers, conv_groups 2: the compression demo's)
#      distilled (kd), the same student trained with CTC alone for the same updates (ctc), and
#      distilled on AN4 train + audio without transcripts (kdu: $untranscribed_sets and a
#      degraded copy of AN4 train; CTC only where there is a transcript), and the same with the
#      transcribed share of each batch kept (kdm: AN4 train $mixed_an4_copies times beside the
#      untranscribed audio, batches of $mixed_batch_size: about as many transcribed utterances
#      per update as kd and ctc) and its control (ctcm: CTC alone on the same audio with its
#      transcripts), and kd with the hidden-state loss too (kdh:
#      conf/student_hidden.yaml), for each of $seeds (conf/train_student.yaml), side by side;
#      and (only when named in $student_kinds) kds: kdm with speed-perturbed copies of AN4 train
#      ($speed_factors, Kaldi's) as the untranscribed audio (AN4 train twice beside them,
#      batches of $mixed_batch_size), and its control ctcs (the same with every transcript);
#      $student_kinds picks the kinds
#   9  int8 quantization of the distilled student (first seed)
#   10 decoding + scoring of data/test and its degraded copy (stage 1's data/test_degraded) by
#      teacher and students -> exp/RESULTS.md
#   11-13 the narrow student (conf/student_narrow.yaml: half the teacher's width, no
#      teacher weight fits): 11 front-end warm start on the teacher's CNN features
#      (asrc-frontend-init --teacher), 12 distilled (CTC + KD + hidden-state loss) and
#      CTC-only from that start, side by side (2000 updates each, ~55 min), 13 int8 of both,
#      decoding, scoring -> exp/RESULTS_narrow.md
#   14-16 the pruning experiment (not run by default: --stage 14 --stop_stage 16): 14 copies of
#      the teacher pruned while distilled to $prune_targets (sparsity = share of the teacher's
#      parameters removed; conf/prune.yaml) -> exp/prune_<t>/model and, on the longer schedule
#      of conf/prune_long.yaml, to $prune_long_targets -> exp/prune_long_<t>, and the runs of
#      $prune_extra_runs (NAME:TARGET:CONFIG) -> exp/prune_NAME, 15 final distillation of
#      each dense model (conf/prune_final_distill.yaml) -> exp/pruned_<t>/model; the update
#      counts (max_epoch x num_iters_per_epoch) and what they match are in those two files;
#      16 AN4 test decoded and scored (WER, CER) by the pruned students; the teacher's, the
#      4-layer student's (stage 8, first seed) and the narrow student's (stage 12, if trained)
#      decodes come from stages 10 and 13 (made here only when missing) ->
#      exp/RESULTS_prune_scores.md, exp/prune_{wer,cer}.json; the size and speed of all of
#      them (asrc-bench footprint, float32, 2 threads)
#      -> exp/prune_footprint.{json,md}, exp/prune_pareto.png (CER against parameters and
#      against speed, Pareto fronts); all in one table with the goals computed from it
#      (local/prune_results.py) -> exp/RESULTS_prune.md; asrc-info of each pruned student in
#      exp/logs/info_pruned_<t>.log
#   17-18 int8 of the CNN (not run by default: --stage 17 --stop_stage 18), on the distilled
#      student of stage 8 (exp/student_kd_s<first seed>/model): 17 post-training int8, one model
#      per entry of $int8_ptq (asrc-quantize, calibrated on $int8_calib): static-pos (CNN float,
#      the reference int8), static-conv (int8 CNN, histogram ranges) and each conv option alone
#      and together, per-frame CNN input ranges last; then the student fine-tuned briefly with its distillation loss
#      ($int8_qat_config) twice, one run after the other: in float (the control, exp/int8/ft_float)
#      and with quantization-aware training ($int8_qat; its int8 export: exp/int8/ft_qat/model);
#      18 decoding, scoring of data/test by every stage-17 model (the float student's stage-10 decode reused)
#      -> exp/RESULTS_int8.md, ending with local/int8_summary.py's table (CER, CER minus the
#      float student's, QAT minus its float control), also in exp/int8_summary.md;
#      $student_args reaches both fine-tunes
#   19 silence and long recordings (not run by default: --stage 19 --stop_stage 19): AN4 dev
#      and test, each speaker's utterances joined into recordings of up to $long_max_seconds s
#      (local/concat_long.py -> data/{dev,test}_long; all of AN4 test in one recording of 7 minutes
#      -> data/test_onelong), and AN4 dev, test and degraded test with $pad_seconds s of quiet
#      noise around each utterance (local/pad_noise.py -> data/*_padded), decoded by each of
#      $long_models whole (--segment none), in windows of $long_chunk_seconds s (--segment
#      chunk; long recordings only) and trimmed / split at pauses (--segment vad: silero-vad),
#      the short utterances too -> exp/RESULTS_long.md; and how well the word confidences of
#      asrc-transcribe's output tell right words from wrong (local/word_confidence.py)
#      -> exp/long/word_confidence_*.md
#   20 a word $lm_order-gram LM of AN4 train's transcripts (not run by default: --stage 20
#      --stop_stage 20; local/train_lm.sh: IRSTLM, Debian package irstlm) -> exp/lm/an4.arpa;
#      beam search with the lexicon of its words and the LM: for each of $lm_models, LM weight
#      ($lm_weights) x word score ($lm_word_scores) decoded on AN4 dev, the best (WER, then CER;
#      local/lm_tune.py -> exp/lm/LABEL/tuning.md) decodes AN4 test and its degraded copy,
#      beside greedy search -> exp/RESULTS_lm.md
#   ./run.sh --stage 1 --stop_stage 2 && ./run.sh --stage 8   # the experiment alone
# Why stage 3 exists and what each option bought: RESULTS.md in this folder.
set -euo pipefail
cd "$(dirname "$0")"
_recipe_args=${1+$(printf " %q" "$@")}

stage=1
stop_stage=13
update_teacher=false                       # stage 7: overwrite teacher/ with the new teacher
student_teacher=teacher                    # stages 8-10: the teacher the students learn from
student_config=conf/train_student.yaml     # stages 8-10: the schedule; its student: conf/student.yaml
student_args=                              # extra asrc-train flags for stage 8
seeds="42 43"                              # stages 8-10: one student of each kind per seed
untranscribed_sets="data/synth/words_train" # stage 8: audio the kdu students distil on without transcripts
                                           #   (with a degraded copy of AN4 train, always)
student_kinds="kd ctc kdu kdm ctcm kdh"    # stages 8 and 10: which students (kd, ctc, kdu, kdm, ctcm, kdh: see stage 8)
student_jobs=3                             # stage 8: trainings at once (one thread each)
student_tag=                               # stages 8, 10: in the students' names, exp/student_<kind><tag>_s<seed>
                                           #   (e.g. _lr1e-3 with --student_config conf/train_student_lr1e-3.yaml)
mixed_an4_copies=8                         # stage 8, kdm: copies of AN4 train beside the untranscribed audio
mixed_batch_size=16                        # stage 8, kdm: its batch size (about half transcribed)
speed_factors="0.9 1.1"                    # stage 8, kds and ctcs: the speed-perturbed copies of AN4 train
force_stages=
nj=2                                       # synthesis and decoding jobs
synth_subsets="train:1200,dev:60"          # stage 1: synthetic speech for the teacher ("" = AN4 only)
synth_seed=1                               # the demo's own synthetic test set uses seed 0
synth_engines=                             # default: every engine installed (piper, espeak, flite, festival)
words_subsets="train:6000,dev:100"         # stage 1: AN4-domain synthetic speech for the 12-layer teacher
lj_subsets="train:1500,dev:40"             # stage 1: LJ Speech sentences, synthesised ($LJSPEECH_TEXT in db.sh)
train_config=conf/train_teacher.yaml       # ESPnet options of stage 4, pass 1
pass2_config=conf/train_teacher_pass2.yaml # ESPnet options of stage 4, pass 2
pass3_config=conf/train_teacher_pass3.yaml # ESPnet options of stage 4, pass 3
teacher12_config=conf/train_teacher12.yaml # ESPnet options of stage 4, the first 12-layer pass
teacher12_pass2_config=conf/train_teacher12_pass2.yaml # ... and of the second
an4_repeats=4                              # stage 1: extra copies of AN4 train in data/teacher12_train_weighted
teacher_layers=12                          # stage 4: depth the 6-layer teacher grows to
model_config=conf/teacher_model.yaml       # architecture (Wav2Vec2Config) built in stage 3
frontend_init_steps=300                    # stage 3 regression steps
pass1_exp=exp/teacher                      # stage 4, pass 1
pass2_exp=exp/teacher_pass2                 # stage 4, pass 2
pass3_exp=exp/teacher_pass3                # stage 4, pass 3 (the 6-layer teacher)
teacher12_pass1_exp=exp/teacher12_pass1    # stage 4, the first 12-layer pass
teacher_exp=exp/teacher12                  # the final teacher's experiment (stage 4, 12 layers, pass 2)
train_args=                                # extra asrc-train flags, e.g. "--max_epoch 2"
narrow_student=conf/student_narrow.yaml    # stages 11-13: the narrow student (a student spec)
narrow_init_steps=300                      # stage 11 regression steps
prune_targets="0.57 0.6 0.65 0.7 0.85 0.93" # stages 14-16: target sparsities; in 300 updates 0.57-0.7 overshoot, 0.85-0.93 stop short
                                           #   (run 2026-12-01: 0.57 -> 35.1 % kept, the 4-layer student's count; 0.65 -> 30.2 %; 0.93 -> 17.6 %)
prune_config=conf/prune.yaml               # stage 14: the pruning run of each of $prune_targets -> exp/prune_<t>
prune_long_targets="0.7 0.91"              # stages 14-16: targets pruned on the longer schedule -> exp/prune_long_<t>
                                           #   (0.7: 30 % of the teacher's parameters, which 300 updates overshoot;
                                           #   0.91: the narrow student's count, which 300 updates do not reach)
prune_long_config=conf/prune_long.yaml     # stage 14: the longer schedule (1000 updates)
prune_extra_runs="long_reg0.3_0.91:0.91:conf/prune_long_reg03.yaml"  # stages 14-16: more runs, NAME:TARGET:CONFIG
                                           #   each -> exp/prune_NAME (here: the longer schedule, gates and
                                           #   multipliers at lr 0.3, for the narrow student's count)
# stage 17: post-training int8 variants, NAME:FLAGS (FLAGS: asrc-quantize flags joined by commas)
# (histogram ranges, asrc-quantize's default until 2026-12-07, named so that each option is measured alone)
int8_ptq="pos:--mode=static-pos,--conv-calibration=histogram conv:--mode=static-conv,--conv-calibration=histogram
          conv_per_tensor:--mode=static-conv,--conv-weights=per-tensor,--conv-calibration=histogram
          conv_minmax:--mode=static-conv,--conv-calibration=minmax
          conv_percentile:--mode=static-conv,--conv-calibration=percentile
          conv_mse:--mode=static-conv,--conv-calibration=mse
          conv_bias_corr:--mode=static-conv,--bias-correction,--conv-calibration=histogram
          conv_percentile_bias_corr:--mode=static-conv,--conv-calibration=percentile,--bias-correction
          conv_per_frame:--mode=static-conv,--conv-activations=per-frame"
int8_calib=data/dev                        # stage 17: calibration audio of the post-training variants
int8_activation_bits=8                     # stage 17: static int8 activations, PTQ and QAT (7: fast without VNNI, less accurate)
int8_qat_config=conf/train_qat.yaml        # stage 17: the fine-tune of the float control and of QAT
int8_qat="start_updates=0"                 # stage 17: the QAT run's qat: section (asrc.quant.qat.QATConfig KEY=VALUE words)
long_models="teacher=teacher"              # stage 19: LABEL=MODEL_DIR of the models decoding long recordings
long_max_seconds=60                        # stage 19: longest joined recording
long_chunk_seconds=10                      # stage 19: --chunk-seconds of asrc-decode (pieces decoded in one go)
pad_seconds=2                              # stage 19: quiet noise added before and after AN4's utterances
pad_noise_db=-40                           # stage 19: its level against the utterance's RMS
lm_models="teacher=teacher"                # stage 20: LABEL=MODEL_DIR of the models decoding with the LM
lm_order=3                                 # stage 20: n of the word n-gram LM
lm_weights="0.5 1 1.5 2 3"                 # stage 20: LM weights tried on AN4 dev
lm_word_scores="0 1 2 3 4 5 6 7"           # stage 20: word scores (insertion bonus) tried on AN4 dev

. ./path.sh
. ./cmd.sh
. ./db.sh
. utils/parse_options.sh
. utils/lib.sh
. utils/decode_score.sh

stamps=exp/stages
teacher_sets="test=an4_test test_degraded=an4_test_degraded"  # stages 5-6: the teacher's test sets (SET=row)
[ -n "$synth_subsets" ] && teacher_sets="$teacher_sets synth/words_dev synth/lj_dev"

if stage_begin 1 "data preparation" $stamps; then
    if [ ! -d "$AN4/wav" ]; then
        log "AN4 not found at $AN4: downloading"
        run_logged exp/logs/download_an4.log asrc-data download-an4 downloads
        AN4=downloads/an4
    fi
    run_logged exp/logs/prepare_an4.log asrc-data prepare-an4 "$AN4" data
    if [ -n "$synth_subsets" ]; then
        opts=()
        [ -n "$synth_engines" ] && opts+=(--engines "$synth_engines")
        run_logged exp/logs/synth.log asrc-data synth db/synth --subsets "$synth_subsets" --seed "$synth_seed" --overwrite \
            --nj "$nj" "${opts[@]}"
        run_logged exp/logs/prepare_synth.log asrc-data prepare-librispeech db/synth data/synth --no-combine --nj "$nj"
        run_logged exp/logs/combine_train.log asrc-data combine data/teacher_train data/train data/synth/train
        run_logged exp/logs/combine_dev.log asrc-data combine data/teacher_dev data/dev data/synth/dev
    else
        run_logged exp/logs/combine_train.log asrc-data combine data/teacher_train data/train
        run_logged exp/logs/combine_dev.log asrc-data combine data/teacher_dev data/dev
    fi
    twelve_train=(data/train) twelve_dev=(data/dev)
    if [ -n "$synth_subsets" ]; then
        run_logged exp/logs/synth_words.log asrc-data synth db/synth_words --subsets "$words_subsets" --seed 2 --overwrite \
            --nj "$nj" "${opts[@]}"
        run_logged exp/logs/synth_lj.log asrc-data synth db/synth_lj --text "$LJSPEECH_TEXT" --subsets "$lj_subsets" --overwrite \
            --first-speaker 20000 \
            --seed 3 --nj "$nj" "${opts[@]}"
        for c in words lj; do
            # prepared afresh (a redone stage, or a rerun with other subsets, must not keep old tables:
            # mv into an existing folder nests instead of replacing)
            rm -rf "data/synth/$c" "data/synth/${c}_train" "data/synth/${c}_dev"
            run_logged exp/logs/prepare_synth_$c.log asrc-data prepare-librispeech db/synth_$c data/synth/$c \
                --no-combine --nj "$nj"
            for s in train dev; do
                [ -d "data/synth/$c/$s" ] || continue
                mv "data/synth/$c/$s" "data/synth/${c}_$s"
                if [ $s = train ]; then twelve_train+=("data/synth/${c}_$s"); else twelve_dev+=("data/synth/${c}_$s"); fi
            done
            rm -rf "data/synth/$c"
        done
    fi
    run_logged exp/logs/make_augment.log local/make_augment.py db/augment --babble-from data/train --seed 0
    run_logged exp/logs/degrade_test.log local/degrade.py data/test data/test_degraded --seed 0
    run_logged exp/logs/degrade_dev.log local/degrade.py data/dev data/dev_degraded --seed 1 --prefix deg-
    twelve_dev+=(data/dev_degraded)
    run_logged exp/logs/combine_train12.log asrc-data combine data/teacher12_train "${twelve_train[@]}"
    run_logged exp/logs/combine_dev12.log asrc-data combine data/teacher12_dev "${twelve_dev[@]}"
    weighted=(data/teacher12_train)
    for i in $(seq "$an4_repeats"); do
        run_logged exp/logs/copy_an4_rep$i.log asrc-data copy data/train data/an4_rep$i --prefix rep$i-
        weighted+=(data/an4_rep$i)
    done
    run_logged exp/logs/combine_train12w.log asrc-data combine data/teacher12_train_weighted "${weighted[@]}"
    # shellcheck disable=SC2046
    run_logged exp/logs/validate_data.log asrc-data validate data/train data/dev data/test data/test_degraded \
        data/teacher_train data/teacher_dev data/teacher12_train data/teacher12_dev data/teacher12_train_weighted
    stage_done 1 $stamps
fi

if stage_begin 2 "token list" $stamps; then
    run_logged exp/logs/tokens.log asrc-data tokens data/tokens.txt --type letter
    stage_done 2 $stamps
fi

init_dir=exp/teacher_frontend_init

if stage_begin 3 "front-end warm start on log-mel ($frontend_init_steps steps)" $stamps; then
    fresh_outputs "$init_dir"
    log "log: exp/logs/frontend_init.log"
    $train_cmd exp/logs/frontend_init.log \
        python -m asrc.bin.frontend_init --config "$model_config" --tokens data/tokens.txt \
            --data-dir data/teacher_train --steps "$frontend_init_steps" --out "$init_dir"
    stage_done 3 $stamps
fi

if stage_begin 4 "teacher CTC training (ESPnet trainer): three 6-layer passes, one of $teacher_layers layers" $stamps; then
    fresh_outputs "$pass1_exp" "$pass2_exp" "$pass3_exp" "$teacher12_pass1_exp" "$teacher_exp" exp/teacher12_grown
    # Each pass starts from the model the previous one exported (pass 1: the warm start).
    init=$init_dir
    for pass in 1 2 3; do
        case $pass in
            1) conf=$train_config; out=$pass1_exp; logname=train_teacher ;;
            2) conf=$pass2_config; out=$pass2_exp; logname=train_teacher_pass2 ;;
            3) conf=$pass3_config; out=$pass3_exp; logname=train_teacher_pass3 ;;
        esac
        log "pass $pass: log exp/logs/$logname.log (and $out/train.log; tensorboard --logdir exp)"
        # shellcheck disable=SC2086
        $train_cmd exp/logs/$logname.log \
            asrc-train --config "$conf" --encoder_conf "init=$init" \
                --train_data_dir data/teacher_train --valid_data_dir data/teacher_dev --token_list data/tokens.txt \
                --output_dir "$out" --export_model_dir "$out/model" --export_checkpoint valid.cer.ave.pth \
                $train_args
        init=$out/model
    done
    run_logged exp/logs/grow_teacher.log local/grow_teacher.py "$pass3_exp/model" exp/teacher12_grown \
        --layers "$teacher_layers"
    log "$teacher_layers layers, pass 1: log exp/logs/train_teacher12.log (and $teacher12_pass1_exp/train.log)"
    # shellcheck disable=SC2086
    $train_cmd exp/logs/train_teacher12.log \
        asrc-train --config "$teacher12_config" --encoder_conf init=exp/teacher12_grown \
            --train_data_dir data/teacher12_train --valid_data_dir data/teacher12_dev --token_list data/tokens.txt \
            --output_dir "$teacher12_pass1_exp" --export_model_dir "$teacher12_pass1_exp/model" \
            --export_checkpoint valid.cer.ave.pth $train_args
    log "$teacher_layers layers, pass 2: log exp/logs/train_teacher12_pass2.log (and $teacher_exp/train.log)"
    # shellcheck disable=SC2086
    $train_cmd exp/logs/train_teacher12_pass2.log \
        asrc-train --config "$teacher12_pass2_config" --encoder_conf "init=$teacher12_pass1_exp/model" \
            --train_data_dir data/teacher12_train_weighted --valid_data_dir data/teacher12_dev \
            --token_list data/tokens.txt --output_dir "$teacher_exp" --export_model_dir "$teacher_exp/model" \
            --export_checkpoint valid.cer.ave.pth $train_args
    stage_done 4 $stamps
fi

teacher_model="teacher=$teacher_exp/model@$teacher_exp"

if stage_begin 5 "decoding ($teacher_sets)" $stamps "4"; then
    decode_sets "$teacher_model" "$teacher_sets"
    stage_done 5 $stamps
fi

if stage_begin 6 "scoring" $stamps "5"; then
    score_sets "$teacher_model" "$teacher_sets"
    write_results exp/logs/results_teacher.log "$teacher_exp/RESULTS.md" "$teacher_model" "$teacher_sets"
    cat "$teacher_exp/RESULTS.md"
    stage_done 6 $stamps
fi
if [ "$update_teacher" = true ] && stage_begin 7 "replace the committed teacher/ with $teacher_exp/model" $stamps "4"; then
    # float16 storage halves model.pth (5.7M parameters: 11.5 MB); it loads into the fp32 model
    run_logged exp/logs/update_teacher.log local/store_fp16.py "$teacher_exp/model" teacher
    log "teacher/ updated; put $teacher_exp/RESULTS.md and the curve into teacher/RESULTS.md"
    stage_done 7 $stamps
fi

# ---- the distillation experiment: distilled vs CTC-only student, same student, same updates ----

# wants_kind KIND: whether $student_kinds names KIND
wants_kind() { [[ " $student_kinds " == *" $1 "* ]]; }

if stage_begin 8 "students ($student_kinds), seeds $seeds" $stamps "1 2"; then
    for kind in $student_kinds; do
        case $kind in kd|ctc|kdu|kdm|ctcm|kdh|kds|ctcs) ;;
            *) die "student_kinds: unknown kind '$kind' (kd, ctc, kdu, kdm, ctcm, kdh, kds, ctcs)";; esac
    done
    if wants_kind kdu || wants_kind kdm || wants_kind ctcm; then
        # The untranscribed set-ups' data: AN4 train (transcribed) + audio whose transcripts the
        # student never sees: AN4-domain synthetic speech and a degraded copy of AN4 train.
        run_logged exp/logs/degrade_train.log local/degrade.py data/train data/train_degraded --seed 2 --prefix deg-
        untranscribed_dirs=()
        labelled_dirs=()  # the same audio with its transcripts: ctcm's
        for d in $untranscribed_sets data/train_degraded; do
            [ -f "$d/wav.scp" ] || die "untranscribed_sets: $d is not a data directory"
            name=untranscribed_$(basename "$d")
            run_logged exp/logs/copy_$name.log asrc-data copy "$d" "data/$name" --prefix u- --drop-text
            untranscribed_dirs+=("data/$name")
            name=labelled_$(basename "$d")
            run_logged exp/logs/copy_$name.log asrc-data copy "$d" "data/$name" --prefix u-
            labelled_dirs+=("data/$name")
        done
        run_logged exp/logs/combine_train_untranscribed.log \
            asrc-data combine --untranscribed-ok data/train_untranscribed data/train "${untranscribed_dirs[@]}"
        # kdm: AN4 train $mixed_an4_copies times (prefixed ids) beside the same untranscribed audio
        mixed=(data/train)
        for ((i = 1; i < mixed_an4_copies; i++)); do
            run_logged exp/logs/copy_an4_mix$i.log asrc-data copy data/train "data/an4_mix$i" --prefix "mix$i-"
            mixed+=("data/an4_mix$i")
        done
        run_logged exp/logs/combine_train_mixed.log \
            asrc-data combine --untranscribed-ok data/train_mixed "${mixed[@]}" "${untranscribed_dirs[@]}"
        run_logged exp/logs/combine_train_mixed_labelled.log \
            asrc-data combine data/train_mixed_labelled "${mixed[@]}" "${labelled_dirs[@]}"
    fi
    if wants_kind kds || wants_kind ctcs; then
        # kds: speed-perturbed copies of AN4 train without their transcripts, AN4 train twice
        # beside them (about half of each batch transcribed, as kdm); ctcs: the same, transcribed
        [ -d data/an4_mix1 ] || run_logged exp/logs/copy_an4_mix1.log asrc-data copy data/train data/an4_mix1 --prefix mix1-
        sp_untranscribed=() sp_labelled=()
        for f in $speed_factors; do
            run_logged exp/logs/speed_copy_$f.log local/speed_copy.py data/train "data/train_sp$f" --factor "$f"
            run_logged exp/logs/copy_untranscribed_sp$f.log \
                asrc-data copy "data/train_sp$f" "data/untranscribed_train_sp$f" --prefix u- --drop-text
            sp_untranscribed+=("data/untranscribed_train_sp$f")
            sp_labelled+=("data/train_sp$f")
        done
        run_logged exp/logs/combine_train_sp_mixed.log \
            asrc-data combine --untranscribed-ok data/train_sp_mixed data/train data/an4_mix1 "${sp_untranscribed[@]}"
        run_logged exp/logs/combine_train_sp_labelled.log \
            asrc-data combine data/train_sp_labelled data/train data/an4_mix1 "${sp_labelled[@]}"
    fi
    # All runs of a seed start from the same every_k initialisation of the teacher (grouped
    # kernels fitted on data/train's speech), with the same schedule ($student_config:
    # max_epoch x num_iters_per_epoch updates); kd and ctc differ only in the loss, kdu
    # (distilled) only in its training data (CTC on the transcribed part, teacher losses on
    # all), kdm in its data and batch size (the transcribed part of each batch about kd's),
    # ctcm is kdm's control (CTC alone on the same audio, its transcripts kept),
    # kdh (distilled) in its loss: kd's and the hidden-state loss.
    running=0
    for seed in $seeds; do
        common=(--config "$student_config" --encoder_conf "init=$student_teacher" --encoder_conf calibration=data/train
                --seed "$seed" --export_checkpoint valid.cer.ave.pth)
        for kind in $student_kinds; do
            out=exp/student_${kind}${student_tag}_s$seed
            fresh_outputs "$out"
            case $kind in
                kd)  args=(--model_conf "teacher=$student_teacher") ;;
                ctc) args=(--model asrc_ctc) ;;
                kdu) args=(--model_conf "teacher=$student_teacher" --train_data_dir data/train_untranscribed) ;;
                kdm) args=(--model_conf "teacher=$student_teacher" --train_data_dir data/train_mixed
                           --batch_size "$mixed_batch_size") ;;
                ctcm) args=(--model asrc_ctc --train_data_dir data/train_mixed_labelled --batch_size "$mixed_batch_size") ;;
                kds) args=(--model_conf "teacher=$student_teacher" --train_data_dir data/train_sp_mixed
                           --batch_size "$mixed_batch_size") ;;
                ctcs) args=(--model asrc_ctc --train_data_dir data/train_sp_labelled --batch_size "$mixed_batch_size") ;;
                kdh) args=(--model_conf "teacher=$student_teacher" --student conf/student_hidden.yaml) ;;
            esac
            log "log: exp/logs/train_$(basename "$out").log (tensorboard --logdir exp)"
            # shellcheck disable=SC2086
            bg_job "exp/logs/train_$(basename "$out").log" $train_cmd "exp/logs/train_$(basename "$out").log" \
                asrc-train "${common[@]}" "${args[@]}" --output_dir "$out" --export_model_dir "$out/model" $student_args
            running=$((running + 1))
            if [ "$running" -ge "$student_jobs" ]; then wait_jobs; running=0; fi
        done
    done
    wait_jobs
    stage_done 8 $stamps
fi

first_seed=${seeds%% *}

# The int8 student of stages 9-10 exists only for the untagged kd students.
kd_int8=false
[ -z "$student_tag" ] && wants_kind kd && kd_int8=true
if stage_begin 9 "int8 quantization of the distilled student (seed $first_seed)" $stamps "8"; then
    if $kd_int8; then
        run_logged exp/logs/quantize.log asrc-quantize "exp/student_kd_s$first_seed/model" exp/student_kd_int8/model \
            --mode static-pos --calib data/dev --overwrite
        stage_done 9 $stamps
    else  # not marked done: a later run with the kd students quantizes
        log "no kd student in \$student_kinds ($student_kinds) or a \$student_tag ($student_tag): nothing to quantize"
    fi
fi

if stage_begin 10 "decoding and scoring data/test (and data/test_degraded) -> exp/RESULTS$student_tag.md" $stamps "8 9"; then
    experiment="teacher_committed=$student_teacher"
    student_sets=test
    # stage 1's degraded copy of AN4 test (room, 10 dB noise, 8 kHz band), where it exists
    [ -f data/test_degraded/wav.scp ] && student_sets="test test_degraded"
    for seed in $seeds; do
        for m in $student_kinds; do
            experiment="$experiment student_${m}${student_tag}_s$seed=exp/student_${m}${student_tag}_s$seed/model"
        done
    done
    $kd_int8 && experiment="$experiment student_kd_int8=exp/student_kd_int8/model"  # stage 9's
    decode_sets "$experiment" "$student_sets"
    score_sets "$experiment" "$student_sets"
    write_results "exp/logs/results$student_tag.log" "exp/RESULTS$student_tag.md" "$experiment" "$student_sets" \
        --note local/experiment_notes.md
    cat "exp/RESULTS$student_tag.md"
    stage_done 10 $stamps
fi

# ---- the narrow student: front end warm-started on the teacher's features, then KD vs CTC ----
if stage_begin 11 "narrow student: front-end warm start on the teacher's features" $stamps "1 2"; then
    fresh_outputs exp/narrow_frontend_init
    log "log: exp/logs/narrow_frontend_init.log"
    $train_cmd exp/logs/narrow_frontend_init.log \
        python -m asrc.bin.frontend_init --student "$narrow_student" --tokens "$student_teacher/tokens.txt" \
            --teacher "$student_teacher" --data-dir data/train --steps "$narrow_init_steps" \
            --out exp/narrow_frontend_init
    stage_done 11 $stamps
fi

if stage_begin 12 "narrow student: distilled and CTC-only (in parallel)" $stamps "11"; then
    fresh_outputs exp/narrow_kd exp/narrow_ctc
    log "logs: exp/logs/train_narrow_kd.log, exp/logs/train_narrow_ctc.log"
    common=(--student "$narrow_student" --encoder_conf init=exp/narrow_frontend_init
            --train_data_dir data/train --valid_data_dir data/dev
            --token_list "$student_teacher/tokens.txt" --export_checkpoint valid.cer.ave.pth)
    for m in kd ctc; do
        model_conf=()
        [ $m = kd ] && model_conf=(--model_conf "teacher=$student_teacher")
        # shellcheck disable=SC2086
        bg_job exp/logs/train_narrow_$m.log $train_cmd exp/logs/train_narrow_$m.log \
            asrc-train --config conf/student_narrow_$m.yaml "${model_conf[@]}" "${common[@]}" \
                --output_dir exp/narrow_$m --export_model_dir exp/narrow_$m/model $student_args
    done
    wait_jobs
    stage_done 12 $stamps
fi

if stage_begin 13 "narrow students: int8, decoding and scoring -> exp/RESULTS_narrow.md" $stamps "12"; then
    for m in kd ctc; do
        run_logged exp/logs/quantize_narrow_$m.log asrc-quantize exp/narrow_$m/model exp/narrow_${m}_int8/model \
            --mode static-pos --calib data/dev --overwrite
    done
    narrow="narrow_kd=exp/narrow_kd/model narrow_ctc=exp/narrow_ctc/model
            narrow_kd_int8=exp/narrow_kd_int8/model narrow_ctc_int8=exp/narrow_ctc_int8/model"
    decode_sets "$narrow" test
    score_sets "$narrow" test
    write_results exp/logs/results_narrow.log exp/RESULTS_narrow.md "$narrow" test
    cat exp/RESULTS_narrow.md
    stage_done 13 $stamps
fi
# ---- the pruning experiment: the teacher pruned while distilled, at several sizes ----
# prune_runs -> one NAME:TARGET:CONFIG word per pruning run of stages 14-16 (exp/prune_NAME, exp/pruned_NAME)
prune_runs() {
    local t
    for t in $prune_targets; do echo "$t:$t:$prune_config"; done
    for t in $prune_long_targets; do echo "long_$t:$t:$prune_long_config"; done
    for run in $prune_extra_runs; do echo "$run"; done
}
# prune_names -> the NAME of each pruning run
prune_names() {
    local run
    for run in $(prune_runs); do echo "${run%%:*}"; done
}

if stage_begin 14 "pruning with distillation: target sparsities $prune_targets; longer schedule: $prune_long_targets; more: $prune_extra_runs" \
        $stamps "1 2"; then
    for run in $(prune_runs); do
        IFS=: read -r t target config <<< "$run"
        fresh_outputs exp/prune_$t
        log "log: exp/logs/prune_$t.log (tensorboard --logdir exp/prune_$t)"
        # shellcheck disable=SC2086
        $train_cmd exp/logs/prune_$t.log \
            asrc-train --config "$config" --prune "target_sparsity=$target" \
                --model_conf "teacher=$student_teacher" --encoder_conf "init=$student_teacher" \
                --train_data_dir data/train --valid_data_dir data/dev --token_list "$student_teacher/tokens.txt" \
                --output_dir exp/prune_$t --export_model_dir exp/prune_$t/model $student_args
    done
    stage_done 14 $stamps
fi

if stage_begin 15 "final distillation of the pruned students" $stamps "14"; then
    for t in $(prune_names); do
        fresh_outputs exp/pruned_$t
        # shellcheck disable=SC2086
        $train_cmd exp/logs/pruned_final_$t.log \
            asrc-train --config conf/prune_final_distill.yaml \
                --model_conf "teacher=$student_teacher" --encoder_conf "init=exp/prune_$t/model" \
                --train_data_dir data/train --valid_data_dir data/dev --token_list "$student_teacher/tokens.txt" \
                --output_dir exp/pruned_$t --export_model_dir exp/pruned_$t/model \
                --export_checkpoint valid.cer.ave.pth $student_args
    done
    stage_done 15 $stamps
fi

if stage_begin 16 "pruned students against the 4-layer and narrow students: scores, footprint -> exp/RESULTS_prune.md" \
        $stamps "8 15"; then
    # What the pruned students are compared with: the teacher and the 4-layer student as stage 10
    # decoded them, the narrow student as stage 13 did (when stage 12 trained one).
    layer_dropped=student_kd_s$first_seed
    compared="teacher=$student_teacher@exp/teacher_committed $layer_dropped=exp/$layer_dropped/model"
    narrow_args=()
    for m in narrow_kd narrow_ctc; do  # goal (b) against the better of the two
        if [ -d exp/$m/model ]; then
            compared="$compared $m=exp/$m/model"
            narrow_args+=("$m")
        fi
    done
    [ ${#narrow_args[@]} -gt 0 ] && narrow_args=(--narrow "${narrow_args[@]}")
    pruned= pruned_names=()
    for t in $(prune_names); do
        pruned="$pruned prune_$t=exp/prune_$t/model pruned_$t=exp/pruned_$t/model"
        pruned_names+=("prune_$t" "pruned_$t")
    done
    decode_score_missing "$compared" test
    decode_sets "$pruned" test
    score_sets "$pruned" test
    for t in $(prune_names); do
        run_logged exp/logs/info_pruned_$t.log asrc-info exp/pruned_$t/model --json
    done
    models="$compared $pruned"
    write_results exp/logs/results_prune_scores.log exp/RESULTS_prune_scores.md "$models" test \
        --wer-json exp/prune_wer.json --cer-json exp/prune_cer.json
    # Float32 models only (no int8, ONNX or transformers rows), the footprint rows named as above.
    students=()
    for m in $models; do
        [[ $m == teacher=* ]] || students+=(--student "$m")
    done
    run_logged exp/logs/prune_footprint.log asrc-bench footprint --teacher "$student_teacher" "${students[@]}" \
        --no-peer --no-onnx --no-int8 --threads 2 --runs 5 --wer exp/prune_wer.json --cer exp/prune_cer.json \
        --json exp/prune_footprint.json --markdown exp/prune_footprint.md --plot exp/prune_pareto.png
    # shellcheck disable=SC2046
    run_logged exp/logs/prune_results.log local/prune_results.py --footprint exp/prune_footprint.json \
        $(results_rows "$models" test) --layer-dropped "$layer_dropped" "${narrow_args[@]}" \
        --pruned "${pruned_names[@]}" --plot exp/prune_pareto.png --out exp/RESULTS_prune.md
    stage_done 16 $stamps
fi
# ---- int8 of the CNN: post-training variants, and QAT against a float fine-tune of the same schedule ----
int8_float=exp/student_kd_s$first_seed/model   # stage 8's distilled student
# int8_variant NAME:FLAGS -> sets int8_name and int8_flags (an array)
int8_variant() {
    [[ $1 =~ ^[A-Za-z0-9_.-]+:--. ]] ||
        die "int8_ptq: '$1' is not NAME:FLAGS (NAME of letters, digits, _.-; e.g. conv_bc:--mode=static-conv,--bias-correction)"
    int8_name=${1%%:*}
    IFS=, read -r -a int8_flags <<< "${1#*:}"
}

if stage_begin 17 "int8 of the CNN: post-training variants, QAT and its float control ($int8_float)" $stamps "8"; then
    [ -f "$int8_float/model.pth" ] || die "$int8_float not found: run stage 8 first (seeds $seeds)"
    [ -f "$student_teacher/model.pth" ] || die "student_teacher: $student_teacher is not a model directory"
    for v in $int8_ptq; do
        int8_variant "$v"
        run_logged "exp/logs/quantize_int8_$int8_name.log" asrc-quantize "$int8_float" "exp/int8/$int8_name/model" \
            "${int8_flags[@]}" --calib "$int8_calib" --activation-bits "$int8_activation_bits" --overwrite
    done
    fresh_outputs exp/int8/ft_float exp/int8/ft_qat
    qat_flags=(--qat "activation_bits=$int8_activation_bits")
    for kv in $int8_qat; do qat_flags+=(--qat "$kv"); done
    common=(--config "$int8_qat_config" --model_conf "teacher=$student_teacher" --encoder_conf "init=$int8_float"
            --train_data_dir data/train --valid_data_dir data/dev --token_list "$student_teacher/tokens.txt"
            --export_checkpoint latest.pth)
    # Same start, data, seed and batches; only --qat differs. One after the other: each run also holds
    # the teacher, and this machine's memory is short.
    for m in ft_float ft_qat; do
        extra=()
        [ $m = ft_qat ] && extra=("${qat_flags[@]}")
        log "fine-tune $m: log exp/logs/train_int8_$m.log (tensorboard --logdir exp/int8/$m)"
        # shellcheck disable=SC2086
        $train_cmd exp/logs/train_int8_$m.log \
            asrc-train "${common[@]}" "${extra[@]}" \
                --output_dir exp/int8/$m --export_model_dir exp/int8/$m/model $student_args
    done
    stage_done 17 $stamps
fi

if stage_begin 18 "int8: decoding, scoring data/test -> exp/RESULTS_int8.md" $stamps "17"; then
    # The float student as stage 10 decoded and scored it (decoded here only when missing).
    float_model="student_kd_s$first_seed=$int8_float"
    int8_models=
    what=(--what "student_kd_s$first_seed" "float student (stage 8)")
    for v in $int8_ptq; do
        int8_variant "$v"
        int8_models="$int8_models int8_$int8_name=exp/int8/$int8_name/model@exp/int8/$int8_name"
        what+=(--what "int8_$int8_name" "asrc-quantize ${int8_flags[*]//=/ }")
    done
    int8_models="$int8_models ft_float=exp/int8/ft_float/model@exp/int8/ft_float"
    int8_models="$int8_models ft_qat=exp/int8/ft_qat/model@exp/int8/ft_qat"
    what+=(--what ft_float "fine-tuned ($int8_qat_config), float: the control"
           --what ft_qat "the same fine-tune with QAT (qat: activation_bits=$int8_activation_bits $int8_qat), int8 export")
    decode_score_missing "$float_model" test
    decode_sets "$int8_models" test
    score_sets "$int8_models" test
    int8_models="$float_model$int8_models"
    # shellcheck disable=SC2046
    run_logged exp/logs/int8_summary.log local/int8_summary.py --out exp/int8_summary.md \
        --reference "student_kd_s$first_seed" --control ft_qat ft_float "${what[@]}" \
        $(results_rows "$int8_models" test)
    write_results exp/logs/results_int8.log exp/RESULTS_int8.md "$int8_models" test --note exp/int8_summary.md
    cat exp/RESULTS_int8.md
    stage_done 18 $stamps
fi
if stage_begin 19 "silence and long recordings: whole, trimmed or split at pauses, in windows -> exp/RESULTS_long.md" $stamps "1"; then
    for s in dev test; do
        run_logged "exp/logs/concat_${s}_long.log" local/concat_long.py "data/$s" "data/${s}_long" \
            --max-seconds "$long_max_seconds"
    done
    # and all of AN4 test as one recording of 7 minutes, ten speakers one after the other
    run_logged exp/logs/concat_test_onelong.log local/concat_long.py data/test data/test_onelong \
        --max-seconds 3600 --across-speakers
    # the short utterances with $pad_seconds s of quiet noise on either side
    short_sets="dev test"
    [ -f data/test_degraded/wav.scp ] && short_sets="$short_sets test_degraded"
    padded_sets=
    for s in $short_sets; do
        run_logged "exp/logs/pad_${s}.log" local/pad_noise.py "data/$s" "data/${s}_padded" \
            --seconds "$pad_seconds" --noise-db "$pad_noise_db"
        padded_sets="$padded_sets ${s}_padded"
    done
    long_sets="dev_long test_long test_onelong"
    rows=()
    for m in $long_models; do
        label=${m%%=*}; dir=${m#*=}
        for mode in none chunk vad; do
            lm="${label}_$mode=$dir@exp/long/${label}_$mode"
            sets=$long_sets
            [ $mode != chunk ] && sets="$short_sets $padded_sets $sets"  # windows leave short utterances whole
            decode_args="--segment $mode --chunk-seconds $long_chunk_seconds" decode_sets "$lm" "$sets"
            score_sets "$lm" "$sets"
            # shellcheck disable=SC2207
            rows+=($(results_rows "$lm" "$sets"))
        done
    done
    run_logged exp/logs/results_long.log asrc-results --out exp/RESULTS_long.md "${rows[@]}"
    cat exp/RESULTS_long.md
    # how far the word confidences of asrc-transcribe's CTM / JSON tell right words from wrong
    for m in $long_models; do
        for s in $short_sets; do
            run_logged "exp/logs/word_confidence_${m%%=*}_$s.log" local/word_confidence.py --model "${m#*=}" \
                --data "data/$s" --out "exp/long/word_confidence_${m%%=*}_$s.md"
        done
    done
    stage_done 19 $stamps
fi

if stage_begin 20 "word $lm_order-gram LM, beam search tuned on dev -> exp/RESULTS_lm.md" $stamps "1"; then
    lm=exp/lm/an4.arpa
    run_logged exp/logs/train_lm.log local/train_lm.sh data/train/text "$lm_order" "$lm"
    lm_sets=test
    [ -f data/test_degraded/wav.scp ] && lm_sets="test test_degraded"
    greedy_models= ; best_models= ; : > exp/lm/tuning.md
    for m in $lm_models; do
        label=${m%%=*}; dir=${m#*=}
        grid=()
        for lw in $lm_weights; do
            for ws in $lm_word_scores; do
                g="${label}_lw${lw}_ws$ws=$dir@exp/lm/$label/lw${lw}_ws$ws"
                decode_args="--method beam --lm $lm --lexicon-words $lm --lm-weight $lw --word-score $ws" \
                    decode_sets "$g" dev
                score_sets "$g" dev
                grid+=("$lw" "$ws" "exp/lm/$label/lw${lw}_ws$ws/decode_dev")
            done
        done
        run_logged "exp/logs/lm_tune_$label.log" local/lm_tune.py --out "exp/lm/$label/tuning.md" \
            --title "$label on AN4 dev (beam search, $lm_order-gram LM):" "${grid[@]}"
        read -r best_lw best_ws < <(grep -v '^#' "exp/logs/lm_tune_$label.log" | tail -n 1)
        log "$label: LM weight $best_lw, word score $best_ws (exp/lm/$label/tuning.md)"
        { cat "exp/lm/$label/tuning.md"; echo; } >> exp/lm/tuning.md
        b="${label}_lm=$dir@exp/lm/$label/best"
        decode_args="--method beam --lm $lm --lexicon-words $lm --lm-weight $best_lw --word-score $best_ws" \
            decode_sets "$b" "dev $lm_sets"
        score_sets "$b" "dev $lm_sets"
        greedy_models="$greedy_models ${label}_greedy=$dir@exp/lm/$label/greedy"
        best_models="$best_models $b"
    done
    decode_sets "$greedy_models" "dev $lm_sets"
    score_sets "$greedy_models" "dev $lm_sets"
    write_results exp/logs/results_lm.log exp/RESULTS_lm.md "$greedy_models $best_models" "dev $lm_sets" \
        --note exp/lm/tuning.md
    cat exp/RESULTS_lm.md
    stage_done 20 $stamps
fi
log "done: stages $stage..$stop_stage"
