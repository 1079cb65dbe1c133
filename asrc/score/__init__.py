"""Scoring: sclite-compatible WER/CER, trn files, ESPnet-style RESULTS.md.

- :mod:`asrc.score.align`: the alignment (sclite's costs and tie rules) and counts;
- :mod:`asrc.score.trn`: trn files and the word/character tokenisation;
- :mod:`asrc.score.sclite`: running the sclite binary and reading its report;
- :mod:`asrc.score.scorer`: scoring a set, writing ``score_{wer,cer}/``;
- :mod:`asrc.score.results`: ``RESULTS.md``.
"""

from asrc.score.align import Counts, align
from asrc.score.scorer import ScoreResult, score, score_dir

__all__ = ["Counts", "ScoreResult", "align", "score", "score_dir"]
