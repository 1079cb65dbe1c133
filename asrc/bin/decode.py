"""Decode a Kaldi-style data directory with an asrc model directory (or ESPnet experiment).

    asrc-decode --model exp/student --data data/test_clean --out exp/student/decode_test_clean \\
        --nj 2 --threads 1
    asrc-decode --model exp/student --data data/test_clean --out exp/student/decode_beam_test_clean \\
        --method beam --lm lm/4gram.arpa --lexicon-words lm/4gram.arpa --lm-weight 1.5 --word-score -1
    asrc-decode --model exp/student --data data/meetings --out exp/student/decode_meetings --segment vad

writes OUT/text, OUT/token, OUT/rtf.json and OUT/rtf.log (see asrc.decode.decode_dir). A data
directory with a Kaldi segments file (utt recording start end) is decoded segment by segment.
A rerun skips the jobs that finished. Score with ``asrc-score --ref DATA/text --hyp OUT/text --out OUT``.
"""

import argparse
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.bin._search import add_search_arguments, add_segment_arguments, options_from_args
from asrc.decode.decode_dir import decode_dir
from asrc.decode.model_dir import resolve_model_dir


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
    add_segment_arguments(p, default="none")
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
