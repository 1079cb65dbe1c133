"""Check that a teacher's tokens.txt spells the data's letters at the same CTC indices.

    python local/check_tokens.py exp/teacher_import/tokens.txt data/tokens.txt

Special tokens (``<...>``) may be named differently (a Hugging Face teacher calls index 1 ``<s>``
where fairseq's dictionary has ``<pad>``); every other token must sit at the same index.
"""

import sys

from asrc.core.tables import read_tokens


def main(teacher_path, data_path):
    teacher, data = read_tokens(teacher_path), read_tokens(data_path)
    bad = [f"{i}: data {t!r} vs teacher {teacher[i] if i < len(teacher) else None!r}"
           for i, t in enumerate(data) if not (t.startswith("<") and t.endswith(">"))
           and (i >= len(teacher) or teacher[i] != t)]
    if bad or len(teacher) != len(data):
        print(f"{teacher_path} and {data_path} disagree ({len(teacher)} vs {len(data)} tokens): "
              + "; ".join(bad[:10]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
