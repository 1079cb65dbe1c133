#!/usr/bin/env python3
"""Write <teacher_exp>/RESULTS.md from what asrc-decode and asrc-score left in decode_test/.

    python local/teacher_results.py exp/teacher
"""

import sys
from pathlib import Path

from asrc.score.results import record_from_decode_dir, render_results
from asrc.utils.io import atomic_write


def main(argv=None):
    exp = Path((argv or sys.argv[1:])[0])
    text = render_results([record_from_decode_dir("teacher", "an4_test", exp / "decode_test")])
    with atomic_write(exp / "RESULTS.md") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
