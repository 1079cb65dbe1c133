#!/usr/bin/env python3
"""Copy an asrc model directory with its floating-point weights stored in float16.

    local/store_fp16.py exp/teacher12/model teacher

Halves model.pth (the committed teacher must stay small); asrc.models.load casts the weights
back to the float32 model, so only their rounding changes (check the scores after). The
config.yaml and tokens.txt are copied as they are.
"""
import argparse
import shutil
import sys
from pathlib import Path

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="model directory (config.yaml, model.pth, tokens.txt)")
    parser.add_argument("dst", type=Path, help="output directory (created; its three files are replaced)")
    args = parser.parse_args(argv)
    for name in ("config.yaml", "model.pth", "tokens.txt"):
        if not (args.src / name).is_file():
            sys.exit(f"store_fp16.py: error: {args.src / name}: no such file (not an asrc model directory)")
    state = torch.load(args.src / "model.pth", map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        sys.exit(f"store_fp16.py: error: {args.src / 'model.pth'}: not a state dict")
    half = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in state.items()}
    args.dst.mkdir(parents=True, exist_ok=True)
    torch.save(half, args.dst / "model.pth")
    for name in ("config.yaml", "tokens.txt"):
        shutil.copyfile(args.src / name, args.dst / name)
    print(f"{args.dst}: {sum(v.numel() for v in half.values() if torch.is_tensor(v)):,} values in float16")


if __name__ == "__main__":
    main()
