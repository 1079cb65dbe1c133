#!/usr/bin/env python3
"""Per-epoch training curve of an ESPnet run from its train.log, as a markdown table.

    python local/curve.py exp/teacher/train.log [--mark-update 1600 "masks on"]

Columns: epoch, updates so far, cumulative wall minutes of training (validation excluded),
train loss, dev loss and dev CER (%) as ESPnet logged them at the end of each epoch.
A resumed run logs an epoch again: the last report of an epoch wins.
"""

import argparse
import re
import sys

EPOCH = re.compile(r"(\d+)epoch results: \[train\] (.*?)\[valid\] (.*)")
FIELD = re.compile(r"(\w+)=([^,]+)")


def _minutes(text: str) -> float:
    """ESPnet's "1 minute and 46.65 seconds" / "5.2 seconds" / "1 hour, 2 minutes and ..." -> minutes."""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+) (hour|minute|second)s?", text):
        total += float(value) * {"hour": 60.0, "minute": 1.0, "second": 1 / 60}[unit]
    return total


def parse(log_text: str):
    epochs = {}
    for line in log_text.replace("\r", "\n").splitlines():
        m = EPOCH.search(line)
        if not m:
            continue
        train = dict(FIELD.findall(m.group(2)))
        valid = dict(FIELD.findall(m.group(3)))
        epochs[int(m.group(1))] = {
            "updates": int(train["total_count"]), "minutes": _minutes(train.get("time", "")),
            "train_loss": float(train["loss"]), "dev_loss": float(valid["loss"]),
            "dev_cer": 100 * float(valid["cer"]) if "cer" in valid else float("nan"),
        }
    return [dict(epoch=e, **epochs[e]) for e in sorted(epochs)]


def table(rows, marks=()) -> str:
    out = ["|epoch|updates|train min|train loss|dev loss|dev CER %|", "|---|---|---|---|---|---|"]
    total, marks = 0.0, sorted(marks)
    for r in rows:
        while marks and marks[0][0] <= r["updates"]:
            out.append(f"|*{marks.pop(0)[1]}*| | | | | |")
        total += r["minutes"]
        out.append(f"|{r['epoch']}|{r['updates']}|{total:.1f}|{r['train_loss']:.3f}|{r['dev_loss']:.3f}|"
                   f"{r['dev_cer']:.1f}|")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train_log")
    p.add_argument("--mark-update", nargs=2, action="append", default=[], metavar=("UPDATE", "LABEL"),
                   help="a row saying LABEL before the epoch during which update UPDATE happened")
    args = p.parse_args(argv)
    with open(args.train_log, encoding="utf-8", errors="replace") as f:
        rows = parse(f.read())
    if not rows:
        print(f"{args.train_log}: no 'Nepoch results' lines", file=sys.stderr)
        return 1
    print(table(rows, [(int(u), label) for u, label in args.mark_update]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
