#!/usr/bin/env python3
"""How far a word's confidence (the lowest posterior of its tokens, as asrc-transcribe reports
it) tells a right word from a wrong one: each utterance of a data directory decoded greedily,
its words aligned with the reference (sclite's rules: asrc.score.align), then the share of right
words in each confidence band and the area under the ROC curve (the chance that a right word
is more confident than a wrong one; 0.5 = no information). Markdown to --out.

    local/word_confidence.py --model teacher --data data/test --out exp/word_confidence_test.md
"""
import argparse
import sys
from pathlib import Path

import torch

from asrc.bin._cli import ArgumentParser, command
from asrc.core.audio import read_audio
from asrc.core.tables import read_table
from asrc.decode.ctc import GreedyDecoder, word_confidences
from asrc.decode.model_dir import load_model
from asrc.score.align import align

BANDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0001)


def auc(right, wrong) -> float:
    """P(a right word's confidence > a wrong one's), ties counting half."""
    if not right or not wrong:
        return float("nan")
    scores = sorted([(c, 1) for c in right] + [(c, 0) for c in wrong])
    rank, total, i = 0.0, 0.0, 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j < len(scores) and scores[j][0] == scores[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2
        total += mean_rank * sum(1 for k in range(i, j) if scores[k][1])
        i = j
    n1, n0 = len(right), len(wrong)
    return (total - n1 * (n1 + 1) / 2) / (n1 * n0)


@command("word_confidence.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    net = load_model(Path(args.model))
    dec = GreedyDecoder(net.tokens)
    wav, text = read_table(Path(args.data) / "wav.scp"), read_table(Path(args.data) / "text")
    right, wrong = [], []
    for u in sorted(wav):
        x = torch.from_numpy(read_audio(wav[u], what=f"utterance {u}"))
        with torch.inference_mode():
            hyp = dec(*net(x.unsqueeze(0), torch.tensor([x.shape[0]])))[0]
        confs = word_confidences([net.tokens[i] for i in hyp.ids], hyp.confidences)
        k = 0
        for pair in align(text.get(u, "").split(), [w for w, _ in confs]):
            if pair.hyp is None:
                continue
            (right if pair.op == "C" else wrong).append(confs[k][1])
            k += 1
    lines = [f"Word confidence of `{args.model}` on `{args.data}` (greedy; {len(right)} right and "
             f"{len(wrong)} wrong hypothesis words):", "",
             "| confidence | words | right % |", "|---|---|---|"]
    for lo, hi in zip(BANDS, BANDS[1:]):
        n_right = sum(lo <= c < hi for c in right)
        n = n_right + sum(lo <= c < hi for c in wrong)
        label = f"{lo:g}-{min(hi, 1.0):g}"
        lines.append(f"| {label} | {n} | {100 * n_right / n:.1f} |" if n else f"| {label} | 0 | |")
    lines += ["", f"Area under the ROC curve: {auc(right, wrong):.3f} (0.5: no information, 1: perfect)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
