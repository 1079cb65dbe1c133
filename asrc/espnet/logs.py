"""Logging of an asrc-train process: stderr plus ``exp/<tag>/train.log`` on rank 0.

Used by :mod:`asrc.espnet.launch` (the process asrc-train starts) and
:class:`asrc.espnet.task.AsrcASRTask` (the processes ESPnet spawns, one per GPU).
"""

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Optional

__all__ = ["rank", "logging_to"]


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
