#!/usr/bin/env python3
"""The recipe options a stage of egs/*/run.sh reads, found in the script's text.

    stage_inputs.py SCRIPT STAGE OPTION...   -> the OPTIONs stage STAGE reads, one per line

A stage is the text from the line that calls ``stage_begin STAGE`` to its ``stage_done STAGE``.
It reads an option when it names the variable (``$name``, ``${name...}``), or a variable
assigned from it in the stage or at the script's top level (``out=exp/$tag``: ``$out`` reads
``tag``), or calls a shell function (of the script or of the files in its ``utils/``) that
reads it, transitively. Over-counting is harmless (the stage is
redone when such an option changes); what it cannot see is a variable named indirectly
(``${!name}``, ``eval``), which the recipes do not use for options.

utils/lib.sh records the values of these options in each stage's stamp and redoes a stage whose
options changed since (make's rule, for options: see stage_begin there).
"""

import re
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

VAR = re.compile(r"\$\{?#?!?([A-Za-z_][A-Za-z0-9_]*)")
ASSIGN = re.compile(r"^\s*(?:local\s+|export\s+|readonly\s+|declare\s+(?:-\w+\s+)*)?([A-Za-z_][A-Za-z0-9_]*)(?:\+)?=(.*)$")
FUNC = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(\)\s*\{?\s*$")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STAGE_BEGIN = re.compile(r"\bstage_begin\s+(\d+)\b")


def _code(line: str) -> str:
    """The line without a trailing comment (a ``#`` after a space, not inside ``${#x}``)."""
    return re.split(r"(?:^|\s)#(?!\w*\})", line, maxsplit=1)[0]


def functions(lines: List[str]) -> Dict[str, Tuple[int, int]]:
    """``{name: (first, end)}`` line ranges of the bodies of the shell functions in ``lines``
    (a body ends at a line starting with ``}``)."""
    out: Dict[str, Tuple[int, int]] = {}
    i = 0
    while i < len(lines):
        m = FUNC.match(lines[i])
        if m:
            first = i + 1
            i = first
            while i < len(lines) and not lines[i].startswith("}"):
                i += 1
            out[m.group(1)] = (first, i)
        i += 1
    return out


def stage_ranges(lines: List[str]) -> Dict[int, Tuple[int, int]]:
    """``{stage: (first, end)}``: from the line calling ``stage_begin N`` to its last ``stage_done N``
    before the next stage (or to the next stage when there is none); the lines between stages
    are the script's own."""
    begins = [(i, int(m.group(1))) for i, line in enumerate(lines) for m in [STAGE_BEGIN.search(_code(line))] if m]
    out = {}
    for k, (i, n) in enumerate(begins):
        nxt = begins[k + 1][0] if k + 1 < len(begins) else len(lines)
        done = [j for j in range(i, nxt) if re.search(rf"\bstage_done\s+{n}\b", _code(lines[j]))]
        out[n] = (i, done[-1] + 1 if done else nxt)
    return out


def assignments(lines) -> Dict[str, Set[str]]:
    """``{variable: variables its assigned values read}`` over ``lines``."""
    out: Dict[str, Set[str]] = {}
    for line in lines:
        m = ASSIGN.match(_code(line))
        if m:
            out.setdefault(m.group(1), set()).update(VAR.findall(m.group(2)))
    return out


def stage_reads(lines: List[str], stage: int, helper_lines: List[str]) -> Set[str]:
    """Every variable stage ``stage`` reads: in its lines and the functions they call
    (transitively), through the assignments of those lines and of the script's top level."""
    ranges = stage_ranges(lines)
    if stage not in ranges:
        return set()
    funcs = {name: helper_lines[a:b] for name, (a, b) in functions(helper_lines).items()}
    own = functions(lines)
    funcs.update({name: lines[a:b] for name, (a, b) in own.items()})
    inner = set()
    for a, b in list(ranges.values()) + list(own.values()):
        inner.update(range(a, b))
    top = [line for i, line in enumerate(lines) if i not in inner]
    a, b = ranges[stage]
    context, todo, called = [], list(lines[a:b]), set()
    while todo:
        line = todo.pop()
        context.append(line)
        for word in set(WORD.findall(_code(line))):
            if word in funcs and word not in called:
                called.add(word)
                todo.extend(funcs[word])
    assigned = assignments(top)
    for name, deps in assignments(context).items():
        assigned.setdefault(name, set()).update(deps)
    closure = {name for line in context for name in VAR.findall(_code(line))}
    frontier = list(closure)
    while frontier:
        for dep in assigned.get(frontier.pop(), ()):
            if dep not in closure:
                closure.add(dep)
                frontier.append(dep)
    return closure


def main(argv: List[str]) -> int:
    if len(argv) < 2:
        print("usage: stage_inputs.py SCRIPT STAGE OPTION...", file=sys.stderr)
        return 2
    script, stage, options = Path(argv[0]), int(argv[1]), set(argv[2:])
    lines = script.read_text(encoding="utf-8").splitlines()
    helpers = sorted((script.resolve().parent / "utils").glob("*.sh"))
    helper_lines = [line for h in helpers for line in h.read_text(encoding="utf-8").splitlines()]
    for name in sorted(stage_reads(lines, stage, helper_lines) & options):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
