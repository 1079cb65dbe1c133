"""Run one asrc-train experiment: logging to ``exp/<tag>/train.log``, ESPnet's trainer, export.

``exp/<tag>/`` ends up with what ESPnet writes (``config.yaml``, ``checkpoint.pth``,
``<n>epoch.pth``, ``valid.loss.best.pth``, ``valid.loss.ave.pth``, ``tensorboard/{train,valid}``,
``images/``) plus ``train.log`` (appended to on every run; it keeps the traceback of a failed
run, whose stderr has one line), ``train.sh`` (the command, which
also resumes: ``--resume true`` is the default) and ``shapes/`` (:mod:`asrc.espnet.data`).
"""

import logging
import os
import shlex
import traceback
from pathlib import Path
from typing import Optional, Sequence

from asrc.core.files import atomic_write
from asrc.espnet.logs import logging_to, rank

__all__ = ["default_output_dir", "train"]

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


def _write_command(output_dir, command: Sequence[str]):
    with atomic_write(Path(output_dir) / "train.sh") as f:
        f.write("#!/bin/sh\n# Re-running this resumes the experiment from its last finished epoch.\n")
        f.write(f"cd {shlex.quote(os.getcwd())} && {shlex.join(command)}\n")
    os.chmod(Path(output_dir) / "train.sh", 0o755)


def _check_export_dir(export_dir, args) -> None:
    """Refuse an ``--export_model_dir`` that is the model the run starts from or its teacher: the
    export would overwrite it (checked before training, not after hours of it)."""
    from asrc.errors import ConfigError

    if export_dir is None:
        return
    sources = {"encoder_conf.init": (getattr(args, "encoder_conf", None) or {}).get("init"),
               "model_conf.teacher": (getattr(args, "model_conf", None) or {}).get("teacher")}
    for name, source in sources.items():
        if source is not None and Path(source).resolve() == Path(export_dir).resolve():
            raise ConfigError(f"--export_model_dir {export_dir} is {name}: the export would overwrite the model this "
                              f"run starts from; give another folder")


def check_updates_made(output_dir) -> None:
    """An :class:`AsrcError` when the run's optimizer never stepped: ESPnet's trainer skips an
    update whose loss or gradient is not finite and carries on, so a run in which every loss was
    NaN/Inf (a diverged or misconfigured objective) would end with exit 0 and export the
    model it started from. Nothing to check without ``checkpoint.pth`` (the trainer's state)."""
    import torch

    from asrc.errors import AsrcError

    path = Path(output_dir) / "checkpoint.pth"
    if not path.is_file():
        return
    state = torch.load(path, map_location="cpu", weights_only=False)
    optimizers = state.get("optimizers") if isinstance(state, dict) else None
    if optimizers and all(isinstance(o, dict) and not o.get("state") for o in optimizers):
        raise AsrcError(f"{output_dir}: no update was made: the trainer skipped every one (a loss or gradient "
                        f"that is not finite; see {path.parent / 'train.log'}); nothing to export")


def train(cmd: Sequence[str], defaults: Optional[dict] = None, command: Optional[Sequence[str]] = None,
          export_dir=None, export_checkpoint: Optional[str] = None) -> Path:
    """Train with ESPnet options ``cmd`` over ``defaults``; returns the output directory.

    ``command``: the user's command line, written to ``train.sh``. ``export_dir``: export the
    result as an asrc model directory there (:func:`asrc.models.espnet_dir.export_model_dir`; for
    a ``prune:`` run the materialised dense model, :func:`asrc.prune.export.export_pruned_model_dir`;
    after quantization-aware training, the int8 model it converts to, :mod:`asrc.quant.qat`).
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
                    logger.info("command: %s", shlex.join(command))

            def completed():
                _check_export_dir(export_dir, args)
                # Only a run that starts (or resumes) replaces train.sh: not one refused for options
                # that differ from those of the run it would resume.
                if rank() == 0 and command:
                    _write_command(output_dir, command)

            AsrcASRTask.main(args=args, completed=completed)
            if rank() == 0:
                check_updates_made(output_dir)
            if export_dir is not None and rank() == 0 and getattr(args, "qat", None) is not None:
                from asrc.quant.qat import export_int8_dir

                export_int8_dir(output_dir, export_dir, export_checkpoint)
            elif export_dir is not None and rank() == 0:
                if getattr(args, "prune", None) is not None:  # the dense model the gates leave
                    from asrc.prune.export import export_pruned_model_dir as export_model_dir
                else:
                    from asrc.models.espnet_dir import export_model_dir

                export_model_dir(output_dir, export_dir, export_checkpoint)
        except Exception:
            if rank() == 0:  # the log only: asrc-train prints one line for a user error
                with open(output_dir / "train.log", "a", encoding="utf-8") as f:
                    f.write(traceback.format_exc())
            raise
    return output_dir
