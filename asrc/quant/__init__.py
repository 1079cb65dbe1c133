"""Quantization and export of asrc models for CPU inference.

    from asrc.quant import quantize_model, save_quantized
    qmodel, spec = quantize_model(model, "static-pos", calibration=waveforms)
    save_quantized(qmodel, spec, "exp/student_int8")     # asrc.models.load() reads it back

See :mod:`asrc.quant.quantize` for the modes and :mod:`asrc.quant.export` for TorchScript/ONNX.
"""

from asrc.quant.modules import FoldedPositionalConv, Int8Conv1d, parameter_count
from asrc.quant.quantize import (MODES, QuantizationSpec, build_quantized, fold_weight_norm, load_quantized,
                                 quantize_model, save_quantized)

__all__ = [
    "MODES", "QuantizationSpec", "quantize_model", "save_quantized", "load_quantized", "build_quantized",
    "fold_weight_norm", "FoldedPositionalConv", "Int8Conv1d", "parameter_count",
]
