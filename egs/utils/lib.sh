#!/usr/bin/env bash
# Shared helpers for egs/*/run.sh: logging, idempotent stages with .done stamps, logged commands.
#
#   _recipe_args=${1+$(printf ' %q' "$@")}   # first thing: the command line, shell-quoted
#   . utils/parse_options.sh
#   . utils/lib.sh
#   if stage_begin 3 "prepare data" exp/stages; then
#       run_logged exp/logs/prepare.log asrc-data prepare-an4 ...
#       stage_done 3 exp/stages
#   fi
#
# A stage whose stamp exists is skipped unless the user passes --force_stages "3 5" (or "all").
# Training commands resume a killed run from its last checkpoint; a forced stage must start
# over instead, so training stages name their output dirs with fresh_outputs (see below).

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0")) $*" >&2; }

die() { log "ERROR: $*"; exit 1; }

# The running script as a path valid from $PWD: recipes cd to their own folder first, so a
# relative $0 (egs/an4/run.sh) no longer resolves there, and a bare name (run.sh) would be
# looked up in PATH.
_recipe_script() {
    if [[ $0 == /* ]] || [[ $0 == */* && -f $0 ]]; then echo "$0"; else echo "./${0##*/}"; fi
}

# stage_begin N DESCRIPTION STAMP_DIR -> 0 if the stage must run now.
stage_begin() {
    local n=$1 desc=$2 dir=$3
    stage_redo=false
    [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
    if [ -f "$dir/stage$n.done" ]; then
        if [[ " ${force_stages:-} " != *" $n "* ]] && [ "${force_stages:-}" != all ]; then
            log "stage $n: $desc — already done ($dir/stage$n.done); --force_stages $n redoes it"
            return 1
        fi
        stage_redo=true
    fi
    log "stage $n: $desc"
    mkdir -p "$dir"
    # The command that resumes the recipe from this stage, quoted so that bash reads back the
    # same words (paths with spaces, --train_args "--max_epoch 1").
    local args=${_recipe_args:-}
    {
        printf 'cd %q && %q' "$PWD" "$(_recipe_script)"
        [ -z "$args" ] || printf ' %s' "${args# }"
        printf ' --stage %q\n' "$n"
    } > "$dir/stage$n.resume"
    return 0
}

# fresh_outputs DIR... : inside a stage that --force_stages redoes (its stamp exists), move
# each DIR aside to DIR.old-<time> so that the trainer starts over instead of resuming the
# finished run (which would only re-export the old model). A stage that runs for the first
# time or after a kill keeps its dirs and resumes.
fresh_outputs() {
    [ "${stage_redo:-false}" = true ] || return 0
    local d old
    for d in "$@"; do
        [ -e "$d" ] || continue
        old="$d.old-$(date '+%Y%m%d-%H%M%S')"
        mv "$d" "$old"
        log "moved the previous $d to $old: the stage starts over"
    done
}

stage_done() {
    local n=$1 dir=$2
    date '+%Y-%m-%d %H:%M:%S' > "$dir/stage$n.done"
}

# run_logged LOG CMD ARGS... : run CMD with its output in LOG (and on the terminal);
# on failure print the log's tail and stop the recipe.
run_logged() {
    local logfile=$1; shift
    mkdir -p "$(dirname "$logfile")"
    echo "# $*" > "$logfile"
    echo "# started $(date '+%Y-%m-%d %H:%M:%S')" >> "$logfile"
    local rc
    # errexit/pipefail do not fire inside "|| true": the status is read from PIPESTATUS instead.
    { "$@" 2>&1 | tee -a "$logfile"; rc=${PIPESTATUS[0]}; } || true
    if [ "$rc" != 0 ]; then
        echo "# failed with status $rc $(date '+%Y-%m-%d %H:%M:%S')" >> "$logfile"
        log "ERROR: '$*' failed (status $rc); last lines of $logfile:"
        tail -n 20 "$logfile" >&2
        exit "$rc"
    fi
    echo "# finished $(date '+%Y-%m-%d %H:%M:%S')" >> "$logfile"
}

# spec_value SPEC FIELD : one field of a student spec (asrc.models.student_spec.StudentSpec),
# e.g. "spec_value conf/student.yaml init_from" -> teacher or random.
spec_value() {
    python -c 'import sys; from asrc.models.student_spec import StudentSpec
print(getattr(StudentSpec.from_yaml_file(sys.argv[1]), sys.argv[2]))' "$1" "$2"
}

# Jobs side by side: "bg_job LOG CMD ARGS..." starts CMD in the background (CMD is usually
# "$train_cmd LOG ..."), "wait_jobs" waits for every job started so far and stops the recipe
# naming the log of each one that failed.
_bg_pids=()
_bg_logs=()
bg_job() {
    local logfile=$1; shift
    "$@" &
    _bg_pids+=($!)
    _bg_logs+=("$logfile")
}
wait_jobs() {
    local i failed=()
    for i in "${!_bg_pids[@]}"; do
        wait "${_bg_pids[$i]}" || failed+=("${_bg_logs[$i]}")
    done
    _bg_pids=()
    _bg_logs=()
    [ ${#failed[@]} -eq 0 ] || die "failed: see ${failed[*]}"
}
