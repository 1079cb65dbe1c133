#!/usr/bin/env python3
"""A copy of a data directory whose utterances have --seconds of quiet noise before and after
them (Gaussian, --noise-db relative to the utterance's RMS; seeded), as a recording made by a
user has: the check that decoding copes with silence around the speech. FLAC + data directory.

    local/pad_noise.py data/test data/test_padded --seconds 2 --noise-db -40
"""
import argparse
import sys

import numpy as np

from asrc.bin._cli import ArgumentParser, command
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import read_table
from asrc.data.augment import map_data_dir


@command("pad_noise.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--seconds", type=float, default=2.0, help="noise before and after each utterance (default 2)")
    parser.add_argument("--noise-db", type=float, default=-40.0, help="noise level against the utterance's RMS (default -40)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n = int(round(args.seconds * SAMPLE_RATE))

    def pad(_utt, audio):
        level = float(np.sqrt(np.mean(audio ** 2))) * 10 ** (args.noise_db / 20)
        return np.concatenate([rng.standard_normal(n) * level, audio, rng.standard_normal(n) * level])

    out = map_data_dir(args.src, args.out, pad)
    utts = len(read_table(out / "wav.scp"))
    print(f"{out}: {utts} utterances, {args.seconds:g} s of noise at {args.noise_db:g} dB on either side")
    return 0


if __name__ == "__main__":
    sys.exit(main())
