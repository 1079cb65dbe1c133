"""Export asrc models to TorchScript and ONNX.

Both formats keep the model's contract: inputs ``wav [batch, sample]`` float32 16 kHz and
``lengths [batch]`` int64, outputs ``logits [batch, frame, vocab]`` and ``out_lengths
[batch]``, with batch, sample and frame dynamic.

Both are traced with a padded two-utterance batch. That makes the trace take the masked path
everywhere (masked group-norm statistics, zeroed padding before the positional conv, attention
masks), which is also exact for unpadded input, so one graph serves any batch; sizes are
recorded as graph operations, so any length works.

Dynamic int8 Linear layers quantize their input with one scale per call, so in a padded batch
the other utterances and the padding change each utterance's logits. asrc runs such models one
utterance at a time (:meth:`asrc.models.Wav2Vec2CTC.forward`), and so does their TorchScript
(:class:`EachUtterance`: a scripted loop around the model traced on one unpadded utterance).
Their ONNX graphs (and onnxruntime's dynamic int8 of a float graph) compute the batch whole, as
onnxruntime's ``DynamicQuantizeLinear`` does for every such model: feed them one utterance at a
time for logits that do not depend on the batch.

What each format supports:

=============  ==========================================  =====================================
format         float model                                 int8
=============  ==========================================  =====================================
torchscript    yes                                         yes: any asrc.quant mode (the int8
                                                           kernels are torch's fbgemm/oneDNN ops)
onnx           yes (opset 17, onnxruntime CPU)             an asrc.quant directory: QDQ (below);
                                                           a float model with ``int8=True``:
                                                           onnxruntime's dynamic quantization
                                                           of the float graph's MatMul weights
=============  ==========================================  =====================================

ONNX of an asrc int8 model (QDQ): torch's int8 modules have no ONNX form, so the export runs
a float twin (:func:`qdq_twin`) in which every static int8 conv is
``QuantizeLinear -> DequantizeLinear`` around a float ``Conv`` whose kernel is the int8 kernel
behind a ``DequantizeLinear``, with the int8 model's own scales and zero points, and every
dynamic int8 Linear is a float ``MatMul`` that onnxruntime's dynamic quantization then makes
int8 again (weights per column; activations per call, like torch's). At session creation
onnxruntime fuses each conv's QDQ group into one ``QLinearConv`` (int8 in, int8 out), checked
by :func:`onnx_int8_ops`; the conv bias is given as int32 (scale ``s_in * s_w``) behind a
``DequantizeLinear``, which that fusion requires. Agreement with asrc's int8 model:
:func:`qdq_min_cosine` (both requantize the same int8 codes; they differ where one rounds an
accumulator to the neighbouring code, and in how the dynamic MatMul inputs are quantized:
onnxruntime to 8 bits everywhere, asrc to 7 bits on a CPU without VNNI).
"""

import contextlib
import copy
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError
from asrc.models.int8 import Int8Conv1d
from asrc.models.int8_cnn import cpu_has_vnni
from asrc.models.wav2vec2 import has_dynamic_int8, plain_ops

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


class EachUtterance(nn.Module):
    """TorchScript of a model with dynamic int8 Linear layers: the traced model run on each
    utterance alone at its own length, logits padded with zeros to the longest, as asrc runs such
    a model (:meth:`asrc.models.Wav2Vec2CTC.forward`). Those layers quantize their input with a
    scale taken from the tensor at hand: run on a whole padded batch, the other utterances and
    the padding would change each utterance's logits."""

    def __init__(self, traced: nn.Module):
        super().__init__()
        self.model = traced

    def forward(self, wav: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        outs: List[Tensor] = []
        out_lengths: List[Tensor] = []
        for i in range(wav.shape[0]):
            n = int(lengths[i])
            logits, out_len = self.model(wav[i:i + 1, :n], lengths[i:i + 1])
            outs.append(logits[0])
            out_lengths.append(out_len)
        frames = 0
        for x in outs:
            frames = max(frames, x.shape[0])
        vocab = outs[0].shape[1] if len(outs) > 0 else 0
        logits = wav.new_zeros([len(outs), frames, vocab])
        for i, x in enumerate(outs):
            logits[i, :x.shape[0]] = x
        return logits, (torch.cat(out_lengths) if len(out_lengths) > 0 else lengths)


def runs_each_utterance(model: nn.Module) -> bool:
    """Whether exports of ``model`` run a batch one utterance at a time (:class:`EachUtterance`)."""
    return has_dynamic_int8(model)


@torch.inference_mode(False)
def export_torchscript(model: nn.Module, out_path) -> Path:
    """Trace ``model`` and save it with ``torch.jit.save``; load with ``torch.jit.load``. A model
    with dynamic int8 layers is saved as :class:`EachUtterance` (a scripted loop over the batch)."""
    out_path = check_out_path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    try:
        with torch.no_grad():
            wav, lengths = example_inputs(model)
            if runs_each_utterance(model):
                # It only ever sees one unpadded utterance: traced on one, the unmasked path.
                traced = torch.jit.script(EachUtterance(_trace(model.eval(), (wav[:1], lengths[:1]))))
            else:
                traced = _trace(model.eval(), (wav, lengths))
    finally:
        model.train(was_training)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    torch.jit.save(traced, str(tmp))
    os.replace(tmp, out_path)
    return out_path


class QDQConv1d(nn.Module):
    """The float form of an :class:`asrc.models.int8.Int8Conv1d` that ONNX export writes as QDQ:
    fake quantization with the int8 module's scales around a conv whose kernel is its int8 one."""

    def __init__(self, q: Int8Conv1d):
        super().__init__()
        conv = q.conv
        qweight = conv.weight()
        self.per_channel = qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        if self.per_channel:
            self.register_buffer("w_scale", qweight.q_per_channel_scales().float())
            self.register_buffer("w_zero", torch.zeros(len(self.w_scale), dtype=torch.int32))
        else:
            self.register_buffer("w_scale", torch.tensor(float(qweight.q_scale())))
        self.register_buffer("weight", qweight.dequantize())
        bias = q.bias()
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups
        self.in_qparams, self.out_qparams = q.input_qparams(), q.output_qparams()
        self.in_qmax = q.input_qmax

    def _weight(self) -> Tensor:
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(self.weight, self.w_scale, self.w_zero, 0, -128, 127)
        return torch.fake_quantize_per_tensor_affine(self.weight, float(self.w_scale), 0, -128, 127)

    def forward(self, x: Tensor) -> Tensor:
        # 7-bit input codes stop at 127 as in the int8 module (ONNX: QuantizeLinear, Clip, DequantizeLinear)
        x = torch.fake_quantize_per_tensor_affine(x, *self.in_qparams, 0, self.in_qmax)
        y = F.conv1d(x, self._weight(), self.bias, self.stride, self.padding, 1, self.groups)
        return torch.fake_quantize_per_tensor_affine(y, *self.out_qparams, 0, 255)


def qdq_twin(model: nn.Module) -> nn.Module:
    """A float copy of an asrc int8 model for QDQ export (module doc): :class:`QDQConv1d` for
    every static int8 conv, float ``nn.Linear`` (dequantized int8 weights) for every dynamic one."""
    import torch.ao.nn.quantized.dynamic as nnqd

    from asrc.models.quantized import set_module

    twin = copy.deepcopy(model).eval()
    twin.quantization = None
    for name, m in list(twin.named_modules()):
        if isinstance(m, Int8Conv1d):
            set_module(twin, name, QDQConv1d(m))
        elif isinstance(m, nnqd.Linear):
            linear = nn.Linear(m.in_features, m.out_features, bias=m.bias() is not None)
            with torch.no_grad():
                linear.weight.copy_(m.weight().dequantize())
                if m.bias() is not None:
                    linear.bias.copy_(m.bias())
            set_module(twin, name, linear)
    return twin


def _int32_conv_biases(path: Path) -> int:
    """Give every Conv fed by DequantizeLinear on both inputs an int32 bias behind its own
    DequantizeLinear (scale ``s_in * s_w``), the form onnxruntime fuses into QLinearConv.
    Returns the number of convs changed."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producer = {o: n for n in graph.node for o in n.output}

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    changed = 0
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 3 or not node.input[2]:
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        bias = value(node.input[2])
        if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear") or bias is None:
            continue
        s_in, s_w = value(x_dq.input[1]), value(w_dq.input[1])
        if s_in is None or s_w is None:
            continue
        scale = (np.float32(s_in) * s_w.astype(np.float32)).astype(np.float32).reshape(-1)
        if scale.size == 1:
            scale = np.full(bias.shape, scale[0], dtype=np.float32)
        qbias = np.round(bias.astype(np.float64) / scale).astype(np.int32)
        base = f"{node.name or node.output[0]}_bias"
        graph.initializer.extend([numpy_helper.from_array(qbias, base + "_int32"),
                                  numpy_helper.from_array(scale, base + "_scale"),
                                  numpy_helper.from_array(np.zeros(bias.shape, np.int32), base + "_zero")])
        dq = helper.make_node("DequantizeLinear", [base + "_int32", base + "_scale", base + "_zero"], [base + "_dq"],
                              name=base + "_DequantizeLinear", axis=0)
        graph.node.insert(list(graph.node).index(node), dq)
        node.input[2] = base + "_dq"
        changed += 1
    onnx.save(model, str(path))
    return changed


def onnx_int8_ops(path) -> Dict[str, int]:
    """Node counts by op type of the graph onnxruntime runs for ``path`` (after its optimisations,
    QDQ fusion included): ``QLinearConv`` and ``MatMulInteger``/``DynamicQuantizeMatMul`` are int8."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    counts: Dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@torch.inference_mode(False)
def export_onnx(model: nn.Module, out_path, *, int8: bool = False, opset: int = ONNX_OPSET) -> Path:
    """Export to ONNX: a float model as it is (``int8``: then quantized by onnxruntime), an asrc
    int8 model as QDQ (module doc)."""
    qdq = is_quantized(model)
    if qdq:
        per_frame = [n for n, m in model.named_modules() if isinstance(m, Int8Conv1d) and m.per_frame]
        if per_frame:
            raise AsrcError(f"ONNX export: the int8 convs {', '.join(per_frame)} quantize their input per frame "
                            f"(asrc-quantize --conv-activations per-frame), which asrc's QDQ export does not write; "
                            f"export a model quantized with --conv-activations per-tensor, or use TorchScript")
        model = qdq_twin(model)
        left = sorted({type(m).__name__ for m in model.modules() if type(m).__module__.startswith("torch.ao.nn")})
        if left:
            raise AsrcError(f"ONNX export: int8 modules {left} are not asrc.quant's (Int8Conv1d, dynamic Linear)")
        int8 = True
    out_path = check_out_path(out_path)
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
        if qdq:
            _int32_conv_biases(float_path)
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


def check_out_path(out_path) -> Path:
    """``out_path`` as a Path, or an :class:`AsrcError` naming it when it is a directory (the
    export would otherwise fail on its temporary file's name)."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise AsrcError(f"{out_path}: is a directory; give the path of the file to write (.onnx / .pt)")
    return out_path


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
# QDQ ONNX of an asrc int8 model vs that int8 model: the same int8 codes up to neighbouring-code
# rounding and the dynamic MatMul inputs' quantization; on a CPU without VNNI asrc quantizes those
# to 7 bits (exact there) against onnxruntime's 8, twice the rounding step on one side.
QDQ_MIN_COSINE = 0.999
QDQ_MIN_COSINE_7BIT = 0.997


def qdq_min_cosine() -> float:
    """The agreement a QDQ export must reach with asrc's int8 model on this CPU."""
    return QDQ_MIN_COSINE if cpu_has_vnni() else QDQ_MIN_COSINE_7BIT


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
    # TorchScript traces the plain modules, so it is held to them (one utterance at a time where
    # the export runs so, EachUtterance); ONNX (QDQ) to what asrc runs.
    with (plain_ops() if fmt == "torchscript" else contextlib.nullcontext()):
        if fmt == "torchscript" and runs_each_utterance(model):
            ref, ref_len = model.eval().forward_each(wav, lengths)  # each alone, plain ops (no recursion)
        else:
            ref, ref_len = model.eval()(wav, lengths)
    out, out_len = run_export(path, fmt)(wav, lengths)
    if out.shape != ref.shape or out_len.tolist() != ref_len.tolist():
        return {"ok": False, "message": f"{path}: output shape {tuple(out.shape)} lengths {out_len.tolist()} vs "
                                        f"PyTorch {tuple(ref.shape)} lengths {ref_len.tolist()}"}
    valid = torch.arange(ref.shape[1])[None, :] < ref_len[:, None]
    diff = (out - ref).abs()[valid].max().item()
    cosine = F.cosine_similarity(out[valid].flatten(), ref[valid].flatten(), dim=0).item()
    if fmt == "onnx" and is_quantized(model):
        limit = qdq_min_cosine()
        ok = cosine >= limit
        rule = f"QDQ vs asrc int8: cosine >= {limit}"
    elif int8:
        ok = cosine >= INT8_MIN_COSINE
        rule = f"cosine >= {INT8_MIN_COSINE}"
    else:
        ok = diff <= FLOAT_TOLERANCE
        rule = f"max |diff| <= {FLOAT_TOLERANCE}"
    verdict = "OK" if ok else "FAILED"
    # TorchScript is held to torch's modules (plain ops), not to asrc's CPU fast path, which
    # rounds differently (int8 models: its int8 CNN chain, 8-bit dynamic activations).
    against = "PyTorch (torch's modules, ASRC_FAST_PATH=0)" if fmt == "torchscript" else "PyTorch"
    return {"ok": ok, "max_abs_diff": diff, "cosine": cosine,
            "message": f"check {verdict}: {fmt} vs {against} on a padded batch of 3: max |logit diff| {diff:.3g}, "
                       f"cosine {cosine:.6f} (rule: {rule})"}
