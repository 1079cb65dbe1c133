"""Print a model's configuration and footprint: parameters, MB at fp32 / int8 and MACs per second
of audio, by block (feature extractor, feature projection, positional conv, transformer, CTC head).

    asrc-info exp/student/model                  # a model directory (config.yaml, model.pth, ...)
    asrc-info conf/student.yaml                  # an architecture alone: no weights needed
    asrc-info exp/student/model --seconds 10     # MACs per second for 10 s clips (attention is quadratic)
    asrc-info exp/student/model --json           # machine-readable, for scripts and RESULTS.md

Numbers come from the architecture (``asrc.models.footprint``, where every definition is
spelled out): the same for a model directory and for its config.yaml alone.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command
from asrc.models.footprint import footprint
from asrc.models.int8_cnn import cpu_has_vnni
from asrc.models.io import WEIGHTS_NAME
from asrc.models.loader import describe


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="asrc-info", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model directory (with config.yaml) or a config.yaml file")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="clip length for MACs per second of audio (default 1.0 = 16000 samples)")
    p.add_argument("--json", action="store_true", help="print JSON (config, files, footprint) instead of text")
    p.add_argument("--markdown", action="store_true", help="print the footprint table as markdown")
    return p


@command("asrc-info")
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    info = describe(args.model)
    rf = info["config"].receptive_field
    if not (math.isfinite(args.seconds) and args.seconds * 16000 >= rf):
        parser.error(f"--seconds {args.seconds:g}: a clip must be finite and at least the model's receptive field "
                     f"({rf} samples = {rf / 16000:g} s)")
    fp = footprint(info["config"], seconds=args.seconds)
    if args.json:
        print(json.dumps({**info, "config": info["config"].to_dict(), "footprint": fp.to_dict()}, indent=2))
        return 0
    files = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in info["files"].items())
    print(f"# {info['model']}  ({files})")
    if WEIGHTS_NAME not in info["files"] and Path(args.model).is_dir():
        print(f"# no {WEIGHTS_NAME}: architecture only")
    if info["quantization"]:
        line = f"# quantized: asrc.quant mode {info['quantization']!r}"
        bits = info["activation_bits"]
        if bits:
            line += f", {bits}-bit static activations"
            if bits == 8 and not cpu_has_vnni():
                line += " (this CPU has no VNNI: their int8 convs run exactly, as float products of the codes)"
        print(line)
    print()
    print(info["config"].to_yaml().rstrip())
    print()
    print(fp.format_table(markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
