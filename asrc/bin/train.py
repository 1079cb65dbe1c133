"""asrc-train: train or distil wav2vec 2.0 CTC models with ESPnet's trainer.

Usage:
    # a CTC model (teacher) from an ESPnet-style YAML on Kaldi-style data directories
    asrc-train --config conf/train_teacher.yaml \\
        --train_data_dir data/train --valid_data_dir data/dev --token_list data/tokens.txt
    # fine-tune a converted model: encoder_conf: {init: models/w2v2_base_960h}
    # distil a teacher into the student of a student spec (asrc.models.student_spec)
    asrc-train --config conf/distill.yaml --student conf/student.yaml --model_conf teacher=DIR \
        --export_model_dir exp/distill/model
    # the same in the original demo's terms, and its CTC-only baseline (same student, same updates)
    asrc-train --demo_config demo_config.yaml
    asrc-train --demo_config demo_config.yaml --ctc_only

Every ESPnet ASR option works as a flag or a YAML key (``--max_epoch 10``, ``--ngpu 1``,
``--num_iters_per_epoch 100``, ``--batch_bins 1600000``, ``--encoder_conf freeze_feature_updates=1000``);
flags override the YAML. ``asrc-train --print_config`` shows them all with asrc's defaults.
The experiment goes to ``exp/<tag>/`` (tag = config file name; ``--output_dir`` overrides).
Re-running the same command resumes from the last finished epoch.

Two CPU processes (gloo) on one machine:
    torchrun --nproc_per_node 2 -m asrc.bin.train --config ... \\
        --ngpu 0 --multiprocessing_distributed false --dist_backend gloo
"""

import argparse
import sys

from asrc.bin._cli import ArgumentParser, command


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="asrc-train", add_help=False,
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("-h", "--help", action="store_true", help="show this help and ESPnet's options")
    parser.add_argument("--demo_config", help="a demo_config.yaml in the original toolkit's terms "
                                              "(asrc.distill.demo_config); --config and flags override it")
    parser.add_argument("--ctc_only", action="store_true",
                        help="with --demo_config: the same student trained with CTC alone")
    parser.add_argument("--exp_dir", default="exp", help="where experiment directories go (default: exp)")
    parser.add_argument("--tag", help="experiment name (default: the config file's name)")
    parser.add_argument("--export_model_dir", help="after training, export an asrc model directory here")
    parser.add_argument("--export_checkpoint", help="checkpoint to export (default: valid.loss.ave.pth)")
    parser.add_argument("--config", help="ESPnet-style YAML config")
    parser.add_argument("--output_dir", help="experiment directory (default: <exp_dir>/<tag>)")
    return parser


def _update_count_flags(parser, espnet_args) -> dict:
    """``--max_epoch`` / ``--num_iters_per_epoch`` given on the command line (``--opt N`` or
    ``--opt=N``; the last one counts, as in ESPnet's parser), as ints."""
    from asrc.distill.demo_config import UPDATE_COUNT_OPTIONS

    found = {}
    for i, arg in enumerate(espnet_args):
        for name in UPDATE_COUNT_OPTIONS:
            flag = f"--{name}"
            if arg == flag and i + 1 < len(espnet_args):
                value = espnet_args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg[len(flag) + 1:]
            else:
                continue
            try:
                found[name] = int(value)
            except ValueError:
                parser.error(f"{flag} {value!r}: not a whole number")
    return found


@command("asrc-train", status=2)
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, espnet_args = parser.parse_known_args(argv)
    if args.help:
        parser.print_help()
        print("\nESPnet options (asrc defaults):\n")
        from asrc.espnet.task import AsrcASRTask

        AsrcASRTask.get_parser().print_help()
        return 0
    if args.ctc_only and not args.demo_config:
        parser.error("--ctc_only goes with --demo_config (otherwise use --model asrc_ctc)")

    from asrc.espnet.launch import default_output_dir, train

    defaults = {}
    if args.demo_config:
        from asrc.distill.demo_config import translate_file

        defaults = translate_file(args.demo_config, ctc_only=args.ctc_only,
                                  overrides=_update_count_flags(parser, espnet_args))
    output_dir = args.output_dir or default_output_dir(args.exp_dir, args.tag, args.config, args.demo_config,
                                                       args.ctc_only)
    if args.config:
        espnet_args = ["--config", args.config] + espnet_args
    espnet_args += ["--output_dir", output_dir]
    train(espnet_args, defaults, command=[sys.executable, "-m", "asrc.bin.train"] + argv, export_dir=args.export_model_dir,
          export_checkpoint=args.export_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
