#!/usr/bin/env bash
# Width first, then the rest (egs/an4/RESULTS.md, "Pruning the width too"): the teacher pruned in
# its width alone (conf/prune_width_first.yaml, 300 updates), the narrowed model pruned in the rest
# (conf/prune_after_width.yaml, 300), the final distillation (conf/prune_final_distill.yaml, 100),
# each decoded and scored on AN4 test. Run from egs/an4 after stages 1-2: local/prune_width_first.sh
set -euo pipefail
. ./path.sh
common=(--model_conf "teacher=teacher" --train_data_dir data/train --valid_data_dir data/dev
        --token_list teacher/tokens.txt --num_workers 0)
asrc-train --config conf/prune_width_first.yaml --prune "target_sparsity=0.48" --encoder_conf "init=teacher" \
    "${common[@]}" --output_dir exp/prune_width_first --export_model_dir exp/prune_width_first/model \
    > exp/logs/prune_width_first.log 2>&1
asrc-info exp/prune_width_first/model --json > exp/logs/info_prune_width_first.json
asrc-train --config conf/prune_after_width.yaml --prune "target_sparsity=0.83" \
    --encoder_conf "init=exp/prune_width_first/model" "${common[@]}" --output_dir exp/prune_after_width \
    --export_model_dir exp/prune_after_width/model > exp/logs/prune_after_width.log 2>&1
asrc-train --config conf/prune_final_distill.yaml --encoder_conf "init=exp/prune_after_width/model" "${common[@]}" \
    --output_dir exp/pruned_after_width --export_model_dir exp/pruned_after_width/model \
    --export_checkpoint valid.cer.ave.pth > exp/logs/pruned_final_after_width.log 2>&1
for m in prune_width_first prune_after_width pruned_after_width; do
    asrc-decode --model exp/$m/model --data data/test --out exp/$m/decode_test --nj 2
    asrc-score --ref data/test/text --hyp exp/$m/decode_test/text --out exp/$m/decode_test --cer
done
