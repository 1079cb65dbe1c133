#!/usr/bin/env python3
"""What int8 costs, from this run's scores: CER against the float model and a float control.

One table per dataset: model, what it is, CER, CER minus the float reference's and, for a
model with a control (QAT against the float fine-tune of the same schedule), CER minus the
control's.

    local/int8_summary.py --out exp/int8_summary.md --reference student_kd_s42 \\
        --control ft_qat ft_float --what ft_qat "fine-tuned with QAT" \\
        --row student_kd_s42 test exp/int8/float/decode_test --row ft_qat test exp/int8/ft_qat/decode_test ...

Rows as ``asrc-results --row`` (MODEL DATASET DECODE_DIR, scored by ``asrc-score --cer``),
read with asrc's own readers. Every figure is the one RESULTS.md prints (Err, one decimal) or
a difference of two of them, so the summary cannot disagree with the tables of the same run.
"""

import argparse
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.core.files import atomic_write
from asrc.errors import AsrcError
from asrc.score.results import record_from_decode_dir


def _err(counts) -> str:
    """The Err cell of RESULTS.md (asrc.score.results prints percentages with one decimal)."""
    return f"{counts.percentages()['err']:.1f}"


def _minus(a: str, b: str) -> str:
    """Difference of two one-decimal figures, exact (in tenths, unlike 33.3 - 16.7 in floats)."""
    return f"{(round(float(a) * 10) - round(float(b) * 10)) / 10:+.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summarise(records, reference: str, controls: dict, what: dict) -> str:
    """The markdown summary of ``records`` (:class:`asrc.score.results.ResultRecord` with ``cer``)."""
    found = {(r.model, r.dataset): r for r in records}
    datasets = list(dict.fromkeys(r.dataset for r in records))
    lines = ["", "## int8 of the CNN: the differences (computed from the tables above)", ""]
    for dataset in datasets:
        ref = found.get((reference, dataset))
        chars = ref.cer.wrd if ref is not None else None
        size = f": {chars} characters, one is {100 / chars:.2g} points" if chars else ""
        lines += [f"### {dataset}{size}", "",
                  f"|model|what|CER|CER - {reference}|CER - control|", "|---|---|---|---|---|"]
        for r in records:
            if r.dataset != dataset:
                continue
            cer = _err(r.cer)
            vs_ref = _minus(cer, _err(ref.cer)) if ref is not None else "-"
            control = found.get((controls[r.model], dataset)) if r.model in controls else None
            vs_control = f"{_minus(cer, _err(control.cer))} ({control.model})" if control is not None else "-"
            lines.append(f"|{_cell(r.model)}|{_cell(what.get(r.model, '-'))}|{cer}|{vs_ref}|{vs_control}|")
        lines.append("")
    return "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="int8_summary.py", description=__doc__.split("\n")[0],
                            epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="markdown file to write")
    parser.add_argument("--row", nargs=3, action="append", required=True, metavar=("MODEL", "DATASET", "DECODE_DIR"),
                        help="a decode dir scored by asrc-score --cer (repeat; table order)")
    parser.add_argument("--reference", required=True, metavar="MODEL",
                        help="the float model every CER is compared with")
    parser.add_argument("--control", nargs=2, action="append", default=[], metavar=("MODEL", "CONTROL"),
                        help="also compare MODEL with CONTROL (e.g. QAT with its float fine-tune; repeat)")
    parser.add_argument("--what", nargs=2, action="append", default=[], metavar=("MODEL", "TEXT"),
                        help="what MODEL is (mode, options; repeat)")
    return parser


@command("int8_summary.py")
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    models = list(dict.fromkeys(m for m, _, _ in args.row))
    seen = set()
    for model, dataset, _ in args.row:
        if (model, dataset) in seen:
            raise AsrcError(f"--row {model} {dataset} is given twice")
        seen.add((model, dataset))
    named = [("--reference", args.reference)] + [("--control", m) for pair in args.control for m in pair]
    named += [("--what", m) for m, _ in args.what]
    unknown = [f"{flag} {m}" for flag, m in named if m not in models]
    if unknown:
        raise AsrcError(f"{', '.join(unknown)}: no --row of that model (models: {' '.join(models)})")
    records = []
    for model, dataset, decode_dir in args.row:
        record = record_from_decode_dir(model, dataset, decode_dir)  # asrc's readers of asrc-score's files
        if record.cer is None:
            raise AsrcError(f"{decode_dir}: no score_cer/score.json (score with asrc-score --cer)")
        records.append(record)
    text = summarise(records, args.reference, dict(args.control), dict(args.what))
    with atomic_write(args.out) as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
