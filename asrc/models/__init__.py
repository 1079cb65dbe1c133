"""wav2vec 2.0 CTC models: configuration, construction, every runtime format and its loading
(float, int8, ESPnet experiments), checkpoint import, students."""

from asrc.models.config import Wav2Vec2Config
from asrc.models.footprint import Footprint, footprint, size_bytes
from asrc.models.import_common import ImportedCheckpoint
from asrc.models.import_fairseq import convert_fairseq, load_fairseq, read_fairseq, read_fairseq_dict
from asrc.models.import_hf import convert_hf, from_hf, load_hf, read_hf
from asrc.models.io import is_model_dir, load_config, save_model_dir
from asrc.models.loader import load
from asrc.models.student import InitReport, build_student, conv_output_cosine, select_teacher_layers
from asrc.models.wav2vec2 import EncoderOutput, Wav2Vec2CTC, num_parameters


def build_model(config: Wav2Vec2Config, tokens=None) -> Wav2Vec2CTC:
    """A randomly initialised model for ``config``."""
    return Wav2Vec2CTC(config, tokens)


__all__ = [
    "Wav2Vec2Config", "Wav2Vec2CTC", "EncoderOutput", "build_model", "load", "load_config", "save_model_dir",
    "is_model_dir", "num_parameters",
    "ImportedCheckpoint", "read_hf", "load_hf", "convert_hf", "from_hf",
    "read_fairseq", "load_fairseq", "convert_fairseq", "read_fairseq_dict",
    "Footprint", "footprint", "size_bytes", "InitReport", "build_student", "conv_output_cosine",
    "select_teacher_layers",
]
