#!/usr/bin/env bash
# Job runner used through cmd.sh ($train_cmd, $decode_cmd), like Kaldi's run.pl / slurm.pl:
#
#   run_cmd.sh [--backend local|slurm] [--gpu N] [--mem 4G] [--time 1:00:00] LOG COMMAND ARGS...
#
# local runs COMMAND here with its output in LOG; slurm wraps it in `srun` with the resources
# given (the cluster's defaults otherwise). Exit status is COMMAND's.
set -u
backend=${ASRC_BACKEND:-local}
gpu=0
mem=
time_limit=
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) backend=$2; shift 2 ;;
        --gpu) gpu=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --time) time_limit=$2; shift 2 ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { echo "usage: $0 [--backend local|slurm] [--gpu N] [--mem M] [--time T] LOG COMMAND ..." >&2; exit 1; }
logfile=$1; shift
mkdir -p "$(dirname "$logfile")"
{ echo "# $*"; echo "# started $(date '+%Y-%m-%d %H:%M:%S') on $(hostname) ($backend)"; } > "$logfile"
case "$backend" in
    local)
        "$@" >> "$logfile" 2>&1 ;;
    slurm)
        opts=(--job-name "asrc-$(basename "$logfile" .log)" --ntasks 1)
        [ "$gpu" -gt 0 ] && opts+=(--gres "gpu:$gpu")
        [ -n "$mem" ] && opts+=(--mem "$mem")
        [ -n "$time_limit" ] && opts+=(--time "$time_limit")
        srun "${opts[@]}" "$@" >> "$logfile" 2>&1 ;;
    *)
        echo "$0: unknown backend '$backend' (local or slurm)" >&2; exit 1 ;;
esac
rc=$?
echo "# ended $(date '+%Y-%m-%d %H:%M:%S') with status $rc" >> "$logfile"
if [ $rc != 0 ]; then
    echo "$0: '$*' failed with status $rc; last lines of $logfile:" >&2
    tail -n 20 "$logfile" >&2
fi
exit $rc
