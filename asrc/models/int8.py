"""Int8 modules that stand in for float ones in quantized models (:mod:`asrc.models.quantized`).

Each keeps the call signature of the module it replaces, so the model code runs unchanged:

``FoldedPositionalConv``
    :class:`asrc.models.wav2vec2.PositionalConv` with its weight norm computed once
    (``weight_g * weight_v / ||weight_v||``) into a plain ``nn.Conv1d`` kernel. Same output,
    no per-call norm, and a plain conv that static quantization and export understand.
``Int8Conv1d``
    ``nn.Conv1d`` with float input and output computed as quantize -> int8 conv -> dequantize
    (per-tensor affine uint8 activations, symmetric int8 weights per output channel or per
    tensor, int32 accumulation), with the activation scales fixed by calibration or learned in
    quantization-aware training. Its input codes stop at ``input_qmax`` (127 for 7-bit
    activations, 255 for 8-bit), so that no CPU can saturate on them (:meth:`Int8Conv1d.forward`).
    With ``per_frame`` its input is quantized per frame instead: each frame's channels of each
    conv group get their own uint8 range, taken from the frame itself on every call, so that a
    quiet stretch of an utterance keeps as many codes as a loud one
    (:meth:`Int8Conv1d.forward_per_frame`; no calibrated input range, float output).

The quantization parameters follow torch's observers exactly (:func:`affine_qparams`,
:func:`symmetric_weight_scale`), so that a fake-quantized float module using the same functions
(:mod:`asrc.quant.qat`, the ONNX QDQ export) computes what the int8 module computes, up to the
rounding of int32 accumulation and requantization.
"""

import logging
import weakref
from typing import Dict, Optional, Tuple

import torch
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.models.int8_cnn import (affine_qparams, cached_fast_form, clamp_codes_, cpu_has_vnni, frame_qparams,
                                  fused_available, onednn_group_weights, quint8_codes, saturation_free, weight_scales,
                                  window_weights)
from asrc.models.wav2vec2 import PositionalConv, _inference_fast_path

logger = logging.getLogger(__name__)

#: int8 weights: symmetric, zero point 0, range [-128, 127] (torch's ``qint8`` observers).
WEIGHT_QMIN, WEIGHT_QMAX = -128, 127
_EPS = torch.finfo(torch.float32).eps


def activation_qmax(reduce_range: bool) -> int:
    """Largest uint8 activation code: 127 with 7-bit activations (CPUs without VNNI), else 255."""
    return 127 if reduce_range else 255


def symmetric_weight_scale(weight: Tensor, per_channel: bool = True) -> Tensor:
    """Scales of symmetric int8 weights (``max|w| / 127.5``, torch's ``qint8`` symmetric observers):
    one per output channel (dim 0) ``[out]``, or one ``[]`` for the whole tensor."""
    w = weight.detach()
    amax = w.abs().flatten(1).amax(1) if per_channel else w.abs().amax()
    return (amax / ((WEIGHT_QMAX - WEIGHT_QMIN) / 2)).clamp(min=_EPS).float()


def quantize_weight(weight: Tensor, per_channel: bool = True) -> Tensor:
    """The int8 tensor (``torch.qint8``) of a conv kernel ``[out, in/groups, kernel]``."""
    weight = weight.detach().float().cpu()
    scale = symmetric_weight_scale(weight, per_channel)
    if per_channel:
        return torch.quantize_per_channel(weight, scale.double(), torch.zeros(len(scale), dtype=torch.long), 0,
                                          torch.qint8)
    return torch.quantize_per_tensor(weight, float(scale), 0, torch.qint8)


class FoldedPositionalConv(nn.Module):
    """Grouped "same" conv over time + GELU; ``x [batch, frame, embed_dim]`` -> same shape."""

    def __init__(self, embed_dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(embed_dim, embed_dim, kernel, padding=kernel // 2, groups=groups)

    @classmethod
    def from_positional_conv(cls, pos_conv: PositionalConv) -> "FoldedPositionalConv":
        embed_dim = pos_conv.weight_v.shape[0]
        folded = cls(embed_dim, pos_conv.kernel, pos_conv.groups)
        with torch.no_grad():
            folded.conv.weight.copy_(pos_conv.weight())
            folded.conv.bias.copy_(pos_conv.bias)
        return folded

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.conv, Int8Conv1d) and _inference_fast_path(self, x) and x.numel() > 0:
            gemm = _pos_conv_gemm(self.conv)
            if gemm is not None:
                return gemm(x)
        y = self.conv(x.transpose(1, 2))
        if self.kernel % 2 == 0:  # padding k//2 on both sides of an even kernel gives one frame too many
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class Int8Conv1d(nn.Module):
    """Static int8 ``Conv1d`` with float input and output; ``x [batch, channel, frame]``.

    ``input_qmax`` (127: 7-bit activations, 255: 8-bit) is the largest input code; it is part of
    the model's ``quantization.yaml`` (``activation_reduce_range``), not of its state dict; so is
    ``per_frame`` (``per_frame_int8_conv``: the input quantized per frame, module doc)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = True, input_qmax: int = 255, per_frame: bool = False):
        super().__init__()
        self.quant = nnq.Quantize(1.0, 0, torch.quint8)
        self.conv = nnq.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=padding,
                               groups=groups, bias=bias)
        self.input_qmax = int(input_qmax)
        self.per_frame = bool(per_frame)

    @classmethod
    def from_float(cls, conv: nn.Conv1d, input_observer, output_observer) -> "Int8Conv1d":
        """Quantize ``conv`` with activation ranges from calibrated observers (per-channel weights)."""
        in_scale, in_zp = input_observer.calculate_qparams()
        out_scale, out_zp = output_observer.calculate_qparams()
        return cls.from_qparams(conv, (float(in_scale), int(in_zp)), (float(out_scale), int(out_zp)),
                                input_qmax=int(input_observer.quant_max))

    @classmethod
    def from_qparams(cls, conv: nn.Conv1d, input_qparams, output_qparams, per_channel: bool = True,
                     weight: Tensor = None, bias: Tensor = None, input_qmax: int = 255,
                     per_frame: bool = False) -> "Int8Conv1d":
        """Quantize ``conv`` with activation ``(scale, zero_point)`` pairs given (input codes up to
        ``input_qmax``); ``weight`` / ``bias`` replace the conv's own (a folded kernel, a corrected bias);
        ``per_frame``: the input quantized per frame (the input pair is then kept but unused)."""
        if conv.padding_mode != "zeros" or not isinstance(conv.padding, tuple):
            raise ValueError(f"Int8Conv1d supports zero padding of a fixed size, got {conv.padding_mode!r} "
                             f"padding={conv.padding!r}")
        weight = conv.weight if weight is None else weight
        bias = conv.bias if bias is None else bias
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0],
                conv.groups, bias is not None, input_qmax, per_frame)
        q.set_weight_bias(weight, bias, per_channel)
        q.conv.scale = float(output_qparams[0])
        q.conv.zero_point = int(output_qparams[1])
        q.quant.scale.fill_(float(input_qparams[0]))
        q.quant.zero_point.fill_(int(input_qparams[1]))
        return q

    def set_weight_bias(self, weight: Tensor, bias, per_channel: bool = True):
        """Quantize the float ``weight`` (symmetric int8) and set it with a float ``bias`` (or None)."""
        self.conv.set_weight_bias(quantize_weight(weight, per_channel),
                                  None if bias is None else bias.detach().float().cpu())

    def input_qparams(self):
        return float(self.quant.scale), int(self.quant.zero_point)

    def output_qparams(self):
        return float(self.conv.scale), int(self.conv.zero_point)

    def bias(self):
        return self.conv.bias()

    def set_bias(self, bias: Tensor):
        """Replace the float bias, keeping the int8 kernel as it is."""
        self.conv.set_weight_bias(self.conv.weight(), bias.detach().float().cpu())

    def weight(self) -> Tensor:
        """The int8 kernel, dequantized (for inspection and tests)."""
        return self.conv.weight().dequantize()

    def forward(self, x: Tensor) -> Tensor:
        if self.per_frame:
            return self.forward_per_frame(x)
        if self.input_qmax < 255:  # in float, so that traced exports keep it
            scale, zp = self.input_qparams()
            x = x.clamp(max=(self.input_qmax - zp) * scale)
        q = self.quant(x)
        if saturation_free(self.input_qmax) and torch_conv_is_exact(self.conv, self.input_qmax):
            return self.conv(q).dequantize()
        return self._emulated(q)

    def forward_per_frame(self, x: Tensor) -> Tensor:
        """The conv with its input quantized per frame: each frame's channels of each group to
        uint8 codes over their own range (:func:`frame_qparams`, codes up to ``input_qmax``), then
        the conv of those values with the int8 kernel, in float; float output, not rounded to
        output codes. The reference of the CPU path's per-frame chain (:mod:`asrc.models.int8_cnn`),
        which computes the same sums with oneDNN's int8 matmul, one per kernel tap."""
        c = self.conv
        batch, channels, frames = x.shape
        groups = c.groups
        xg = x.float().reshape(batch, groups, channels // groups, frames)
        scale, zp = frame_qparams(xg, self.input_qmax, dim=2)
        xq = ((torch.round(xg / scale) + zp).clamp_(0, self.input_qmax) - zp) * scale
        kernel, bias = self._float_kernel()  # the int8 kernel dequantized, the float bias
        return F.conv1d(xq.reshape(batch, channels, frames), kernel, bias, c.stride, c.padding, c.dilation, groups)

    def _emulated(self, q: Tensor) -> Tensor:
        """The int8 conv on quint8 input ``q`` in float (8-bit codes on a CPU without VNNI, whose
        int8 kernels would saturate, and geometries torch's kernel gets wrong on this CPU,
        :func:`torch_conv_is_exact`): the codes' values against the int8 kernel's, then the
        output's requantization. Equal to the int8 conv up to float32 rounding of the sums."""
        c = self.conv
        weight, bias = self._float_kernel()
        y = F.conv1d(q.dequantize(), weight, bias, c.stride, c.padding, c.dilation, c.groups)
        return torch.quantize_per_tensor(y, float(c.scale), int(c.zero_point), torch.quint8).dequantize()

    def _float_kernel(self) -> Tuple[Tensor, Optional[Tensor]]:
        """The int8 kernel dequantized and the float bias, cached while the packed weights stay
        (outside the module, as the other fast forms); computed untraced, so that a TorchScript
        trace holds them as constants (torch's unpack op has no traced form)."""
        packed = self.conv._packed_params
        cached = _FLOAT_KERNELS.get(self)
        if cached is None or cached[0] is not packed:
            state = torch._C._get_tracing_state()
            torch._C._set_tracing_state(None)
            try:
                bias = self.bias()
                cached = (packed, self.weight(), None if bias is None else bias.detach().float())
            finally:
                torch._C._set_tracing_state(state)
            _FLOAT_KERNELS[self] = cached
        return cached[1], cached[2]


_FLOAT_KERNELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

#: torch_conv_is_exact's verdicts, by engine and conv geometry.
_CONV_CHECKS: Dict[tuple, bool] = {}


def torch_conv_is_exact(conv: nnq.Conv1d, input_qmax: int = 255) -> bool:
    """Whether torch's int8 conv computes ``conv``'s geometry right on this CPU with its engine.

    Not a given: on an Intel Xeon with AMX (torch 2.9.1, engine ``x86`` or ``onednn``; ``fbgemm``
    is right) grouped convs with fewer than 32 input channels per group and a long kernel (16,
    128: the positional conv of a narrow or tiny model) came out hundreds of output codes off,
    with 7-bit and 8-bit input codes alike. So, once per geometry and process, a random int8 conv
    of that geometry (random weights and input codes up to ``input_qmax``) is run and compared
    with the same int8 arithmetic in float64; a kernel more than one output code off is not used
    (:meth:`Int8Conv1d._emulated` computes the same arithmetic in float) and a warning says so."""
    key = (torch.backends.quantized.engine, conv.in_channels, conv.out_channels, conv.kernel_size[0],
           conv.stride[0], conv.padding[0], conv.dilation[0], conv.groups, int(input_qmax))
    verdict = _CONV_CHECKS.get(key)
    if verdict is None:
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)  # a check, not part of a traced graph
        try:
            with torch.inference_mode():
                worst = _conv_kernel_error(*key[1:])
        finally:
            torch._C._set_tracing_state(state)
        verdict = _CONV_CHECKS[key] = worst <= 1
        if not verdict:
            logger.warning("torch's int8 conv kernel (engine %s) is wrong on this CPU for a conv of %d -> %d channels, "
                           "kernel %d, %d groups (%d output codes off on a random test): asrc computes that conv's "
                           "int8 arithmetic in float instead (same results, slower)", key[0], key[1], key[2], key[3],
                           key[7], worst)
    return verdict


def _conv_kernel_error(cin: int, cout: int, kernel: int, stride: int, padding: int, dilation: int, groups: int,
                       input_qmax: int) -> int:
    """The largest difference, in output codes, between torch's int8 conv and exact int8 arithmetic
    on random weights and input codes (a fixed seed) of this geometry."""
    gen = torch.Generator().manual_seed(0)
    frames = max(4 * kernel * dilation + 8 * stride, 64)
    weight = torch.randn(cout, cin // groups, kernel, generator=gen)
    qweight = torch.quantize_per_channel(weight, weight.abs().amax((1, 2)) / 127, torch.zeros(cout, dtype=torch.long),
                                         0, torch.qint8)
    zp, scale = input_qmax // 2, 1.0 / 64
    codes = torch.randint(0, input_qmax + 1, (1, cin, frames), generator=gen)
    x = torch.quantize_per_tensor(((codes - zp) * scale).float(), scale, zp, torch.quint8)
    exact = F.conv1d(x.dequantize().double(), qweight.dequantize().double(), None, stride, padding, dilation, groups)
    lo, hi = min(float(exact.min()), 0.0), max(float(exact.max()), 0.0)
    out_scale = max((hi - lo) / 255, 1e-8)
    out_zp = min(max(int(round(-lo / out_scale)), 0), 255)
    q = nnq.Conv1d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False)
    q.set_weight_bias(qweight, None)
    q.scale, q.zero_point = out_scale, out_zp
    got = q(x).int_repr().long()
    want = torch.quantize_per_tensor(exact.float(), out_scale, out_zp, torch.quint8).int_repr().long()
    return int((got - want).abs().max())


class _PosConvGemm:
    """The int8 positional conv (a "same" grouped conv over time, stride 1, + GELU) of
    :class:`FoldedPositionalConv` as one oneDNN int8 matmul per group, on CPU when the inference
    fast path is on: the input quantized once to 8-bit codes laid out ``[group, frame, channels
    of the group]`` with the padding frames at the zero point, so that the input window of an
    output frame is a contiguous run of bytes and the windows of a group are an overlapping
    strided view of them (torch's op lays it out in C++: no im2col in Python, no float copy of
    the input); the per-channel scales, bias and GELU are inside the kernel,
    the float output comes out time-major. torch's quantized conv converts the layout to
    channels-last and back and rounds the conv output to its 8-bit codes before the GELU; this
    path does not (as :mod:`asrc.models.int8_cnn`), so it is slightly closer to the float model.
    """

    def __init__(self, conv: "Int8Conv1d"):
        q = conv.conv
        self.packed_from = q._packed_params
        self.kernel, self.groups, self.pad = q.kernel_size[0], q.groups, q.padding[0]
        self.per = q.in_channels // q.groups
        self.in_scale, self.in_zp = conv.input_qparams()
        self.in_qmax = conv.input_qmax
        self.weights = onednn_group_weights(*window_weights(conv))

    @staticmethod
    def supported(conv: "Int8Conv1d") -> bool:
        q = conv.conv
        k = q.kernel_size[0]
        return (q.stride[0] == 1 and q.dilation[0] == 1 and q.padding[0] == k // 2 and q.in_channels == q.out_channels
                and q.padding_mode == "zeros")

    def __call__(self, x: Tensor) -> Tensor:
        """``x [batch, frame, channel]`` (float) -> ``gelu(conv(x))`` of the same shape."""
        b, t, c = x.shape
        k, pad, per = self.kernel, self.pad, self.per
        codes = quint8_codes(torch.quantize_per_tensor(x.contiguous(), self.in_scale, self.in_zp, torch.quint8))
        clamp_codes_(codes, self.in_qmax)
        # [batch, group, pad + frame + the rest of the last window, per]; the last window of an
        # even kernel reaches one frame beyond the padding, which the "same" length drops
        padded = torch.full((b, self.groups, t + k, per), self.in_zp, dtype=torch.uint8)
        padded[:, :, pad:pad + t].copy_(codes.view(b, t, self.groups, per).transpose(1, 2))
        out = torch.empty(b, t, c)
        for i in range(b):
            for g, (packed, scales, zero, bias) in enumerate(self.weights):
                xg = padded[i, g]
                windows = xg.as_strided((t, k * per), (per, 1), xg.storage_offset())
                out[i, :, g * per:(g + 1) * per] = torch.ops.onednn.qlinear_pointwise(
                    windows, self.in_scale, self.in_zp, packed, scales, zero, bias, 1.0, 0, torch.float32, "gelu", [],
                    "none")
        return out


_POS_CONV: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _pos_conv_gemm(conv: "Int8Conv1d"):
    """The cached :class:`_PosConvGemm` of ``conv``; None where oneDNN's ops are missing or would
    saturate (8-bit codes without VNNI), the conv is not a "same" stride-1 conv, or a forward hook
    watches it (calibration)."""
    if not fused_available() or not saturation_free(conv.input_qmax):
        return None
    return cached_fast_form(_POS_CONV, conv, lambda gemm: gemm.packed_from is conv.conv._packed_params,
                            _PosConvGemm.supported, _PosConvGemm)


_ONEDNN_LINEAR: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _dynamic_qparams(lo: float, hi: float) -> Tuple[float, int]:
    """:func:`affine_qparams` in plain Python (no tensor ops: this runs per call): 8-bit codes,
    7-bit on a CPU without VNNI, where oneDNN's u8 x s8 products saturate past code 127
    (measured: 1 % relative error on random data with 8-bit codes, exact with 7-bit)."""
    qmax = activation_qmax(not cpu_has_vnni())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / qmax, _EPS)
    return scale, min(max(int(round(-lo / scale)), 0), qmax)


class DynamicInt8Linear(nnqd.Linear):
    """torch's dynamic int8 ``Linear`` (same weights, same state dict) that runs, on CPU when the
    inference fast path is on, as oneDNN's int8 matmul: the input quantized per tensor to 8-bit
    codes on the fly, the int8 weights with their per-channel scales, the float output produced
    by the kernel (:meth:`forward_gelu`: with the GELU applied inside it too).

    Why: fbgemm's dynamic Linear with per-channel weights (asrc's, for accuracy) ran 1.5-1.8x
    slower than with per-tensor weights on the wav2vec2-base shapes (500 x 768 -> 768 / 3072),
    and its 7-bit activations (``reduce_range``) cost accuracy; oneDNN's kernel with per-channel
    weights runs as fast as fbgemm's per-tensor one, with 8-bit activations. Exports and
    :func:`asrc.models.wav2vec2.plain_ops` run torch's module as it is.
    """

    def _onednn_weights(self):
        """(packed weight, weight scales, weight zero points, bias, packed-from), cached outside
        the module (copies and pickles of the module do not carry oneDNN's packed tensor)."""
        packed = self._packed_params._packed_params
        cached = _ONEDNN_LINEAR.get(self)
        if cached is not None and cached[4] is packed:
            return cached
        w, b = self._weight_bias()
        scales = weight_scales(w)
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        bias = None if b is None else b.detach().float().contiguous()
        cached = (torch.ops.onednn.qlinear_prepack(w.int_repr().contiguous(), None), scales, zero, bias, packed)
        _ONEDNN_LINEAR[self] = cached
        return cached

    def int8_fast(self, x: Tensor) -> bool:
        """Whether a call on ``x`` runs oneDNN's kernel (:meth:`quantize_input`, :meth:`forward_codes`)."""
        return (self._packed_params.dtype == torch.qint8 and _inference_fast_path(self, x) and x.numel() > 0
                and fused_available())

    @staticmethod
    def quantize_input(x2: Tensor) -> Tuple[Tensor, float, int]:
        """``(uint8 codes, scale, zero point)`` of a float ``[rows, features]`` input, per tensor
        over its range (what every fast call does; layers whose linears share an input quantize
        it once)."""
        lo, hi = torch.aminmax(x2)
        scale, zp = _dynamic_qparams(float(lo), float(hi))
        return quint8_codes(torch.quantize_per_tensor(x2, scale, zp, torch.quint8)), scale, zp

    def forward_codes(self, quantized: Tuple[Tensor, float, int], post_op: str = "none",
                      residual: Tensor = None) -> Tensor:
        """The float ``[rows, out]`` output on a :meth:`quantize_input` result, with ``post_op``
        ("none" / "gelu") and ``+ residual`` (float ``[rows, out]``) inside the kernel."""
        codes, scale, zp = quantized
        packed, scales, zero, bias, _ = self._onednn_weights()
        algorithm = "none" if post_op == "gelu" else ""
        if residual is None:
            return torch.ops.onednn.qlinear_pointwise(codes, scale, zp, packed, scales, zero, bias, 1.0, 0,
                                                      torch.float32, post_op, [], algorithm)
        return torch.ops.onednn.qlinear_pointwise.binary(codes, scale, zp, packed, scales, zero, residual, bias, 1.0,
                                                         0, torch.float32, 1.0, 0, "add", 1.0, post_op, [], algorithm)

    def _onednn_forward(self, x: Tensor, post_op: str) -> Tensor:
        shape = x.shape
        y = self.forward_codes(self.quantize_input(x.reshape(-1, shape[-1])), post_op)
        return y.reshape(*shape[:-1], y.shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        if self.int8_fast(x):
            return self._onednn_forward(x, "none")
        return super().forward(x)

    def forward_gelu(self, x: Tensor) -> Tensor:
        """``gelu(self(x))``, the GELU inside the int8 kernel on the fast path."""
        if self.int8_fast(x):
            return self._onednn_forward(x, "gelu")
        return F.gelu(super().forward(x))
