"""ESPnet experiment directories (``asrc-train`` output) read as asrc models, in plain torch.

:func:`read_experiment` builds the model from ``exp/<tag>/config.yaml`` and a checkpoint;
:func:`export_model_dir` writes it as an asrc model directory (``config.yaml``, ``model.pth``,
``tokens.txt``). Neither needs espnet: the checkpoint is a state dict and the config YAML.

The encoder config in ``exp/<tag>/config.yaml`` is complete (:func:`asrc.espnet.task.complete_args`
resolves it before training), so exporting needs neither the teacher nor the initial model.
Only the wav2vec 2.0 model with its CTC head is exported (``encoder.model.*`` of the ESPnet
checkpoint); prediction heads of ``hidden_loss`` and the update counter stay behind.
"""

import logging
from pathlib import Path
from typing import Optional

import yaml

from asrc.core.tables import read_tokens
from asrc.errors import CheckpointError, ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.models.io import load_state_dict_strict, read_espnet_state, save_model_dir
from asrc.models.wav2vec2 import Wav2Vec2CTC

__all__ = ["DEFAULT_CHECKPOINTS", "find_checkpoint", "read_experiment", "read_experiment_parts", "read_experiment_state",
           "export_model_dir"]

logger = logging.getLogger(__name__)

#: Tried in this order when no checkpoint is named: n-best average, best, last epoch.
DEFAULT_CHECKPOINTS = ("valid.loss.ave.pth", "valid.loss.best.pth", "latest.pth")
PREFIX = "encoder.model."
def find_checkpoint(exp_dir, checkpoint: Optional[str] = None) -> Path:
    """The checkpoint file to export: ``checkpoint`` (a name in ``exp_dir`` or a path) or the first default."""
    exp_dir = Path(exp_dir)
    if checkpoint is not None:
        for path in (exp_dir / checkpoint, Path(checkpoint)):
            if path.is_file():
                return path
        raise FileNotFoundError(f"checkpoint {checkpoint} not found in {exp_dir}")
    for name in DEFAULT_CHECKPOINTS:
        if (exp_dir / name).is_file():
            return exp_dir / name
    raise FileNotFoundError(f"{exp_dir}: none of {list(DEFAULT_CHECKPOINTS)} exists; has training finished an epoch?")


def read_experiment(exp_dir, checkpoint: Optional[str] = None) -> Wav2Vec2CTC:
    """The wav2vec 2.0 CTC model of experiment ``exp_dir``, in eval mode with ``.tokens`` set.

    ``checkpoint``: a file name in ``exp_dir`` (``valid.loss.ave.pth``, ``valid.cer.best.pth``,
    ``3epoch.pth``, ``checkpoint.pth``...) or a path; default :data:`DEFAULT_CHECKPOINTS`.
    A structured-pruning run (``prune:`` in its config) is refused: its weights mean something
    only under its gates; its model is the dense one that ``asrc.prune.export`` writes. So is a
    quantization-aware run (``qat:``): its model is the int8 one ``asrc-quantize --mode qat`` writes.
    """
    args, config, tokens, own, path, _ = _read_experiment_files(exp_dir, checkpoint)
    if args.get("qat") is not None:
        raise ConfigError(f"{exp_dir}: trained with quantization-aware training (qat); its model is the int8 one: "
                          f"asrc-quantize {exp_dir} OUT --mode qat")
    if args.get("prune") is not None:
        raise ConfigError(f"{exp_dir} is a structured-pruning run: load the dense model it exported "
                          f"(asrc-train --export_model_dir, asrc.prune.export.export_pruned_model_dir), "
                          f"not its gated student")
    return _build(config, tokens, own, path)


def read_experiment_state(exp_dir, checkpoint: Optional[str] = None):
    """``(ESPnet args, Wav2Vec2Config, tokens, state dict of the model, checkpoint path)`` of an
    experiment; the state dict keys are the model's (``encoder.model.`` removed)."""
    return _read_experiment_files(exp_dir, checkpoint)[:5]


def read_experiment_parts(exp_dir, checkpoint: Optional[str] = None):
    """``(model, checkpoint path, ESPnet config dict, full checkpoint state)`` of experiment ``exp_dir``:
    the wav2vec 2.0 model with the checkpoint's ``encoder.model.*`` weights, and what else a
    workflow needs from the run (:mod:`asrc.prune.export` reads its gates)."""
    args, config, tokens, own, path, state = _read_experiment_files(exp_dir, checkpoint)
    return _build(config, tokens, own, path), path, args, state


def _build(config, tokens, own, path) -> Wav2Vec2CTC:
    model = Wav2Vec2CTC(config, tokens)
    load_state_dict_strict(model, own, str(path))
    return model.eval()


def _read_experiment_files(exp_dir, checkpoint: Optional[str]):
    exp_dir = Path(exp_dir)
    config_path = exp_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{exp_dir}: no config.yaml; not an asrc-train experiment directory")
    with open(config_path, encoding="utf-8") as f:
        args = yaml.safe_load(f)
    if args.get("encoder") != "asrc_wav2vec2":
        raise ConfigError(f"{config_path}: encoder is {args.get('encoder')!r}; only asrc_wav2vec2 models export")
    config = Wav2Vec2Config.from_dict((args.get("encoder_conf") or {}).get("config") or {},
                                      source=f"{config_path} encoder_conf.config")
    tokens = args.get("token_list")
    if isinstance(tokens, str):
        tokens = read_tokens(tokens)
    if not isinstance(tokens, list) or len(tokens) != config.vocab_size:
        raise ConfigError(f"{config_path}: token_list does not give {config.vocab_size} tokens")

    path = find_checkpoint(exp_dir, checkpoint)
    state = read_espnet_state(path)
    own = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not own:
        raise CheckpointError(f"{path}: no {PREFIX}* parameters; not a checkpoint of an asrc_wav2vec2 encoder")
    return args, config, tokens, own, path, state


def export_model_dir(exp_dir, out_dir, checkpoint: Optional[str] = None) -> Path:
    """Write the asrc model directory of experiment ``exp_dir`` to ``out_dir``; returns ``out_dir``.

    ``checkpoint`` as for :func:`read_experiment`.
    """
    model = read_experiment(exp_dir, checkpoint)
    path = find_checkpoint(exp_dir, checkpoint)
    save_model_dir(model, out_dir, model.tokens)
    logger.info("exported %s (%s) to %s", exp_dir, path.name, out_dir)
    return Path(out_dir)
