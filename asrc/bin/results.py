"""asrc-results: RESULTS.md (ESPnet's form, plus size and RTF per row) from scored decode dirs.

Usage:
    asrc-results --out exp/RESULTS.md \\
        --row teacher test_clean exp/teacher/decode_test_clean \\
        --row student test_clean exp/student/decode_test_clean \\
        [--note notes.md] [--wer-json exp/wer.json --cer-json exp/cer.json --wer-dataset test_clean]

Each decode dir is what ``asrc-decode`` + ``asrc-score`` wrote (``score_wer/score.json``,
optional ``score_cer/`` and ``rtf.json``). ``--note`` appends a markdown file's text;
``--wer-json`` writes ``{model: WER}`` for one dataset (for ``asrc-bench footprint --wer``),
``--cer-json`` ``{model: CER}`` of the same dataset (for ``--cer``; models scored with CER).
"""

import argparse
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.score.results import write_results


@command("asrc-results")
def main(argv=None) -> int:
    parser = ArgumentParser(prog="asrc-results", description=__doc__.split("\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="RESULTS.md to write")
    parser.add_argument("--row", nargs=3, action="append", required=True, metavar=("MODEL", "DATASET", "DECODE_DIR"))
    parser.add_argument("--note", type=Path, help="markdown appended after the tables")
    parser.add_argument("--wer-json", type=Path, help="write {model: WER} of --wer-dataset here")
    parser.add_argument("--cer-json", type=Path, help="write {model: CER} of --wer-dataset here")
    parser.add_argument("--wer-dataset", help="dataset for --wer-json and --cer-json (default: the first row's)")
    args = parser.parse_args(argv)
    write_results(args.out, args.row, note=args.note, wer_json=args.wer_json, wer_dataset=args.wer_dataset,
                  cer_json=args.cer_json)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
