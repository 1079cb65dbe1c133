"""CTC decoding: greedy and beam search (+ lexicon, n-gram LM), data directories, single files.

- :mod:`asrc.decode.ctc`: decoders, token-to-text, lexicon helpers;
- :mod:`asrc.decode.decode_dir`: batch decoding of a Kaldi-style data directory (``asrc-decode``),
  from :mod:`~asrc.decode.options`, :mod:`~asrc.decode.model_dir`, :mod:`~asrc.decode.plan`,
  :mod:`~asrc.decode.jobs` and :mod:`~asrc.decode.rtf`;
- :mod:`asrc.decode.transcribe`: single files (``asrc-transcribe``).
"""

from asrc.decode.ctc import BeamSearchDecoder, GreedyDecoder, Hypothesis, tokens_to_text
from asrc.decode.decode_dir import decode_dir
from asrc.decode.options import DecodeOptions

__all__ = [
    "BeamSearchDecoder",
    "GreedyDecoder",
    "Hypothesis",
    "tokens_to_text",
    "DecodeOptions",
    "decode_dir",
]
