"""Transcribe audio files with an asrc model directory; prints ``FILE<TAB>TEXT`` per file.

    asrc-transcribe exp/student a.wav b.flac
    asrc-transcribe exp/student --method beam --lm lm/4gram.arpa --lexicon-words lm/4gram.arpa a.wav

Files at any sample rate are resampled to 16 kHz and multi-channel audio is averaged to mono.
A file longer than --chunk-seconds (10 s) is split where nobody speaks (silero-vad) and each
piece decoded on its own (--segment; shorter files are decoded whole).
A file that cannot be read is reported on stderr (naming it) and the exit status is 1; the
other files are still transcribed.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from asrc.bin._cli import ArgumentParser, command
from asrc.bin._search import add_search_arguments, add_segment_arguments, options_from_args
from asrc.decode.model_dir import resolve_model_dir
from asrc.decode.transcribe import transcribe_files


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="asrc-transcribe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="asrc model directory (or ESPnet experiment directory)")
    p.add_argument("audio", nargs="+", help="audio files (anything soundfile reads: wav, flac, ogg, ...)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_search_arguments(p)
    add_segment_arguments(p, default="vad")
    return p


@command("asrc-transcribe")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = resolve_model_dir(args.model, Path(args.model) / "asrc_export")
    with tempfile.TemporaryDirectory(prefix="asrc-transcribe-") as tmp:
        tokens = None
        if args.lexicon_words:
            from asrc.core.tables import read_tokens

            tokens = read_tokens(model_dir / "tokens.txt")
        options = options_from_args(args, Path(tmp), tokens)
        results = transcribe_files(model_dir, args.audio, options)
    status = 0
    for path, text in results:
        if isinstance(text, Exception):
            print(f"asrc-transcribe: error: {text}", file=sys.stderr)
            status = 1
        else:
            print(f"{path}\t{text}")
    return status


if __name__ == "__main__":
    sys.exit(main())
