"""CTC decoding: greedy and beam search (+ lexicon, n-gram LM), data directories, single files.

- :mod:`asrc.decode.ctc`: decoders, token-to-text, lexicon helpers;
- :mod:`asrc.decode.decode_dir`: batch decoding of a Kaldi-style data directory (``asrc-decode``);
- :mod:`asrc.decode.transcribe`: single files (``asrc-transcribe``).
"""

from asrc.decode.ctc import BeamSearchDecoder, GreedyDecoder, Hypothesis, tokens_to_text
from asrc.decode.decode_dir import DecodeOptions, decode_dir

__all__ = [
    "BeamSearchDecoder",
    "GreedyDecoder",
    "Hypothesis",
    "tokens_to_text",
    "DecodeOptions",
    "decode_dir",
]
