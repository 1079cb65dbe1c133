"""How to decode: :class:`DecodeOptions` and the decoder they describe."""

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from asrc.decode.ctc import BEAM_SEARCH_VERSION, BeamSearchDecoder, GreedyDecoder

__all__ = ["METHODS", "DecodeOptions", "build_decoder"]

METHODS = ("greedy", "beam")


@dataclass
class DecodeOptions:
    """How to decode. Beam options are ignored by greedy search.

    ``batch_seconds``: maximum padded audio per batch (``batch size x longest utterance``);
    0 decodes one utterance at a time. ``resample`` / ``mix_channels`` allow converting audio
    that is not 16 kHz mono (otherwise an error naming the utterance). ``segment``: how an input is
    cut (:mod:`asrc.decode.longform`): ``none`` not at all; ``chunk``, if longer than
    ``chunk_seconds``, in overlapping windows with ``context_seconds`` on each side; ``vad``
    trimmed to its speech, and split at pauses if longer than ``chunk_seconds``.
    """

    method: str = "greedy"
    beam_size: int = 50
    beam_threshold: float = 50.0
    lm_weight: float = 2.0
    word_score: float = 0.0
    sil_score: float = 0.0
    lexicon: Optional[str] = None
    lm: Optional[str] = None
    batch_seconds: float = 60.0
    nj: int = 1
    threads_per_job: int = 1
    resample: bool = False
    mix_channels: bool = False
    segment: str = "none"
    chunk_seconds: float = 10.0
    context_seconds: float = 1.0

    def validate(self):
        """A :class:`ValueError` naming the first option out of its range (NaN and infinity
        included: a NaN compares false with everything, so each bound is stated positively)."""
        from asrc.decode.longform import SEGMENT_MODES

        def finite(name, ok, what):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise ValueError(f"{name} must be {what}, got {v!r}")

        if self.segment not in SEGMENT_MODES:
            raise ValueError(f"unknown segment mode {self.segment!r}; expected one of {SEGMENT_MODES}")
        finite("chunk_seconds", lambda v: v > 0, "a finite number > 0")
        finite("context_seconds", lambda v: v >= 0, "a finite number >= 0")
        if self.segment != "none" and not 2 * self.context_seconds < self.chunk_seconds:
            raise ValueError(f"chunk_seconds ({self.chunk_seconds}) must be more than twice "
                             f"context_seconds ({self.context_seconds})")
        if self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; expected one of {METHODS}")
        for name in ("nj", "threads_per_job", "beam_size"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        finite("batch_seconds", lambda v: v >= 0, "a finite number >= 0 (0: one utterance at a time)")
        finite("beam_threshold", lambda v: v > 0, "a finite number > 0")
        for name in ("lm_weight", "word_score", "sil_score"):
            finite(name, lambda v: True, "a finite number")
        if self.method == "greedy" and (self.lexicon or self.lm):
            raise ValueError("a lexicon or LM needs method='beam'")
        for what, path in (("lexicon", self.lexicon), ("LM", self.lm)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{what} file {path} does not exist")

    def decoder_fingerprint(self) -> dict:
        """What changes the output (not nj/threads/batching, which only change speed)."""
        keys = ["method", "resample", "mix_channels"]
        if self.segment != "none":
            keys += ["segment", "chunk_seconds"] + (["context_seconds"] if self.segment == "chunk" else [])
        if self.method == "beam":
            keys += ["beam_size", "beam_threshold", "lm_weight", "word_score", "sil_score", "lexicon", "lm"]
        d = {k: getattr(self, k) for k in keys}
        if self.method == "beam":
            d["search_version"] = BEAM_SEARCH_VERSION  # a changed search redoes earlier decodes
        for k in ("lexicon", "lm"):
            if d.get(k):
                st = os.stat(d[k])
                d[k] = [os.path.abspath(d[k]), st.st_size, st.st_mtime_ns]
        return d


def build_decoder(tokens: Sequence[str], options: DecodeOptions):
    """The greedy or beam decoder described by ``options``."""
    if options.method == "greedy":
        return GreedyDecoder(tokens)
    return BeamSearchDecoder(
        tokens,
        lexicon=options.lexicon,
        lm=options.lm,
        beam_size=options.beam_size,
        beam_threshold=options.beam_threshold,
        lm_weight=options.lm_weight,
        word_score=options.word_score,
        sil_score=options.sil_score,
    )
