#!/usr/bin/env bash
# The decode -> score -> RESULTS.md loop of egs/*/run.sh (source it after utils/lib.sh).
#
#   models="teacher=../an4/teacher student=exp/student/model"   # LABEL=MODEL_DIR[@OUT_DIR]
#   sets="synth/test test=an4_test"                               # SET[=LABEL], data dirs under data/
#   decode_sets "$models" "$sets"     # asrc-decode of data/SET -> OUT_DIR/decode_<SET, / as _>
#   score_sets "$models" "$sets"      # asrc-score (sclite when installed) of each decode dir
#   decode_score_missing "$models" "$sets"  # both, reusing the decoding jobs that still hold
#   write_results exp/logs/results.log exp/RESULTS.md "$models" "$sets" [asrc-results flags...]
#   results_rows "$models" "$sets"    # the --row flags alone (LABEL SET-LABEL DECODE_DIR)
#
# OUT_DIR defaults to exp/LABEL; logs go to exp/logs/{decode,score}_LABEL_SET.log. Uses the
# recipe's $decode_cmd and $nj, and $decode_args (extra asrc-decode flags) when set.

_model_label() { echo "${1%%=*}"; }
_model_dir() { local rest=${1#*=}; echo "${rest%%@*}"; }
_out_dir() { local rest=${1#*=}; if [[ $rest == *@* ]]; then echo "${rest#*@}"; else echo "exp/${1%%=*}"; fi; }
_set_dir() { echo "data/${1%%=*}"; }
_set_name() { local s=${1%%=*}; echo "${s//\//_}"; }
_set_label() { if [[ $1 == *=* ]]; then echo "${1#*=}"; else _set_name "$1"; fi; }
_decode_dir() { echo "$(_out_dir "$1")/decode_$(_set_name "$2")"; }

decode_sets() {
    local m s out
    for m in $1; do
        for s in $2; do
            out=$(_decode_dir "$m" "$s")
            log "decoding $(_set_dir "$s") with $(_model_dir "$m") -> $out (log: exp/logs/decode_$(_model_label "$m")_$(_set_name "$s").log)"
            # shellcheck disable=SC2086
            $decode_cmd "exp/logs/decode_$(_model_label "$m")_$(_set_name "$s").log" \
                asrc-decode --model "$(_model_dir "$m")" --data "$(_set_dir "$s")" --out "$out" --nj "$nj" \
                ${decode_args:-}
        done
    done
}

score_sets() {
    local m s out
    for m in $1; do
        for s in $2; do
            out=$(_decode_dir "$m" "$s")
            run_logged "exp/logs/score_$(_model_label "$m")_$(_set_name "$s").log" asrc-score \
                --ref "$(_set_dir "$s")/text" --hyp "$out/text" --out "$out" --utt2spk "$(_set_dir "$s")/utt2spk" --cer
        done
    done
}

# decode_score_missing MODELS SETS : decode_sets + score_sets of each model and set, reusing an
# earlier stage's decodes where they still hold: asrc-decode redoes only the jobs whose model,
# audio or options changed since (its job fingerprints), so a decode dir made with another
# model of the same label is decoded again, not taken for this one's.
decode_score_missing() {
    local m s dir
    for m in $1; do
        for s in $2; do
            dir=$(_decode_dir "$m" "$s")
            [ -f "$dir/score_cer/score.json" ] && log "$dir: decoded and scored before; asrc-decode reuses the jobs that still hold"
            decode_sets "$m" "$s"
            score_sets "$m" "$s"
        done
    done
}

results_rows() {
    local m s
    for m in $1; do
        for s in $2; do
            echo --row "$(_model_label "$m")" "$(_set_label "$s")" "$(_decode_dir "$m" "$s")"
        done
    done
}

# write_results LOG OUT MODELS SETS [asrc-results flags...]
write_results() {
    local logfile=$1 out=$2 models=$3 sets=$4
    shift 4
    # shellcheck disable=SC2046
    run_logged "$logfile" asrc-results --out "$out" $(results_rows "$models" "$sets") "$@"
}
