#!/usr/bin/env python3
"""exp/RESULTS_prune.md of the pruning experiment: one table and the goals, from this run's files.

    local/prune_results.py --footprint exp/prune_footprint.json --out exp/RESULTS_prune.md \\
        --plot exp/prune_pareto.png --layer-dropped student_kd_s42 --narrow narrow_kd \\
        --pruned prune_0.7 pruned_0.7 ... \\
        --row teacher test exp/teacher_committed/decode_test --row pruned_0.7 test exp/pruned_0.7/decode_test ...

``--footprint``: what ``asrc-bench footprint --json`` wrote (parameters, MB, latency, RTF of
every row; its teacher row is called ``teacher``). ``--row MODEL DATASET DECODE_DIR`` as
``asrc-results --row``: the decode dir that ``asrc-decode`` + ``asrc-score --cer`` wrote, read
with asrc's reader (``score_wer/``, ``score_cer/``). Models are matched by name, ``_`` and ``-``
alike, as ``asrc-bench footprint --wer`` matches them; a WER/CER the footprint JSON carries
must be the decode dir's, and the parameter count ``asrc-decode`` wrote (``rtf.json``) the
footprint row's (else the two come from different runs or models).

The table: every footprint row, in its order. The goals (thresholds below, fixed by the
experiment's plan; every figure in a goal line is computed here from the inputs):

(a) at the layer-dropped 4-layer student's parameter count (within ``--tolerance``, default
    +-5 %), a pruned student at least 1.5 CER points better than it;
(b) at the narrow student's count (same window), at least 2 points better (with several
    ``--narrow`` rows, e.g. distilled and CTC-only: than the one of the lowest CER);
(c) the pruned student nearest 30 % of the teacher's parameters (within the window around
    that count): CER within 10 % (relative) of the teacher's; where that one is not (or none is
    in the window), a pruned student with fewer parameters than the window that is within 10 %
    meets the goal too (smaller and at least as accurate as asked: it dominates); its line
    says so and names the student in the window, if any.

Among several pruned students in a window the one with the lowest CER counts (equally near
ones in (c) likewise). A goal without a pruned student in its window, or without the model it
compares with, is "not measurable". Differences are taken between the two-decimal figures
the table prints, so a line never disagrees with the table.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import List, Optional, Tuple

from asrc.bin._cli import ArgumentParser, command
from asrc.core.config_files import read_json_object
from asrc.core.files import atomic_write
from asrc.errors import AsrcError
from asrc.score.results import record_from_decode_dir

# The goals of the experiment (issue 14): CER points a pruned student must gain over the
# 4-layer and over the narrow student at their sizes, and the teacher share of (c) with its
# relative CER limit.
MARGIN_LAYER_DROPPED = Decimal("1.5")
MARGIN_NARROW = Decimal("2")
TEACHER_SHARE = Decimal("0.30")
RELATIVE_LIMIT = Decimal("0.10")
MET, NOT_MET, NOT_MEASURABLE = "met", "not met", "not measurable"


def _canon(name: str) -> str:
    return name.replace("_", "-")


def _rate(x: Optional[float]) -> Optional[Decimal]:
    """An error rate as the table prints it (two decimals), for exact differences."""
    return None if x is None else Decimal(f"{x:.2f}")


@dataclass
class Model:
    name: str
    params: int
    mb: float
    latency: float
    rtf: float
    wer: Optional[Decimal] = None
    cer: Optional[Decimal] = None

    @property
    def mparams(self) -> str:
        return f"{self.params / 1e6:.2f} M"


def read_models(footprint_json, rows) -> Tuple[List[Model], dict, str]:
    """The footprint rows with the WER/CER of their decode dirs; the footprint's environment;
    a sentence on the scored set."""
    data = read_json_object(footprint_json, hint="rerun asrc-bench footprint --json")
    if not isinstance(data.get("rows"), list) or not data["rows"]:
        raise AsrcError(f"{footprint_json}: no 'rows' (not asrc-bench footprint --json output)")
    records, first = {}, None
    for model, dataset, decode_dir in rows:
        if _canon(model) in records:
            raise AsrcError(f"--row {model}: given twice")
        records[_canon(model)] = record_from_decode_dir(model, dataset, decode_dir)
        first = first or records[_canon(model)]
    datasets = sorted({r.dataset for r in records.values()})
    if len(datasets) > 1:
        raise AsrcError(f"--row: the models are scored on different datasets ({', '.join(datasets)}); give one")
    models = []
    for row in data["rows"]:
        try:
            m = Model(str(row["name"]), int(row["params"]), float(row["mb"]), float(row["latency"]),
                      float(row["rtf"]))
        except (KeyError, TypeError, ValueError) as e:
            raise AsrcError(f"{footprint_json}: a row lacks name/params/mb/latency/rtf ({e!r}); "
                            "rerun asrc-bench footprint --json") from e
        rec = records.pop(_canon(m.name), None)
        if rec is not None:
            if rec.params is not None and rec.params != m.params:  # rtf.json of asrc-decode
                raise AsrcError(f"{m.name}: its decode dir was made by a model of {rec.params} parameters, its "
                                f"footprint row has {m.params}: not the same model (decode it again)")
            m.wer = _rate(rec.wer.percentages()["err"])
            m.cer = _rate(rec.cer.percentages()["err"]) if rec.cer is not None else None
            for metric, given, scored in (("WER", row.get("wer"), m.wer), ("CER", row.get("cer"), m.cer)):
                if given is not None and scored is not None and abs(Decimal(str(given)) - scored) > Decimal("0.006"):
                    raise AsrcError(f"{footprint_json}: {metric} of {m.name} is {given}, its decode dir's score "
                                    f"{scored}: not the same run (rerun asrc-bench footprint with this run's scores)")
        models.append(m)
    if records:
        raise AsrcError(f"--row {', '.join(sorted(r.model for r in records.values()))}: no such row in "
                        f"{footprint_json} (rows: {', '.join(m.name for m in models)})")
    parts = [f"{first.wer.snt} utterance{'s' if first.wer.snt != 1 else ''}", f"{first.wer.wrd} words"]
    if first.cer is not None and first.cer.wrd:
        parts.append(f"{first.cer.wrd} characters, one is {100 / first.cer.wrd:.2g} CER points")
    return models, data.get("environment") or {}, f"{first.dataset} ({', '.join(parts)})"


def _find(models: List[Model], name: Optional[str], what: str) -> Optional[Model]:
    if name is None:
        return None
    found = [m for m in models if _canon(m.name) == _canon(name)]
    if not found:
        raise AsrcError(f"--{what} {name}: no such row in the footprint JSON (rows: {', '.join(m.name for m in models)})")
    return found[0]


def _window(count: Decimal, tolerance: Decimal) -> Tuple[Decimal, Decimal]:
    return count * (1 - tolerance), count * (1 + tolerance)


def _within(pruned: List[Model], low: Decimal, high: Decimal) -> List[Model]:
    return [m for m in pruned if low <= m.params <= high and m.cer is not None]


def _range(low: Decimal, high: Decimal) -> str:
    return f"{float(low) / 1e6:.2f}-{float(high) / 1e6:.2f} M"


def _pct(share: Decimal) -> str:
    return f"{float(share) * 100:g} %"


def goal_at_size(label: str, reference: Optional[Model], pruned: List[Model], margin: Decimal,
                 tolerance: Decimal, missing: str):
    """A goal line: the best pruned student within ``tolerance`` of ``reference``'s parameters
    against ``reference``'s CER. Returns (verdict, markdown line)."""
    head = f"**{label}**"
    if reference is None or reference.cer is None:
        why = missing if reference is None else f"no CER for {reference.name}"
        return NOT_MEASURABLE, f"- {head}: {why} — **{NOT_MEASURABLE}**"
    low, high = _window(Decimal(reference.params), tolerance)
    about = (f"{head} ({reference.name}: {reference.mparams} parameters, CER {reference.cer} %; "
             f"window ±{_pct(tolerance)}: {_range(low, high)})")
    near = _within(pruned, low, high)
    if not near:
        return NOT_MEASURABLE, f"- {about}: no pruned student with a CER in the window — **{NOT_MEASURABLE}**"
    best = min(near, key=lambda m: (m.cer, m.params))
    gain = reference.cer - best.cer
    verdict = MET if gain >= margin else NOT_MET
    others = f", the best of {len(near)} in the window" if len(near) > 1 else ""
    return verdict, (f"- {about}: {best.name} ({best.mparams}, CER {best.cer} %{others}) is {abs(gain)} points "
                     f"{'better' if gain >= 0 else 'worse'} (goal: at least {margin} better) — **{verdict}**")


def goal_teacher_share(label: str, teacher: Model, pruned: List[Model], tolerance: Decimal):
    """Goal (c): the pruned student nearest ``TEACHER_SHARE`` of the teacher's parameters
    against the teacher's CER, relatively."""
    head = f"**{label}**"
    if teacher.cer is None:
        return NOT_MEASURABLE, f"- {head}: no CER for {teacher.name} — **{NOT_MEASURABLE}**"
    target = Decimal(teacher.params) * TEACHER_SHARE
    low, high = _window(target, tolerance)
    about = (f"{head} ({teacher.name}: {teacher.mparams} parameters, CER {teacher.cer} %; "
             f"{_pct(TEACHER_SHARE)} of it: {float(target) / 1e6:.2f} M, window ±{_pct(tolerance)}: "
             f"{_range(low, high)})")
    candidates = [m for m in pruned if m.cer is not None]
    if not candidates:
        return NOT_MEASURABLE, f"- {about}: no pruned student with a CER — **{NOT_MEASURABLE}**"
    distance = min(abs(Decimal(m.params) - target) for m in candidates)
    best = min((m for m in candidates if abs(Decimal(m.params) - target) == distance), key=lambda m: m.cer)

    def share(m: Model) -> str:
        return f"{100 * m.params / teacher.params:.1f} % of the teacher's"

    def within(m: Model) -> bool:
        return m.cer <= teacher.cer * (1 + RELATIVE_LIMIT)

    def how(m: Model) -> str:
        if not teacher.cer:
            return "the teacher's is 0"
        relative = (m.cer - teacher.cer) / teacher.cer * 100
        return f"{abs(relative):.1f} % {'above' if relative > 0 else 'below'} the teacher's" if relative else \
            "the teacher's"

    in_window = low <= best.params <= high
    if in_window:
        line = (f"{best.name} ({best.mparams}, {share(best)}), CER {best.cer} %: {how(best)} "
                f"(goal: at most {_pct(RELATIVE_LIMIT)} above)")
    else:
        line = f"the nearest pruned student, {best.name} ({best.mparams}, {share(best)}), is outside the window"
    if in_window and within(best):
        return MET, f"- {about}: {line} — **{MET}**"
    # A smaller pruned student within the limit dominates what the goal asks (the one nearest the window).
    smaller = [m for m in candidates if m.params < low and within(m)]
    if smaller:
        top = max(smaller, key=lambda m: (m.params, -m.cer))
        return MET, (f"- {about}: {line}; with fewer parameters, {top.name} ({top.mparams}, {share(top)}), CER "
                     f"{top.cer} %: {how(top)} (goal: at most {_pct(RELATIVE_LIMIT)} above; smaller and within "
                     f"it) — **{MET}**")
    return (NOT_MET if in_window else NOT_MEASURABLE), f"- {about}: {line} — **{NOT_MET if in_window else NOT_MEASURABLE}**"


def _cell(x: Optional[Decimal]) -> str:
    return "-" if x is None else f"{x}"


def render(models: List[Model], env: dict, about: str, teacher: Model, layer_dropped: Optional[Model],
           narrow: Optional[Model], pruned: List[Model], tolerance: Decimal, plot: Optional[str]) -> str:
    lines = ["<!-- Generated by egs/an4/local/prune_results.py from this run's footprint JSON and scores -->",
             "# Pruning with distillation: pruned students against the layer-dropped and the narrow student", ""]
    head = ["model", "params (M)", "% of teacher params", "MB", "latency (ms)", "RTF", "WER %", "CER %"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for m in models:
        cells = [m.name, f"{m.params / 1e6:.2f}", f"{100 * m.params / teacher.params:.1f}", f"{m.mb:.1f}",
                 f"{1000 * m.latency:.1f}", f"{m.rtf:.4f}", _cell(m.wer), _cell(m.cer)]
        lines.append("| " + " | ".join(cells) + " |")
    kinds = [f"teacher: {teacher.name}"]
    if layer_dropped is not None:
        kinds.append(f"layer-dropped 4-layer student: {layer_dropped.name}")
    if narrow is not None:
        kinds.append(f"narrow student: {narrow.name}")
    kinds.append(f"pruned students: {', '.join(m.name for m in pruned)}")
    lines += ["", "Models: " + "; ".join(kinds) + "."]
    if about:
        lines.append(f"WER and CER on {about}.")
    if env:
        seconds = env.get("input_seconds", "?")
        seconds = f"{seconds:g}" if isinstance(seconds, (int, float)) else seconds
        lines.append(f"Size and speed: `asrc-bench footprint` ({env.get('date', '?')}) on {env.get('cpu', '?')}, "
                     f"{env.get('threads', '?')} threads, {seconds} s input, median latency of "
                     f"{env.get('runs', '?')} interleaved runs, load average {env.get('load_average_before', '?')} "
                     "before timing; MB: the saved weights.")
    if plot:
        lines += ["", f"![CER against parameters and against speed, with the Pareto fronts]({plot})"]
    verdicts = [
        goal_at_size(f"(a) at the 4-layer student's size, at least {MARGIN_LAYER_DROPPED} CER points better",
                     layer_dropped, pruned, MARGIN_LAYER_DROPPED, tolerance,
                     "no layer-dropped 4-layer student in this run"),
        goal_at_size(f"(b) at the narrow student's size, at least {MARGIN_NARROW} CER points better", narrow, pruned,
                     MARGIN_NARROW, tolerance, "no narrow student in this run"),
        goal_teacher_share(f"(c) near {_pct(TEACHER_SHARE)} of the teacher's parameters, CER within "
                           f"{_pct(RELATIVE_LIMIT)} of the teacher's", teacher, pruned, tolerance)]
    lines += ["", "## Goals", "", *(line for _, line in verdicts)]
    return "\n".join(lines) + "\n"


def _share(text: str) -> Decimal:
    try:
        value = Decimal(text)
        ok = Decimal(0) <= value < Decimal(1)
    except InvalidOperation:  # not a number, or NaN
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share in [0, 1)")
    return value


@command("prune_results.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footprint", required=True, type=Path, help="asrc-bench footprint --json output")
    parser.add_argument("--row", nargs=3, action="append", required=True, metavar=("MODEL", "DATASET", "DECODE_DIR"),
                        help="a scored decode dir (repeatable), as asrc-results --row")
    parser.add_argument("--out", required=True, type=Path, help="the markdown file to write")
    parser.add_argument("--teacher", default="teacher", help="the teacher's row (default: teacher)")
    parser.add_argument("--layer-dropped", metavar="MODEL", help="the layer-dropped 4-layer student's row")
    parser.add_argument("--narrow", metavar="MODEL", nargs="+",
                        help="the narrow students' rows (when the run has them); goal (b) compares with the one "
                             "of the lowest CER")
    parser.add_argument("--pruned", metavar="MODEL", nargs="+", required=True, help="the pruned students' rows")
    parser.add_argument("--plot", type=Path, help="the figure (asrc-bench footprint --plot) to link")
    parser.add_argument("--tolerance", type=_share, default=Decimal("0.05"),
                        help="parameter window of the goals, relative (default 0.05: +-5 %%)")
    args = parser.parse_args(argv)
    models, env, about = read_models(args.footprint, args.row)
    teacher = _find(models, args.teacher, "teacher")
    layer_dropped = _find(models, args.layer_dropped, "layer-dropped")
    narrows = [_find(models, name, "narrow") for name in args.narrow or []]
    scored = [m for m in narrows if m.cer is not None]
    narrow = min(scored, key=lambda m: m.cer) if scored else (narrows[0] if narrows else None)
    pruned = [_find(models, name, "pruned") for name in args.pruned]
    plot = None
    if args.plot:
        if not args.plot.is_file():
            raise AsrcError(f"--plot {args.plot}: no such file")
        plot = Path(os.path.relpath(args.plot.resolve(), args.out.resolve().parent)).as_posix()
    text = render(models, env, about, teacher, layer_dropped, narrow, pruned, args.tolerance, plot)
    with atomic_write(args.out) as f:
        f.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
