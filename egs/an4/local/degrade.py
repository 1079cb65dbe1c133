#!/usr/bin/env python3
"""A degraded copy of a data directory for the robustness check (asrc.data.augment.degrade_data_dir):
reverberation in a simulated room, noise at a fixed SNR, then the telephone band (8 kHz); seeded.

    local/degrade.py data/test data/test_degraded --snr 10 --seed 0
"""
import argparse
import sys

from asrc.data.augment import degrade_data_dir
from asrc.bin._cli import ArgumentParser, command


@command("degrade.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--snr", type=float, default=10.0, help="noise SNR in dB over the speech")
    parser.add_argument("--band-rate", type=int, default=8000, help="sample rate the audio goes through")
    parser.add_argument("--no-reverb", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="", help="before every utterance and speaker id (e.g. deg-)")
    args = parser.parse_args(argv)
    out = degrade_data_dir(args.src, args.out, seed=args.seed, snr_db=args.snr, reverb=not args.no_reverb,
                           band_rate=args.band_rate, prefix=args.prefix)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
