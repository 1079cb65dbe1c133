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
# A stage whose stamp exists is skipped unless the user passes --force_stages "3 5" (or "all"),
# or it is out of date (make's rule): an option it reads (utils/stage_inputs.py finds them in
# run.sh) has another value now, a file or model folder such an option names has changed, or a
# stage it depends on (stage_begin's DEPS: by default every earlier stage) has been redone or
# started again since. Such a stage is redone, as forced, saying why. A stage's stamp is removed
# when it starts, so a killed or failed stage is never taken for done.
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

# Options that say how a stage runs, not what it makes: not part of a stage's record.
_STAGE_CONTROL=" stage stop_stage force_stages nj student_jobs train_threads decode_threads train_cmd decode_cmd "

_check_stage_options() {
    [ -z "${_stage_options_checked:-}" ] || return 0
    _stage_options_checked=1
    [[ $stage =~ ^[0-9]+$ ]] || die "--stage $stage: not a stage number"
    [[ $stop_stage =~ ^[0-9]+$ ]] || die "--stop_stage $stop_stage: not a stage number"
    [ "$stop_stage" -ge "$stage" ] || die "--stop_stage $stop_stage is before --stage $stage: no stage would run"
    local w
    for w in ${force_stages:-}; do
        [[ $w =~ ^[0-9]+$ ]] || [ "$w" = all ] || die "--force_stages '$force_stages': give stage numbers separated by spaces, or all"
    done
}

# _stage_input_names N : the options stage N reads (utils/stage_inputs.py on run.sh), found once
# per stage: stage_begin looks them up in the recipe's own shell, so that the subshells of
# _stage_outdated, fresh_outputs and stage_done read them from _stage_inputs.
declare -A _stage_inputs=()
_stage_input_names() {
    if [ -z "${_stage_inputs[$1]+x}" ]; then
        _stage_inputs[$1]=$(python3 "$(dirname "${BASH_SOURCE[0]}")/stage_inputs.py" "$(_recipe_script)" "$1" \
                            ${_po_options:-}) || die "utils/stage_inputs.py failed on $(_recipe_script) stage $1"
    fi
    echo "${_stage_inputs[$1]}"
}

# _stage_record N : the options stage N reads with their values, and a checksum of each file (or
# model folder's config.yaml + model.pth) they name; one "option ..." / "file ..." line each.
_stage_record() {
    local n=$1 name value f
    for name in $(_stage_input_names "$n"); do
        [[ $_STAGE_CONTROL == *" $name "* ]] && continue
        value=${!name-}
        printf 'option %s=%q\n' "$name" "$value"
        if [ -f "$value" ]; then
            printf 'file %s %s\n' "$(md5sum < "$value" | cut -c1-32)" "$value"
        elif [ -d "$value" ]; then
            for f in "$value/config.yaml" "$value/model.pth"; do
                if [ -f "$f" ]; then printf 'file %s %s\n' "$(md5sum < "$f" | cut -c1-32)" "$f"; fi
            done
        fi
    done
    return 0
}

# _stage_id DIR M : the id in stage M's stamp ("" without a stamp or for a stamp that has none).
_stage_id() { [ -f "$1/stage$2.done" ] && sed -n 's/^id //p' "$1/stage$2.done" | head -n 1 || true; }

# _stage_deps N : the stages stage N depends on, transitively.
_stage_deps() {
    local n=$1 out=" " todo=${_stage_dep_of[$1]:-} m
    while [ -n "${todo// }" ]; do
        m=${todo%% *}; todo=${todo#"$m"}; todo=${todo# }
        [ -n "$m" ] || continue
        [[ $out == *" $m "* ]] && continue
        out="$out$m "
        todo="$todo ${_stage_dep_of[$m]:-}"
    done
    echo $out
}

# _stage_outdated N DIR : why stage N's stamp is out of date (empty when it is not; see the top).
_stage_outdated() {
    local n=$1 dir=$2 stamp="$2/stage$1.done" m recorded current changed
    grep -q '^id ' "$stamp" || return 0  # a stamp of before these records: nothing to compare
    changed=$(comm -3 <(grep -E '^(option|file) ' "$stamp" | sort) <(_stage_record "$n" | sort) \
        | sed -E 's/^\t/now: /; s/^(option|file)/was: \1/' | head -n 6 | tr '\n' ';')
    if [ -n "$changed" ]; then
        echo "its inputs changed (${changed%;})"
        return 0
    fi
    for m in $(_stage_deps "$n"); do
        recorded=$(sed -n "s/^after $m //p" "$stamp" | head -n 1)
        current=$(_stage_id "$dir" "$m")
        if [ -z "$current" ] && [ -n "$recorded" ]; then
            echo "stage $m, which it depends on, has been started again and not finished"
            return 0
        fi
        if [ "$current" != "$recorded" ]; then
            echo "stage $m, which it depends on, has been redone since"
            return 0
        fi
    done
}

declare -A _stage_dep_of=()
_stage_seen=""

# stage_begin N DESCRIPTION STAMP_DIR [DEPS] -> 0 if the stage must run now. DEPS: the stages
# whose outputs it reads ("1 2"); default: every stage before it.
stage_begin() {
    local n=$1 desc=$2 dir=$3 why
    _check_stage_options
    if [ $# -ge 4 ]; then _stage_dep_of[$n]=$4; else _stage_dep_of[$n]=$_stage_seen; fi
    _stage_seen="$_stage_seen $n"
    stage_redo=false
    _stage_now=$n
    [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
    _stage_input_names "$n" > /dev/null
    if [ -f "$dir/stage$n.done" ]; then
        if [[ " ${force_stages:-} " != *" $n "* ]] && [ "${force_stages:-}" != all ]; then
            why=$(_stage_outdated "$n" "$dir")
            if [ -z "$why" ]; then
                log "stage $n: $desc — already done ($dir/stage$n.done); --force_stages $n redoes it"
                return 1
            fi
            log "stage $n: out of date, redone: $why"
        fi
        stage_redo=true
    fi
    log "stage $n: $desc"
    mkdir -p "$dir"
    rm -f "$dir/stage$n.done"  # not done until stage_done: a kill or failure must not leave it
    # The command that resumes the recipe from this stage, quoted so that bash reads back the
    # same words (paths with spaces, --train_args "--max_epoch 1"), without --stage and
    # --force_stages (a forced stage resumes, not starts over again); written aside and moved
    # into place, since bash may be reading the previous one (bash exp/stages/stageN.resume).
    local args=() skip=false w
    eval "args=(${_recipe_args:-})"
    {
        printf 'cd %q && %q' "$PWD" "$(_recipe_script)"
        for w in "${args[@]+"${args[@]}"}"; do
            if $skip; then skip=false; continue; fi
            case $w in
                --stage|--force_stages|--force-stages) skip=true; continue ;;
                --stage=*|--force_stages=*|--force-stages=*) continue ;;
            esac
            printf ' %q' "$w"
        done
        printf ' --stage %q\n' "$n"
    } > "$dir/stage$n.resume.tmp"
    mv -f "$dir/stage$n.resume.tmp" "$dir/stage$n.resume"
    return 0
}

# fresh_outputs DIR... : inside a stage that is redone (--force_stages, or out of date: its
# stamp exists), move each DIR aside to DIR.old-<time> so that the trainer starts over instead
# of resuming the finished run (which would only re-export the old model). A stage that runs
# for the first time or after a kill keeps its dirs and resumes. A *.yaml / *.yml file named by
# an option the stage reads must exist first (a typo would fail the stage after the move).
fresh_outputs() {
    [ "${stage_redo:-false}" = true ] || return 0
    local d old name value
    # A config file the stage reads that is not there (a typo) fails the stage anyway: say so
    # before the finished outputs are moved aside, not after.
    for name in $(_stage_input_names "${_stage_now:-0}"); do
        value=${!name-}
        if [[ $value == *.yaml || $value == *.yml ]] && [ ! -f "$value" ]; then
            die "--$name $value: no such file (stage ${_stage_now:-?} not started; nothing was moved)"
        fi
    done
    for d in "$@"; do
        [ -e "$d" ] || continue
        old="$d.old-$(date '+%Y%m%d-%H%M%S')"
        mv "$d" "$old"
        log "moved the previous $d to $old: the stage starts over"
    done
}

# stage_done N STAMP_DIR : the stamp: when, an id, the ids of the stages it depends on, and
# what it read (_stage_record); written aside and moved into place.
stage_done() {
    local n=$1 dir=$2 m id
    {
        date '+%Y-%m-%d %H:%M:%S'
        echo "id $(date '+%s.%N')-$$-$RANDOM"
        for m in $(_stage_deps "$n"); do
            id=$(_stage_id "$dir" "$m")
            [ -z "$id" ] || echo "after $m $id"
        done
        _stage_record "$n"
    } > "$dir/stage$n.done.tmp"
    mv -f "$dir/stage$n.done.tmp" "$dir/stage$n.done"
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
    # bash starts background jobs of a script with SIGINT ignored: stop them when the recipe
    # stops (Ctrl-C, kill, an error), or they keep training into the folders of a later rerun.
    trap '_stop_bg_jobs' EXIT
    trap '_stop_bg_jobs; exit 130' INT
    trap '_stop_bg_jobs; exit 143' TERM
    "$@" &
    _bg_pids+=($!)
    _bg_logs+=("$logfile")
}
_stop_bg_jobs() {
    local p
    for p in "${_bg_pids[@]+"${_bg_pids[@]}"}"; do
        pkill -TERM -P "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
    done
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
