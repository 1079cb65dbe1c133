"""Warm-start the CNN front end of a new wav2vec 2.0 CTC model on log-mel targets.

    asrc-frontend-init --config conf/teacher_model.yaml --tokens data/tokens.txt \\
        --data-dir data/train --steps 130 --out exp/teacher_frontend_init

builds a randomly initialised model from ``--config`` (a Wav2Vec2Config YAML), trains its
feature extractor and feature projection to predict 80-dim log-mel frames for ``--steps``
steps (:mod:`asrc.models.frontend_init`), and writes an asrc model directory (``config.yaml``,
``model.pth``, ``tokens.txt``, ``frontend_init.log``) to initialise CTC training from.

For a student narrower than its teacher (no front-end weight fits), ``--teacher DIR`` makes the
target the teacher's projected CNN features instead of log-mel, and ``--student`` gives the
student as a student spec (``init.from: random``; :mod:`asrc.models.student_spec`) instead of a
whole config:

    asrc-frontend-init --student conf/student_narrow.yaml --tokens teacher/tokens.txt \
        --teacher teacher --data-dir data/train --steps 300 --out exp/narrow_frontend_init
"""

import argparse
import math

import torch

from asrc.bin._cli import ArgumentParser, command
from asrc.errors import AsrcError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="asrc-frontend-init", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--config", help="Wav2Vec2Config YAML of the model to build")
    model.add_argument("--student", help="student spec YAML of the model to build (with --teacher)")
    p.add_argument("--tokens", required=True, help="tokens.txt (one per line; count must equal vocab_size)")
    p.add_argument("--data-dir", required=True, help="Kaldi-style data dir whose audio is used (wav.scp ...)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--steps", type=int, default=130, help="regression steps (default 130)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")
    p.add_argument("--batch-seconds", type=float, default=25.0, help="padded audio per batch (default 25 s)")
    p.add_argument("--n-mels", type=int, default=80, help="mel bins of the log-mel target, at least 1 (default 80; "
                                                          "not used with --teacher)")
    p.add_argument("--teacher", metavar="DIR", help="asrc model dir: regress its projected CNN features "
                                                    "instead of log-mel (students narrower than it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    return p


def check_option_ranges(args) -> None:
    """One-line :class:`AsrcError` naming the first numeric option out of its range."""
    for flag, value, minimum in (("--steps", args.steps, 1), ("--n-mels", args.n_mels, 1),
                                 ("--num-threads", args.num_threads, 1)):
        if value < minimum:
            raise AsrcError(f"{flag} must be >= {minimum}, got {value}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise AsrcError(f"--lr must be a finite number > 0, got {args.lr}")
    # 0 is allowed: one utterance per batch.
    if not (math.isfinite(args.batch_seconds) and args.batch_seconds >= 0):
        raise AsrcError(f"--batch-seconds must be a finite number >= 0, got {args.batch_seconds}")


@command("asrc-frontend-init")
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.student and not args.teacher:
        parser.error("--student describes a student relative to its teacher: give --teacher")
    check_option_ranges(args)
    from asrc.models import Wav2Vec2Config, build_model
    from asrc.core.tables import read_tokens
    from asrc.models.frontend_init import frontend_init_data_dir

    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    if args.student:
        from asrc.models import load_config
        from asrc.models.student_spec import StudentSpec

        spec = StudentSpec.from_yaml_file(args.student)
        if spec.init_from != "random":
            raise ValueError(f"{args.student}: init.from is {spec.init_from!r}; asrc-frontend-init warm-starts "
                             f"students that start from random weights (init.from: random)")
        config = spec.student_config(load_config(args.teacher))
    else:
        config = Wav2Vec2Config.from_yaml(args.config)
    tokens = read_tokens(args.tokens)
    if len(tokens) != config.vocab_size:
        raise ValueError(f"{args.tokens}: {len(tokens)} tokens but {args.config or args.student} has "
                         f"vocab_size={config.vocab_size}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(config, tokens).to(device)  # first: loading the teacher draws random numbers
    teacher = None
    if args.teacher:
        from asrc.models import load

        teacher = load(args.teacher)
        if teacher.tokens is not None and list(teacher.tokens) != list(tokens):
            raise ValueError(f"{args.tokens} and the teacher's tokens ({args.teacher}) differ")
    stats = frontend_init_data_dir(model, args.data_dir, args.out, args.steps, lr=args.lr,
                                   max_seconds=args.batch_seconds, n_mels=args.n_mels, seed=args.seed,
                                   teacher=teacher, teacher_dir=args.teacher)
    target = "the teacher's features" if teacher is not None else "log-mel"
    print(f"front-end warm start on {target}: {stats.steps} steps, final MSE {stats.final_loss():.4f} "
          f"(1.0 = predicting the mean) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
