#!/usr/bin/env python3
"""Augmentation material for the teacher (asrc.data.augment): simulated room impulse responses
and noise files (coloured noise, hum, babble of training speech), each with an ESPnet scp.

    local/make_augment.py db/augment --babble-from data/synth/lj_train --seed 0
"""
import argparse
import sys

from asrc.data.augment import make_noises, simulate_rirs
from asrc.bin._cli import ArgumentParser, command


@command("make_augment.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="writes OUT/rir/{*.wav,rir.scp} and OUT/noise/{*.wav,noise.scp}")
    parser.add_argument("--rirs", type=int, default=200, help="simulated rooms")
    parser.add_argument("--noises", type=int, default=8, help="files per noise kind (30 s each)")
    parser.add_argument("--babble-from", help="data directory whose speech makes babble noise")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rir = simulate_rirs(f"{args.out}/rir", args.rirs, seed=args.seed)
    noise = make_noises(f"{args.out}/noise", args.noises, seed=args.seed, babble_from=args.babble_from)
    print(f"{rir}\n{noise}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
