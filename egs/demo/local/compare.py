#!/usr/bin/env python3
"""The demo's comparison sentences, from this run's scores: what compression and int8 cost.

    local/compare.py --out exp/comparison.md --row teacher synth_test exp/teacher/decode_synth_test ...

Rows as ``asrc-results --row``. Every figure comes from the decode dirs given, so
``exp/RESULTS.md`` never quotes an earlier run.
"""

import argparse
from pathlib import Path

from asrc.core.files import atomic_write
from asrc.score.results import comparison_note, record_from_decode_dir

PAIRS = [("student", "teacher", "the cost of compression: fewer layers, grouped convolutions, the updates of "
          "`demo_config.yaml`"),
         ("student_int8", "student", "the cost of int8")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--row", nargs=3, action="append", required=True, metavar=("MODEL", "DATASET", "DECODE_DIR"))
    args = parser.parse_args()
    records = [record_from_decode_dir(*row) for row in args.row]
    with atomic_write(args.out) as f:
        f.write("\n## This run: the differences (computed from the tables above)\n\n" + comparison_note(records, PAIRS))


if __name__ == "__main__":
    main()
