"""Quantization of asrc models for CPU inference: the workflow (calibration, conversion) and export.

    from asrc.quant import quantize_model
    from asrc.models.quantized import save_quantized
    qmodel, spec = quantize_model(model, "static-pos", calibration=waveforms)
    save_quantized(qmodel, spec, "exp/student_int8")     # asrc.models.load() reads it back

See :mod:`asrc.quant.quantize` for the modes and :mod:`asrc.quant.export` for TorchScript/ONNX;
the int8 model format and its modules are :mod:`asrc.models.quantized` and :mod:`asrc.models.int8`.
Importing the package registers ``qat:`` (:class:`asrc.quant.qat.QATConfig`) as a section of the
student spec.
"""

from asrc.models.student_spec import register_section
from asrc.quant.qat import QATConfig
from asrc.quant.quantize import MODES, quantize_model

# A student spec may carry quantization-aware training: ``qat:`` (asrc.models.student_spec).
register_section("qat", QATConfig.from_dict)

__all__ = ["MODES", "quantize_model"]
