"""The espnet2 adapter: asrc's models inside ESPnet's task/trainer.

Importing this package registers into espnet2's ASR choice tables (``asrc`` itself never
imports espnet):

- ``--encoder asrc_wav2vec2``: :class:`asrc.espnet.encoder.AsrcWav2Vec2Encoder`
- ``--model asrc_ctc``: :class:`asrc.espnet.models.AsrcCTCModel`
- ``--model asrc_distill``: :class:`asrc.espnet.models.AsrcDistillModel`
- ``--preprocessor asrc``: :class:`asrc.espnet.preprocess.AsrcPreprocessor`

so that ``ASRTask.build_model`` (training) and ``ASRTask.build_model_from_file`` (ESPnet's
inference tools) both find them; the latter builds an asrc experiment from its ``config.yaml``
alone, without the teacher, initial model or data its training started from
(:mod:`asrc.espnet.inference`). Training goes through :class:`asrc.espnet.task.AsrcASRTask`
(``asrc-train``); :func:`asrc.models.espnet_dir.export_model_dir` turns an experiment into an asrc
model directory.
"""

from espnet2.tasks import asr as _asr

from asrc.espnet import inference as _inference
from asrc.espnet.encoder import AsrcWav2Vec2Encoder
from asrc.espnet.models import AsrcCTCModel, AsrcDistillModel
from asrc.espnet.preprocess import AsrcPreprocessor

ENCODERS = {"asrc_wav2vec2": AsrcWav2Vec2Encoder}
MODELS = {"asrc_ctc": AsrcCTCModel, "asrc_distill": AsrcDistillModel}
PREPROCESSORS = {"asrc": AsrcPreprocessor}


def register() -> None:
    """Add asrc's classes to espnet2's ASR choice tables and let ESPnet's inference tools load an
    experiment from its own directory (:mod:`asrc.espnet.inference`); idempotent."""
    _asr.encoder_choices.classes.update(ENCODERS)
    _asr.model_choices.classes.update(MODELS)
    _asr.preprocessor_choices.classes.update(PREPROCESSORS)
    _inference.install()


register()

__all__ = ["AsrcWav2Vec2Encoder", "AsrcCTCModel", "AsrcDistillModel", "AsrcPreprocessor", "register", "ENCODERS",
           "MODELS", "PREPROCESSORS"]
