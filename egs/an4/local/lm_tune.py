#!/usr/bin/env python3
"""Pick the LM weight and word score of beam search from decodings of a dev set: the lowest
WER (then CER) among scored decoding directories given as LM_WEIGHT WORD_SCORE DIR triples.
Writes a markdown table of the grid (--out) and prints "LM_WEIGHT WORD_SCORE" of the best.

    local/lm_tune.py --out exp/lm/teacher/tuning.md 1 0 exp/lm/teacher/lw1_ws0/decode_dev 1 2 ...
"""
import argparse
import json
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.errors import AsrcError


def error_rate(decode_dir: Path, unit: str) -> float:
    path = decode_dir / f"score_{unit}" / "score.json"
    if not path.is_file():
        raise AsrcError(f"{path} does not exist: score {decode_dir} first (asrc-score --cer)")
    total = json.loads(path.read_text(encoding="utf-8"))["total"]
    return 100.0 * total["err"] / max(total["wrd"], 1)


@command("lm_tune.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="markdown table of the grid")
    parser.add_argument("--title", default="", help="line above the table")
    parser.add_argument("grid", nargs="+", help="LM_WEIGHT WORD_SCORE DECODE_DIR, repeated")
    args = parser.parse_args(argv)
    if len(args.grid) % 3:
        raise AsrcError(f"expected LM_WEIGHT WORD_SCORE DECODE_DIR triples, got {len(args.grid)} words")
    rows = []
    for i in range(0, len(args.grid), 3):
        lw, ws, d = args.grid[i:i + 3]
        try:
            float(lw), float(ws)
        except ValueError:
            raise AsrcError(f"LM weight {lw!r} / word score {ws!r} of {d} is not a number") from None
        rows.append((lw, ws, error_rate(Path(d), "wer"), error_rate(Path(d), "cer")))
    best = min(rows, key=lambda r: (r[2], r[3]))
    lines = [args.title, ""] if args.title else []
    lines += ["| LM weight | word score | WER % | CER % |", "|---|---|---|---|"]
    for lw, ws, wer, cer in rows:
        mark = "**" if (lw, ws) == best[:2] else ""
        lines.append(f"| {lw} | {ws} | {mark}{wer:.2f}{mark} | {mark}{cer:.2f}{mark} |")
    lines += ["", f"Best: LM weight {best[0]}, word score {best[1]} (lowest WER, then CER)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(best[0], best[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
