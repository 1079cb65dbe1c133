"""Reading the Kaldi-style tables that decoding and scoring need (``wav.scp``, ``text``, ``utt2spk``).

A table has one ``KEY VALUE...`` entry per line; the value is the rest of the line. These
readers are strict: a duplicate key, a line without a key, or (where a value is required)
an empty value is an error naming the file and line, never skipped.
"""

from pathlib import Path
from typing import Dict

from asrc.errors import AsrcError


def read_table(path, *, allow_empty_value: bool = False) -> Dict[str, str]:
    """Read ``path`` into ``{key: value}`` in file order.

    Args:
        path: the table file.
        allow_empty_value: accept ``KEY`` alone on a line (value ``""``), as for an empty
            transcript in ``text``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AsrcError: a duplicate key or a missing value, with file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise AsrcError(f"{path}:{lineno}: key {key!r} has no value")
            if key in table:
                raise AsrcError(f"{path}:{lineno}: duplicate key {key!r}")
            table[key] = value
    return table
