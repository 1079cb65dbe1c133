"""Decode a Kaldi-style data directory with an asrc model directory (or ESPnet experiment).

    asrc-decode --model exp/student --data data/test_clean --out exp/student/decode_test_clean \\
        --nj 2 --threads 1
    asrc-decode --model exp/student --data data/test_clean --out exp/student/decode_beam_test_clean \\
        --method beam --lm lm/4gram.arpa --lexicon-words lm/4gram.arpa --lm-weight 1.5 --word-score -1

writes OUT/text, OUT/token, OUT/rtf.json and OUT/rtf.log (see asrc.decode.decode_dir). A rerun
skips the jobs that finished. Score with ``asrc-score --ref DATA/text --hyp OUT/text --out OUT``.
"""

import argparse
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.decode.ctc import read_word_list, write_letter_lexicon
from asrc.decode.decode_dir import DecodeOptions, decode_dir, resolve_model_dir


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
    )


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="asrc-decode", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="asrc model directory or ESPnet experiment directory")
    p.add_argument("--data", required=True, help="Kaldi-style data directory with wav.scp")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs (processes), default 1")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job, default 1")
    p.add_argument("--batch-seconds", type=float, default=60.0,
                   help="max padded audio seconds per batch; 0 = one utterance per batch (true per-utterance latency)")
    p.add_argument("--resample", action="store_true", help="resample audio not at 16 kHz instead of failing")
    p.add_argument("--mix-channels", action="store_true", help="average multi-channel audio to mono instead of failing")
    add_search_arguments(p)
    return p


@command("asrc-decode")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model_dir(args.model, out)
    from asrc.core.tables import read_tokens

    tokens = read_tokens(model_dir / "tokens.txt") if args.lexicon_words else None
    options = options_from_args(args, out, tokens)
    options.nj, options.threads_per_job, options.batch_seconds = args.nj, args.threads, args.batch_seconds
    options.resample, options.mix_channels = args.resample, args.mix_channels
    summary = decode_dir(args.data, model_dir, out, options)
    print(
        f"decoded {summary['num_utts']} utterances ({summary['audio_seconds']:.1f} s of audio) into {out}/text; "
        f"RTF {summary['rtf']:.4f} (compute/audio), wall {summary['wall_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
