#!/usr/bin/env bash
# After stage 4's 12-layer pass: export (if the pass was stopped early), decode and score the
# teacher on AN4 test, its degraded copy and the synthetic dev sets (what run.sh stages 5-6 do).
#   local/teacher12_finish.sh [exp/teacher12] [checkpoint]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
exp=${1:-exp/teacher12}
ckpt=${2:-valid.cer.ave.pth}
if [ ! -f "$exp/model/model.pth" ]; then
    python -c "import sys; from asrc.models.espnet_dir import export_model_dir; export_model_dir(sys.argv[1], sys.argv[2], checkpoint=sys.argv[3])" \
        "$exp" "$exp/model" "$ckpt"
fi
rows=()
for s in test test_degraded synth/words_dev synth/lj_dev; do
    name=${s//\//_}
    OMP_NUM_THREADS=2 asrc-decode --model "$exp/model" --data "data/$s" --out "$exp/decode_$name" --nj 1
    asrc-score --ref "data/$s/text" --hyp "$exp/decode_$name/text" --out "$exp/decode_$name" \
        --utt2spk "data/$s/utt2spk" --cer
    case $s in test) label=an4_test ;; test_degraded) label=an4_test_degraded ;; *) label=$name ;; esac
    rows+=(--row teacher "$label" "$exp/decode_$name")
done
asrc-results --out "$exp/RESULTS.md" "${rows[@]}"
cat "$exp/RESULTS.md"
