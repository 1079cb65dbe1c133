"""Run one asrc-train experiment: logging to ``exp/<tag>/train.log``, ESPnet's trainer, export.

``exp/<tag>/`` ends up with what ESPnet writes (``config.yaml``, ``checkpoint.pth``,
``<n>epoch.pth``, ``valid.loss.best.pth``, ``valid.loss.ave.pth``, ``tensorboard/{train,valid}``,
``images/``) plus ``train.log`` (appended to on every run; it keeps the traceback of a failed
run, whose stderr has one line), ``train.sh`` (the command, which
also resumes: ``--resume true`` is the default) and ``shapes/`` (:mod:`asrc.espnet.data`).
"""

import contextlib
import logging
import os
import shlex
import socket
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from asrc.core.files import atomic_write

__all__ = ["default_output_dir", "train", "logging_to"]

logger = logging.getLogger(__name__)


def default_output_dir(exp_dir: str, tag: Optional[str], config: Optional[str], demo_config: Optional[str],
                       ctc_only: bool = False) -> str:
    """``<exp_dir>/<tag>``; the tag defaults to the config file's stem (ESPnet's convention)."""
    if tag is None:
        source = config or demo_config
        tag = Path(source).stem if source else "train"
        if ctc_only:
            tag += "_ctc_only"
    return str(Path(exp_dir) / tag)


def rank() -> int:
    """This process's rank under torchrun/SLURM-style launchers (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def logging_to(output_dir, level: str = "INFO", process_rank: Optional[int] = None):
    """Log to stderr and ``output_dir/train.log`` (rank 0; other ranks log errors to stderr only).

    ESPnet calls ``logging.basicConfig`` itself, which does nothing once the root logger has
    handlers: these, installed first, take its place and are removed afterwards.
    ``process_rank`` defaults to :func:`rank`.
    """
    root = logging.getLogger()
    host = socket.gethostname().split(".")[0]
    r = rank() if process_rank is None else process_rank
    tag = f"{host}:{r}" if "WORLD_SIZE" in os.environ or process_rank is not None else host
    fmt = logging.Formatter(f"[{tag}] %(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    handlers = [logging.StreamHandler(sys.stderr)]
    if r == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "train.log", mode="a", encoding="utf-8"))
    old_level = root.level
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level if r == 0 else "ERROR")
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)


def _write_command(output_dir, command: Sequence[str]):
    with atomic_write(Path(output_dir) / "train.sh") as f:
        f.write("#!/bin/sh\n# Re-running this resumes the experiment from its last finished epoch.\n")
        f.write(f"cd {shlex.quote(os.getcwd())} && {shlex.join(command)}\n")
    os.chmod(Path(output_dir) / "train.sh", 0o755)


def train(cmd: Sequence[str], defaults: Optional[dict] = None, command: Optional[Sequence[str]] = None,
          export_dir=None, export_checkpoint: Optional[str] = None) -> Path:
    """Train with ESPnet options ``cmd`` over ``defaults``; returns the output directory.

    ``command``: the user's command line, written to ``train.sh``. ``export_dir``: export the
    result as an asrc model directory there (:func:`asrc.espnet.export.export_model_dir`).
    """
    from asrc.espnet.task import AsrcASRTask

    args = AsrcASRTask.parse_args(cmd, defaults)
    if args.print_config:
        AsrcASRTask.main(args=args)
        return Path(args.output_dir or ".")
    output_dir = Path(args.output_dir)
    with logging_to(output_dir, args.log_level):
        try:
            if rank() == 0:
                output_dir.mkdir(parents=True, exist_ok=True)
                if command:
                    _write_command(output_dir, command)
                    logger.info("command: %s", shlex.join(command))
            AsrcASRTask.main(args=args)
            if export_dir is not None and rank() == 0:
                from asrc.espnet.export import export_model_dir

                export_model_dir(output_dir, export_dir, export_checkpoint)
        except Exception:
            if rank() == 0:  # the log only: asrc-train prints one line for a user error
                with open(output_dir / "train.log", "a", encoding="utf-8") as f:
                    f.write(traceback.format_exc())
            raise
    return output_dir
