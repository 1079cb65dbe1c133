"""Benchmarks: scripts that measure things side by side in one run and print ratios.

Each sub-command of ``asrc-bench`` is a module here with ``add_arguments(parser)`` and
``run(args) -> int``.
"""

SUBCOMMANDS = {
    "footprint": "asrc.bench.footprint",
    "model-speed": "asrc.bench.model_speed",
    "librispeech-prep": "asrc.bench.librispeech_prep",
}
