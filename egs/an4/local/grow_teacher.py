#!/usr/bin/env python3
"""Grow a trained pre-LN model to more transformer layers, same function (asrc.models.grow).

    local/grow_teacher.py exp/teacher_pass3/model exp/teacher12_grown --layers 12
"""
import argparse
import sys

from asrc.bin._cli import ArgumentParser, command
from asrc.models import load, save_model_dir
from asrc.models.grow import grow_depth


@command("grow_teacher.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="model directory (pre-LN)")
    parser.add_argument("out", help="output model directory")
    parser.add_argument("--layers", type=int, required=True, help="transformer layers of the grown model")
    args = parser.parse_args(argv)
    model = load(args.src)
    grown = grow_depth(model, args.layers)
    save_model_dir(grown, args.out, tokens=model.tokens)
    print(f"{args.src} ({model.config.num_layers} layers) -> {args.out} ({args.layers} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
