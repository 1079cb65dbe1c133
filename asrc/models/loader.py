"""One loader for every kind of model directory.

======================================= ==================================================
``config.yaml`` + ``model.pth``          float model (:mod:`asrc.models.io`)
the same + ``quantization.yaml``         int8 model (:mod:`asrc.models.quantized`)
ESPnet ``config.yaml`` + checkpoints     ``asrc-train`` experiment (:mod:`asrc.models.espnet_dir`)
======================================= ==================================================

A new runtime format (a pruned model, say) adds its module here and a branch to :func:`load`.
"""

from pathlib import Path

from asrc.errors import ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.models.espnet_dir import find_checkpoint, read_experiment
from asrc.models.io import (CONFIG_NAME, QUANT_NAME, TOKENS_NAME, WEIGHTS_NAME, check_finite, is_espnet_experiment,
                            is_model_dir, load_config, load_float)
from asrc.models.quantized import QuantizationSpec, load_quantized
from asrc.models.wav2vec2 import Wav2Vec2CTC


def load(model_dir, map_location="cpu") -> Wav2Vec2CTC:
    """Load a model directory of any kind; returns the model in eval mode with ``.tokens`` set
    (or None). Int8 models run on the CPU only. Weights with NaN or Inf are an error
    (:func:`asrc.models.io.check_finite`), whatever the kind."""
    model_dir = Path(model_dir)
    if (model_dir / QUANT_NAME).is_file():
        return load_quantized(model_dir, map_location=map_location)  # reads model.pth with io.read_state_dict
    if not is_model_dir(model_dir) and is_espnet_experiment(model_dir):
        model = read_experiment(model_dir)
        check_finite(model.state_dict(), find_checkpoint(model_dir))
        return model
    return load_float(model_dir, map_location)


_SPEC_SECTIONS = {"layers", "architecture", "init", "distill", "prune", "qat"}


def _refuse_student_spec(path: Path) -> None:
    """A student spec (``layers:``/``architecture:``/... sections, :mod:`asrc.models.student_spec`)
    given where a model config belongs: say so, rather than list its sections as unknown keys."""
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return  # Wav2Vec2Config.from_yaml reports it
    if isinstance(d, dict) and d and set(d) <= _SPEC_SECTIONS:
        raise ConfigError(f"{path}: a student spec (sections {sorted(d)}), not a model config: it describes a "
                          f"student relative to a teacher (asrc-train --student {path}, or asrc-bench footprint "
                          f"--student-preset {path}); asrc-info takes a model directory or its config.yaml")


def describe(path) -> dict:
    """Config, files (bytes on disk), quantization mode and static activation width (7 or 8 bits,
    None without static int8 convs) of a model directory or config file.

    The weights of a model directory are loaded (:func:`load`): damaged ones are the same error as
    in every other command. A directory without ``model.pth`` is an architecture alone."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path}: no {CONFIG_NAME}; not an asrc model directory")
        files = {name: (path / name).stat().st_size for name in (CONFIG_NAME, WEIGHTS_NAME, TOKENS_NAME, QUANT_NAME)
                 if (path / name).is_file()}
        quantization = bits = None
        if QUANT_NAME in files:
            spec = QuantizationSpec.from_yaml_file(path / QUANT_NAME)
            quantization = spec.mode
            if spec.static_int8_conv:
                bits = 7 if spec.activation_reduce_range else 8
        # The weights are read as every command reads them; an empty config.yaml is an error, not wav2vec2-base.
        # An ESPnet experiment (config.yaml of ESPnet's options) is read as load() reads it.
        config = load(path).config if WEIGHTS_NAME in files or is_espnet_experiment(path) else load_config(path)
    elif path.is_file():
        _refuse_student_spec(path)
        config, files, quantization, bits = Wav2Vec2Config.from_yaml(path), {path.name: path.stat().st_size}, None, None
    else:
        raise FileNotFoundError(f"{path}: no such model directory or config file")
    return {"model": str(path), "config": config, "files": files,
            "quantization": quantization, "activation_bits": bits}
