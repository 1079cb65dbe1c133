"""Export asrc models to TorchScript and ONNX.

Both formats keep the model's contract: inputs ``wav [batch, sample]`` float32 16 kHz and
``lengths [batch]`` int64, outputs ``logits [batch, frame, vocab]`` and ``out_lengths
[batch]``, with batch, sample and frame dynamic.

Both are traced with a padded two-utterance batch. That makes the trace take the masked path
everywhere (masked group-norm statistics, zeroed padding before the positional conv, attention
masks), which is also exact for unpadded input, so one graph serves any batch; sizes are
recorded as graph operations, so any length works.

What each format supports:

=============  ==========================================  =====================================
format         float model                                 int8
=============  ==========================================  =====================================
torchscript    yes                                         yes: any asrc.quant mode (the int8
                                                           kernels are torch's fbgemm/oneDNN ops)
onnx           yes (opset 17, onnxruntime CPU)             ``int8=True``: onnxruntime's dynamic
                                                           quantization of the float graph's
                                                           MatMul weights (per channel); torch's
                                                           int8 modules have no ONNX form, so an
                                                           asrc.quant directory is refused
=============  ==========================================  =====================================
"""

import os
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17
INPUT_NAMES = ["wav", "lengths"]
OUTPUT_NAMES = ["logits", "out_lengths"]
DYNAMIC_AXES = {
    "wav": {0: "batch", 1: "samples"},
    "lengths": {0: "batch"},
    "logits": {0: "batch", 1: "frames"},
    "out_lengths": {0: "batch"},
}
# The only tensor-to-bool conversions in the model: the masked-norm decision, traced on a padded
# example (see the module docstring), so baking it in is intended.
_EXPECTED_TRACE_WARNING = "Converting a tensor to a Python boolean might cause the trace to be incorrect"


class LogitsOnly(nn.Module):
    """``forward(wav, lengths) -> (logits, out_lengths)``: the exported signature, nothing optional."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, wav: Tensor, lengths: Tensor):
        logits, out_lengths = self.model(wav, lengths)
        return logits, out_lengths


def example_inputs(model: nn.Module, seconds: float = 1.0):
    """A padded batch of two: the second utterance 3/4 the length of the first."""
    samples = max(int(seconds * SAMPLE_RATE), 2 * model.config.receptive_field)
    gen = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(2, samples, generator=gen)
    lengths = torch.tensor([samples, samples * 3 // 4])
    wav[1, lengths[1]:] = 0.0
    return wav, lengths


def is_quantized(model: nn.Module) -> bool:
    return getattr(model, "quantization", None) is not None or any(
        type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def _trace(model: nn.Module, inputs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EXPECTED_TRACE_WARNING)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        # Static int8 modules read their calibrated scales as Python numbers: constants, as meant.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.ao.nn.quantized")
        return torch.jit.trace(LogitsOnly(model).eval(), inputs, check_trace=False)


@torch.inference_mode(False)
def export_torchscript(model: nn.Module, out_path) -> Path:
    """Trace ``model`` and save it with ``torch.jit.save``; load with ``torch.jit.load``."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    try:
        with torch.no_grad():
            traced = _trace(model.eval(), example_inputs(model))
    finally:
        model.train(was_training)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    torch.jit.save(traced, str(tmp))
    os.replace(tmp, out_path)
    return out_path


@torch.inference_mode(False)
def export_onnx(model: nn.Module, out_path, *, int8: bool = False, opset: int = ONNX_OPSET) -> Path:
    """Export a float model to ONNX; ``int8`` quantizes the exported graph with onnxruntime."""
    if is_quantized(model):
        raise AsrcError("ONNX export takes the float model: torch's int8 modules have no ONNX form. "
                        "Export the float model directory with int8=True (asrc-export --int8) instead.")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    float_path = out_path.with_name(f".{out_path.name}.fp32.tmp") if int8 else out_path.with_name(
        f".{out_path.name}.tmp")
    was_training = model.training
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_EXPECTED_TRACE_WARNING)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # The exporter puts the module it is given back into that module's mode afterwards:
            # the wrapper must be in eval mode too, or the model comes back in training mode.
            torch.onnx.export(LogitsOnly(model).eval(), example_inputs(model), str(float_path),
                              input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, dynamic_axes=DYNAMIC_AXES,
                              opset_version=opset, dynamo=False)
        if int8:
            quantize_onnx(float_path, out_path)
        else:
            os.replace(float_path, out_path)
    finally:
        model.train(was_training)
        if float_path.exists():
            float_path.unlink()
    return out_path


def quantize_onnx(float_path, out_path) -> Path:
    """onnxruntime dynamic int8: MatMul weights int8 per output channel, activations quantized
    per call. Convs stay float: onnxruntime's ConvInteger is slower than its float Conv on CPU."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a generic "consider pre-processing" hint on the root logger
    try:
        quantize_dynamic(str(float_path), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    os.replace(tmp, out_path)
    return out_path


def onnx_session(path, threads: Optional[int] = None):
    """An onnxruntime CPU session for an exported model (``threads`` intra-op threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Idle workers must not spin: in a side-by-side benchmark they would steal the cores of
    # the models timed next (the demo's footprint showed the asrc rows after ONNX ones 2x slow).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_model(model: nn.Module, out_path, fmt: str, *, int8: bool = False) -> Path:
    """Export to ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "torchscript":
        if int8:
            raise AsrcError("TorchScript int8: quantize first (asrc-quantize), then export the quantized "
                            "directory; int8 applies to ONNX export only")
        return export_torchscript(model, out_path)
    if fmt == "onnx":
        return export_onnx(model, out_path, int8=int8)
    raise ValueError(f"format {fmt!r} is not one of {FORMATS}")


# Export vs PyTorch on the same input: float exports differ only by kernel rounding.
FLOAT_TOLERANCE = 1e-3
# int8 ONNX vs the float PyTorch model: quantization noise, judged by direction, not size.
INT8_MIN_COSINE = 0.99


def run_export(path, fmt: str, threads: Optional[int] = None):
    """A callable ``(wav, lengths) -> (logits, out_lengths)`` (torch tensors) for an exported file."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path)).eval()
        return module
    if fmt == "onnx":
        session = onnx_session(path, threads)

        def run(wav: Tensor, lengths: Tensor):
            logits, out_lengths = session.run(OUTPUT_NAMES, {"wav": wav.numpy(), "lengths": lengths.numpy()})
            return torch.from_numpy(logits), torch.from_numpy(out_lengths)

        return run
    raise ValueError(f"format {fmt!r} is not one of {FORMATS}")


@torch.inference_mode()
def check_export(model: nn.Module, path, fmt: str, *, int8: bool = False) -> dict:
    """Compare an export with ``model`` on a padded random batch of another size than the trace's."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(1)
    samples = max(24000, 3 * model.config.receptive_field)
    lengths = torch.tensor([samples * 2 // 3, samples, samples // 2])
    wav = 0.1 * torch.randn(3, samples, generator=gen)
    for i, n in enumerate(lengths.tolist()):
        wav[i, n:] = 0.0
    ref, ref_len = model.eval()(wav, lengths)
    out, out_len = run_export(path, fmt)(wav, lengths)
    if out.shape != ref.shape or out_len.tolist() != ref_len.tolist():
        return {"ok": False, "message": f"{path}: output shape {tuple(out.shape)} lengths {out_len.tolist()} vs "
                                        f"PyTorch {tuple(ref.shape)} lengths {ref_len.tolist()}"}
    valid = torch.arange(ref.shape[1])[None, :] < ref_len[:, None]
    diff = (out - ref).abs()[valid].max().item()
    cosine = F.cosine_similarity(out[valid].flatten(), ref[valid].flatten(), dim=0).item()
    if int8:
        ok = cosine >= INT8_MIN_COSINE
        rule = f"cosine >= {INT8_MIN_COSINE}"
    else:
        ok = diff <= FLOAT_TOLERANCE
        rule = f"max |diff| <= {FLOAT_TOLERANCE}"
    verdict = "OK" if ok else "FAILED"
    return {"ok": ok, "max_abs_diff": diff, "cosine": cosine,
            "message": f"check {verdict}: {fmt} vs PyTorch on a padded batch of 3: max |logit diff| {diff:.3g}, "
                       f"cosine {cosine:.6f} (rule: {rule})"}
