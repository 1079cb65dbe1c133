"""The search options that asrc-decode and asrc-transcribe share."""

import argparse
import sys
from pathlib import Path

from asrc.decode.ctc import read_word_list, write_letter_lexicon
from asrc.decode.options import DecodeOptions

__all__ = ["add_search_arguments", "add_segment_arguments", "options_from_args"]


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """Decoding-method options shared by asrc-decode and asrc-transcribe."""
    g = p.add_argument_group("search")
    g.add_argument("--method", choices=["greedy", "beam"], default="greedy", help="greedy CTC or beam search (default greedy)")
    g.add_argument("--beam-size", type=int, default=50, help="hypotheses kept per frame (default 50)")
    g.add_argument("--beam-threshold", type=float, default=50.0, help="prune hypotheses this far below the best (default 50)")
    g.add_argument("--lm", help="n-gram LM, ARPA or KenLM binary: word LM with a lexicon, token LM without")
    g.add_argument("--lm-weight", type=float, default=2.0, help="LM weight (default 2)")
    g.add_argument("--word-score", type=float, default=0.0, help="score per word (default 0)")
    g.add_argument("--sil-score", type=float, default=0.0, help="score per word boundary token (default 0)")
    lex = g.add_mutually_exclusive_group()
    lex.add_argument("--lexicon", help="flashlight lexicon file: WORD tok tok ... | per line")
    lex.add_argument(
        "--lexicon-words",
        help="build a letter lexicon from this word list (one word per line, or an ARPA file's unigrams); "
        "unspellable words are listed in LEXICON.skipped",
    )


def add_segment_arguments(p: argparse.ArgumentParser, default: str) -> None:
    """How inputs are cut: trimmed or split at pauses, or in windows (asrc.decode.longform)."""
    from asrc.decode.longform import SEGMENT_MODES

    g = p.add_argument_group("silence and long inputs")
    g.add_argument("--segment", choices=SEGMENT_MODES, default=default,
                   help="'vad': find the speech (silero-vad): trim an input to it, and split one longer than "
                        "--chunk-seconds where nobody speaks, decoding each piece alone; 'chunk': decode an input "
                        "longer than --chunk-seconds in overlapping windows and join their frames; 'none': decode "
                        f"every input whole (time and memory grow with the square of its length; default {default})")
    g.add_argument("--chunk-seconds", type=float, default=10.0,
                   help="longest piece decoded in one go (default 10)")
    g.add_argument("--context-seconds", type=float, default=1.0,
                   help="windows: audio heard but not kept on each side (default 1)")


def options_from_args(args, lexicon_dir: Path, tokens) -> DecodeOptions:
    lexicon = args.lexicon
    if args.lexicon_words:
        lexicon = lexicon_dir / "lexicon.txt"
        written, skipped = write_letter_lexicon(read_word_list(args.lexicon_words), tokens, lexicon)
        print(f"lexicon: {written} words in {lexicon}" + (f", {len(skipped)} unspellable in {lexicon}.skipped" if skipped else ""),
              file=sys.stderr)
    method = "beam" if (args.lm or lexicon) and args.method == "greedy" else args.method
    if method != args.method:
        print("note: --lm/--lexicon given, using --method beam", file=sys.stderr)
    return DecodeOptions(
        method=method,
        beam_size=args.beam_size,
        beam_threshold=args.beam_threshold,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
        sil_score=args.sil_score,
        lexicon=str(lexicon) if lexicon else None,
        lm=args.lm,
        segment=args.segment,
        chunk_seconds=args.chunk_seconds,
        context_seconds=args.context_seconds,
    )
