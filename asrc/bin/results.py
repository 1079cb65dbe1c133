"""asrc-results: RESULTS.md (ESPnet's form, plus size and RTF per row) from scored decode dirs.

Usage:
    asrc-results --out exp/RESULTS.md \\
        --row teacher test_clean exp/teacher/decode_test_clean \\
        --row student test_clean exp/student/decode_test_clean \\
        [--note notes.md] [--wer-json exp/wer.json --wer-dataset test_clean]

Each decode dir is what ``asrc-decode`` + ``asrc-score`` wrote (``score_wer/score.json``,
optional ``score_cer/`` and ``rtf.json``). ``--note`` appends a markdown file's text;
``--wer-json`` writes ``{model: WER}`` for one dataset (for ``asrc-bench footprint --wer``).
"""

import argparse
import json
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.core.files import atomic_write
from asrc.errors import AsrcError
from asrc.score.results import _counts, record_from_decode_dir, render_results


@command("asrc-results")
def main(argv=None) -> int:
    parser = ArgumentParser(prog="asrc-results", description=__doc__.split("\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="RESULTS.md to write")
    parser.add_argument("--row", nargs=3, action="append", required=True, metavar=("MODEL", "DATASET", "DECODE_DIR"))
    parser.add_argument("--note", type=Path, help="markdown appended after the tables")
    parser.add_argument("--wer-json", type=Path, help="write {model: WER} of --wer-dataset here")
    parser.add_argument("--wer-dataset", help="dataset for --wer-json (default: the first row's)")
    args = parser.parse_args(argv)
    if args.out.is_dir():
        raise AsrcError(f"--out {args.out} is a directory; give the RESULTS.md file to write")

    records = []
    for model, dataset, decode_dir in args.row:
        if not (Path(decode_dir) / "score_wer" / "score.json").is_file():
            raise AsrcError(f"{decode_dir}: no score_wer/score.json (run asrc-score first)")
        records.append(record_from_decode_dir(model, dataset, decode_dir))
    text = render_results(records)
    if args.note:
        text += "\n" + args.note.read_text(encoding="utf-8")
    with atomic_write(args.out) as f:
        f.write(text)
    if args.wer_json:
        dataset = args.wer_dataset or records[0].dataset
        wer = {r.model: round(_counts(r.wer).percentages()["err"], 2) for r in records if r.dataset == dataset}
        with atomic_write(args.wer_json) as f:
            json.dump(wer, f, indent=1)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
