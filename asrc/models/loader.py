"""One loader for every kind of model directory.

======================================= ==================================================
``config.yaml`` + ``model.pth``          float model (:mod:`asrc.models.io`)
the same + ``quantization.yaml``         int8 model (:mod:`asrc.models.quantized`)
ESPnet ``config.yaml`` + checkpoints     ``asrc-train`` experiment (:mod:`asrc.models.espnet_dir`)
======================================= ==================================================

A new runtime format (a pruned model, say) adds its module here and a branch to :func:`load`.
"""

from pathlib import Path

from asrc.models.espnet_dir import read_experiment
from asrc.models.io import QUANT_NAME, is_espnet_experiment, is_model_dir, load_float
from asrc.models.quantized import load_quantized
from asrc.models.wav2vec2 import Wav2Vec2CTC


def load(model_dir, map_location="cpu") -> Wav2Vec2CTC:
    """Load a model directory of any kind; returns the model in eval mode with ``.tokens`` set
    (or None). Int8 models run on the CPU only."""
    model_dir = Path(model_dir)
    if (model_dir / QUANT_NAME).is_file():
        return load_quantized(model_dir, map_location=map_location)
    if not is_model_dir(model_dir) and is_espnet_experiment(model_dir):
        return read_experiment(model_dir)
    return load_float(model_dir, map_location)
