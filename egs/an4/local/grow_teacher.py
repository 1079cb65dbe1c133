#!/usr/bin/env python3
"""Grow a trained pre-LN model to more transformer layers, same function (asrc.models.grow).

    local/grow_teacher.py exp/teacher_pass3/model exp/teacher12_grown --layers 12
"""
import argparse
import sys

from asrc.errors import AsrcError
from asrc.models import load, save_model_dir
from asrc.models.grow import grow_depth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="model directory (pre-LN)")
    parser.add_argument("out", help="output model directory")
    parser.add_argument("--layers", type=int, required=True, help="transformer layers of the grown model")
    args = parser.parse_args()
    try:
        model = load(args.src)
        grown = grow_depth(model, args.layers)
        save_model_dir(grown, args.out, tokens=model.tokens)
    except (AsrcError, FileNotFoundError, ValueError) as e:
        print(f"grow_teacher.py: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.src} ({model.config.num_layers} layers) -> {args.out} ({args.layers} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
