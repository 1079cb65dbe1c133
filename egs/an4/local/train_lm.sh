#!/usr/bin/env bash
# A word n-gram LM (ARPA) of the transcripts of a Kaldi text file, with IRSTLM's tlm (Debian
# package irstlm): modified shift-beta smoothing, IRSTLM's counterpart of modified Kneser-Ney;
# sentence marks <s> ... </s> added, utterance ids dropped. A text too small for its
# count-of-counts (a few sentences) falls back to Witten-Bell smoothing, saying so.
#
#   local/train_lm.sh data/train/text 3 exp/lm/an4_3g.arpa
set -euo pipefail
if [ $# != 3 ]; then
    echo "usage: $0 TEXT ORDER OUT.arpa" >&2
    exit 2
fi
text=$1 order=$2 out=$3
tlm=
for c in "${IRSTLM:+$IRSTLM/bin/tlm}" /usr/lib/irstlm/bin/tlm "$(command -v tlm || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then tlm=$c; break; fi
done
if [ -z "$tlm" ]; then
    echo "$0: error: IRSTLM's tlm not found (apt-get install irstlm, or set IRSTLM=/path/to/irstlm)" >&2
    exit 1
fi
if [ ! -s "$text" ]; then
    echo "$0: error: $text is missing or empty" >&2
    exit 1
fi
case $order in ''|*[!0-9]*) echo "$0: error: ORDER must be a positive integer, got '$order'" >&2; exit 1;; esac
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Kaldi text: "utt-id word word ..."; utterances with no words are left out.
awk 'NF > 1 { $1 = ""; sub(/^ +/, ""); print "<s> " $0 " </s>" }' "$text" > "$tmp/sentences.txt"
if [ ! -s "$tmp/sentences.txt" ]; then
    echo "$0: error: $text has no transcribed utterance" >&2
    exit 1
fi
smoothing=msb
if ! "$tlm" -tr="$tmp/sentences.txt" -n="$order" -lm=$smoothing -o="$tmp/lm.arpa" > "$tmp/tlm.log" 2>&1; then
    if grep -q "count-of-counts cannot be estimated" "$tmp/tlm.log"; then
        echo "$0: $text is too small for modified shift-beta smoothing; using Witten-Bell" >&2
        smoothing=wb
        "$tlm" -tr="$tmp/sentences.txt" -n="$order" -lm=$smoothing -o="$tmp/lm.arpa" > "$tmp/tlm.log" 2>&1 || smoothing=
    else
        smoothing=
    fi
    if [ -z "$smoothing" ]; then
        cat "$tmp/tlm.log" >&2
        echo "$0: error: tlm failed on $text" >&2
        exit 1
    fi
fi
mv "$tmp/lm.arpa" "$out"
echo "$out: $(grep -m1 -A"$order" '^\\data\\' "$out" | tail -n +2 | tr -s ' ' | tr '\n' ' ')from $(wc -l < "$tmp/sentences.txt") sentences ($smoothing)"
