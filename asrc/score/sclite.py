"""Run NIST sclite (Debian package ``sctk``) on trn files and read its report.

The command is ESPnet's: ``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout``; the
whole report is kept as ``result.txt``. From it we read the ``Sum`` row of the count table
(``# Snt # Wrd | Corr Sub Del Ins Err S.Err``) and the per-utterance
``Scores: (#C #S #D #I)`` lines of the alignment dump.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from asrc.core.files import atomic_write
from asrc.errors import AsrcError
from asrc.score.align import Counts

DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"


def find_sclite() -> Optional[str]:
    """Path of the sclite binary: ``$ASRC_SCLITE``, then ``sclite`` on PATH, then Debian's.

    Returns None when none exists (``ASRC_SCLITE=none`` forces that, for the built-in scorer).
    """
    env = os.environ.get("ASRC_SCLITE")
    if env:
        if env == "none":
            return None
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise FileNotFoundError(f"ASRC_SCLITE={env} is not an executable file")
        return env
    on_path = shutil.which("sclite")
    if on_path:
        return on_path
    if os.access(DEBIAN_SCLITE, os.X_OK):
        return DEBIAN_SCLITE
    return None


@dataclass
class ScliteReport:
    """What sclite reported: set totals and per-utterance counts keyed by trn id (``spk-utt``)."""

    total: Counts
    per_utt: Dict[str, Counts] = field(default_factory=dict)


_SUM_ROW = re.compile(r"^\s*\|\s*Sum\s*\|([^|]*)\|([^|]*)\|\s*$")
_ID_LINE = re.compile(r"^id:\s*\((.*)\)\s*$")
_SCORES_LINE = re.compile(r"^Scores:\s*\(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def parse_report(text: str, source: str = "sclite output") -> ScliteReport:
    """Parse ``sclite ... -o all stdout`` output (the count table and the alignment dump)."""
    total = None
    for line in text.splitlines():
        m = _SUM_ROW.match(line)
        if m:
            snt_wrd = m.group(1).split()
            numbers = m.group(2).split()
            if len(snt_wrd) != 2 or len(numbers) != 6:
                raise AsrcError(f"{source}: cannot read the Sum row {line.strip()!r}")
            snt, wrd = (int(x) for x in snt_wrd)
            corr, sub, dele, ins, err, s_err = (int(x) for x in numbers)
            total = Counts(snt=snt, wrd=wrd, corr=corr, sub=sub, dele=dele, ins=ins, s_err=s_err)
            if total.err != err:
                raise AsrcError(f"{source}: Sum row Err {err} != Sub+Del+Ins {total.err}")
            break
    if total is None:
        raise AsrcError(f"{source}: no 'Sum' row of counts found (was sclite run with -o all?)")

    per_utt = {}
    utt = None
    for line in text.splitlines():
        m = _ID_LINE.match(line)
        if m:
            utt = m.group(1)
            continue
        m = _SCORES_LINE.match(line)
        if m and utt is not None:
            corr, sub, dele, ins = (int(x) for x in m.groups())
            c = Counts(snt=1, wrd=corr + sub + dele, corr=corr, sub=sub, dele=dele, ins=ins)
            c.s_err = int(c.err > 0)
            per_utt[utt] = c
            utt = None
    return ScliteReport(total=total, per_utt=per_utt)


def run_sclite(ref_trn, hyp_trn, result_txt, sclite: Optional[str] = None) -> ScliteReport:
    """Score ``hyp_trn`` against ``ref_trn`` with sclite, write its report to ``result_txt``.

    Args:
        ref_trn, hyp_trn: trn files (``TOKENS (spk-utt)`` per line) with the same ids.
        result_txt: where sclite's full report goes (written atomically).
        sclite: binary to use; default :func:`find_sclite`.

    Raises:
        FileNotFoundError: no sclite binary.
        AsrcError: sclite failed or its output could not be read.
    """
    sclite = sclite or find_sclite()
    if sclite is None:
        raise FileNotFoundError("sclite not found (install Debian's sctk or set ASRC_SCLITE)")
    cmd = [sclite, "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-o", "all", "stdout"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"failed (exit {proc.returncode})")
        raise AsrcError(
            f"sclite {how} on {ref_trn} / {hyp_trn}: "
            f"{(proc.stderr or proc.stdout).strip()[-2000:] or 'no output'}"
        )
    with atomic_write(Path(result_txt)) as f:
        f.write(proc.stdout)
    return parse_report(proc.stdout, source=f"sclite report {result_txt}")
