"""Transcribe audio files with an asrc model directory; prints ``FILE<TAB>TEXT`` per file
(--output ctm: ``FILE 1 START DURATION WORD CONFIDENCE`` per word, Kaldi's CTM; --output
json: one JSON object per file with its text and its words' times and confidences). A word's
confidence is the lowest posterior of its tokens.

    asrc-transcribe exp/student a.wav b.flac
    asrc-transcribe exp/student meeting.flac --output ctm
    asrc-transcribe exp/student --method beam --lm lm/4gram.arpa --lexicon-words lm/4gram.arpa a.wav

Files at any sample rate are resampled to 16 kHz and multi-channel audio is averaged to mono.
Each file is trimmed to its speech (silero-vad), and one longer than --chunk-seconds (10 s) is
split where nobody speaks, each piece decoded on its own (--segment).
A file that cannot be read is reported on stderr (naming it) and the exit status is 1; the
other files are still transcribed.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from asrc.bin._cli import ArgumentParser, command
from asrc.bin._search import add_search_arguments, add_segment_arguments, options_from_args
from asrc.decode.ctc import ctm_line
from asrc.decode.model_dir import resolve_model_dir
from asrc.decode.transcribe import transcribe_files


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="asrc-transcribe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="asrc model directory (or ESPnet experiment directory)")
    p.add_argument("audio", nargs="+", help="audio files: wav, flac, ogg, mp3 (libsndfile), m4a/aac, webm, opus and "
                                            "whatever else FFmpeg decodes (PyAV)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--output", choices=["text", "ctm", "json"], default="text",
                   help="text: FILE<TAB>TEXT; ctm: FILE 1 START DURATION WORD CONFIDENCE per word; json: one object "
                        "per file with its text and words (start/end seconds, confidence) (default text)")
    add_search_arguments(p)
    add_segment_arguments(p, default="vad")
    return p


def _check_ctm_names(parser, paths) -> None:
    """CTM has no quoting: a file's name there has ``_`` for each run of whitespace, so two
    different files may get one name (``a b.wav``, ``a_b.wav``); refuse before decoding."""
    seen = {}
    for path in paths:
        name = ctm_line(path, "", 0.0, 0.0, 0.0).split(" ", 1)[0]
        if seen.setdefault(name, path) != path:
            parser.error(f"--output ctm: {seen[name]!r} and {path!r} would have the same name in the CTM ({name!r}: "
                         f"CTM cannot quote spaces); rename one, or use --output json")


@command("asrc-transcribe")
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.output == "ctm":
        _check_ctm_names(parser, args.audio)
    torch.set_num_threads(args.threads)
    model_dir = resolve_model_dir(args.model, Path(args.model) / "asrc_export")
    with tempfile.TemporaryDirectory(prefix="asrc-transcribe-") as tmp:
        tokens = None
        if args.lexicon_words:
            from asrc.core.tables import read_tokens

            tokens = read_tokens(model_dir / "tokens.txt")
        options = options_from_args(args, Path(tmp), tokens)
        results = transcribe_files(model_dir, args.audio, options, word_times=args.output != "text")
    status = 0
    for path, result in results:
        if isinstance(result, Exception):
            print(f"asrc-transcribe: error: {result}", file=sys.stderr)
            status = 1
        elif args.output == "text":
            print(f"{path}\t{result}")
        elif args.output == "ctm":
            print("".join(ctm_line(path, *w) for w in result.words), end="")
        else:
            words = [{"word": w, "start": a, "end": b, "confidence": c} for w, a, b, c in result.words]
            print(json.dumps({"file": path, "text": result.text, "words": words}, ensure_ascii=False))
    return status


if __name__ == "__main__":
    sys.exit(main())
