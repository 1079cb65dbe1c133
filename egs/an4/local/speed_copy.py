#!/usr/bin/env python3
"""A copy of a data directory at another speed (Kaldi's speed perturbation: tempo and pitch
together, by resampling; ESPnet's ``espnet2.layers.augmentation.speed_perturb``), ids
prefixed so that the copy combines with its source. FLAC + data directory.

    local/speed_copy.py data/train data/train_sp0.9 --factor 0.9      # ids sp0.9-<utt>
"""
import argparse
import sys

import numpy as np
import torch

from asrc.bin._cli import ArgumentParser, command
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import read_table
from asrc.data.augment import map_data_dir


@command("speed_copy.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--factor", type=float, required=True, help="speed: 0.9 is 10 %% slower and lower (Kaldi's 0.9)")
    parser.add_argument("--prefix", help="before every id (default sp<factor>-)")
    args = parser.parse_args(argv)
    if not 0.5 <= args.factor <= 2.0:
        parser.error(f"--factor must be in [0.5, 2], got {args.factor}")
    from espnet2.layers.augmentation import speed_perturb

    def perturb(_utt, audio):
        with torch.no_grad():
            return speed_perturb(torch.from_numpy(audio), SAMPLE_RATE, args.factor).numpy().astype(np.float64)

    prefix = args.prefix if args.prefix is not None else f"sp{args.factor:g}-"
    out = map_data_dir(args.src, args.out, perturb, prefix=prefix)
    print(f"{out}: {len(read_table(out / 'wav.scp'))} utterances at speed {args.factor:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
