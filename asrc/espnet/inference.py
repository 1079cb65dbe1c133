"""ESPnet's inference tools on asrc-train experiments, from the experiment directory alone.

``Speech2Text``, ``espnet2.bin.asr_inference`` and every other ESPnet tool load a trained model
with ``ASRTask.build_model_from_file(config.yaml, checkpoint)``: ESPnet builds the model as for
training, then overwrites its weights with the checkpoint. For an asrc run, building as for
training means loading ``encoder_conf.init`` (the teacher folder a student was cut from), fitting
the student's CNN on ``encoder_conf.calibration`` (the training data) and loading the teacher
of ``model_conf.teacher``: all of it thrown away by the checkpoint, and none of it there when the
experiment directory is copied elsewhere.

:func:`install` (called when :mod:`asrc.espnet` is imported, as its class registrations are)
wraps ``ASRTask.build_model_from_file`` so that, for a config with ``--encoder asrc_wav2vec2``
and a checkpoint to load, the model is built from ``config.yaml`` alone
(:func:`inference_args`): the complete ``encoder_conf.config`` that ``asrc-train`` wrote, a
distillation run's student as an ``asrc_ctc`` model (the teacher and the hidden-state
predictors are training-only), quantization-aware runs with their fake quantization. The
checkpoint must then fit that model exactly (every parameter present, same shapes; ESPnet
itself loads with ``strict=False``, which would leave a missing tensor at its random value)
and hold no NaN/Inf. A structured-pruning run is refused: its weights mean something only
under its gates (load the dense model it exported). Any other config goes to ESPnet unchanged.
"""

import argparse
import copy
import logging
from pathlib import Path
from typing import Optional, Union

import yaml

from asrc.errors import ConfigError
from asrc.models.io import load_state_dict_strict, read_espnet_state

__all__ = ["TRAINING_ONLY_PREFIXES", "build_model_from_file", "inference_args", "install"]

logger = logging.getLogger(__name__)

#: encoder_conf keys that describe the model once ``config`` is complete (the rest say how to initialise it).
_ENCODER_KEEP = ("config", "freeze_feature_updates", "mask_after_updates")
#: Checkpoint entries of a distillation run that its student does not use.
TRAINING_ONLY_PREFIXES = ("hidden_predictor.",)


def inference_args(args: argparse.Namespace, source) -> argparse.Namespace:
    """A copy of an asrc experiment's ``args`` (its config.yaml) that builds the trained model
    without the files its training started from (module doc); ``source`` names the config."""
    if getattr(args, "prune", None) is not None:
        raise ConfigError(f"{source} is a structured-pruning run: its weights mean something only under its gates; "
                          f"decode the dense model it exported (asrc-train --export_model_dir, "
                          f"asrc.prune.export.export_pruned_model_dir)")
    encoder_conf = getattr(args, "encoder_conf", None) or {}
    if not isinstance(encoder_conf.get("config"), dict):
        raise ConfigError(f"{source}: encoder_conf.config is missing; not a config.yaml written by asrc-train")
    out = copy.copy(args)
    out.encoder_conf = {k: encoder_conf[k] for k in _ENCODER_KEEP if k in encoder_conf}
    if getattr(args, "model", None) == "asrc_distill":
        out.model = "asrc_ctc"
        out.model_conf = {}
    return out


def _checkpoint_state(model_file, map_location) -> dict:
    state = read_espnet_state(model_file, map_location)
    return {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}


def build_model_from_file(task, config_file: Optional[Union[Path, str]] = None,
                          model_file: Optional[Union[Path, str]] = None, device: str = "cpu"):
    """``(model, args)`` of an asrc experiment built from its config.yaml alone, then ``model_file``
    loaded strictly (module doc); ``None`` when ESPnet's own build applies (not an asrc encoder,
    or no checkpoint to load)."""
    import torch

    if model_file is None:
        return None
    config_file = Path(model_file).parent / "config.yaml" if config_file is None else Path(config_file)
    try:
        with config_file.open("r", encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # ESPnet's build reports it as it always did
    if not isinstance(loaded, dict) or loaded.get("encoder") != "asrc_wav2vec2":
        return None
    from asrc.espnet.task import AsrcASRTask

    args = argparse.Namespace(**loaded)
    model = AsrcASRTask.build_model(inference_args(args, config_file))
    if device != "mps":
        model.to(device)
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"  # as ESPnet: torch.load reads "cuda" as cuda:0
    state = _checkpoint_state(model_file, "cpu" if device == "mps" else device)
    load_state_dict_strict(model, state, f"{model_file} (for {config_file})")
    return model, args


def install() -> None:
    """Wrap ``ASRTask.build_model_from_file`` (every ESPnet ASR tool's loader) for asrc experiments
    (idempotent)."""
    from espnet2.tasks.asr import ASRTask

    espnet_build = ASRTask.build_model_from_file.__func__  # AbsTask's, inherited
    if getattr(espnet_build, "_asrc", False):
        return

    def wrapped(cls, config_file=None, model_file=None, device="cpu"):
        built = build_model_from_file(cls, config_file, model_file, device)
        if built is None:
            return espnet_build(cls, config_file, model_file, device)
        return built

    wrapped.__doc__ = espnet_build.__doc__
    wrapped.__wrapped__ = espnet_build
    wrapped._asrc = True
    ASRTask.build_model_from_file = classmethod(wrapped)
