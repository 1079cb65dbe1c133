"""asrc-bench: side-by-side benchmarks (speed, size, data preparation).

Usage:
    asrc-bench --help
    asrc-bench <subcommand> --help
"""

import argparse
import importlib
import sys

from asrc.bench import SUBCOMMANDS
from asrc.bin._cli import ArgumentParser, command


@command("asrc-bench")
def main(argv=None):
    parser = ArgumentParser(prog="asrc-bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_path in SUBCOMMANDS.items():
        module = importlib.import_module(module_path)
        modules[name] = module
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().split("\n")[0],
                           description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
