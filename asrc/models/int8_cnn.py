"""The int8 CNN front end run as one chain of int8 matrix products (CPU inference).

A ``static-conv`` / ``qat`` model (:mod:`asrc.models.quantized`) holds its CNN layers 2..N as
:class:`asrc.models.int8.Int8Conv1d`: each call quantizes its float input, runs torch's
quantized conv (which converts the layout to channels-last and back), dequantizes, and the
block applies GELU in float. On the wav2vec2-base front end those layout changes and float
round trips over the largest activations of the model cost more than the convolutions.

:class:`Int8ConvChain` computes the same layers without them:

* activations stay **8-bit codes, time-major and split by conv group** (``[group, frame,
  channels of the group]``) from the output of the first layer to the input of the last, so
  the input window of an output frame (``kernel`` consecutive frames of one group) is one
  contiguous run of bytes: a strided view, copied once per tile of frames, is the left operand
  of an int8 matrix product against the layer's kernel (rows: frame of the window x channel);
* **fused** (the default where torch has oneDNN's quantized linear, x86 builds): each product
  is ``torch.ops.onednn.qlinear_pointwise`` on the uint8 codes, with the per-channel scales,
  the bias, the GELU and the quantization to the next layer's codes inside the kernel (the last
  layer: float out). Unlike torch's quantized conv it does not round the conv output to uint8
  codes before the GELU, so it is slightly *closer* to the float model than the module path
  (``tests/quant/test_int8_cnn.py`` holds it to that);
* **exact** (elsewhere, and for 8-bit codes on a CPU without VNNI, where oneDNN's uint8 x int8
  sums saturate): int8 codes (uint8 codes ``u`` stored as ``u - 128``, exact since
  ``sum((u - zp) w) = sum((u - 128) w) + (128 - zp) sum(w)``) multiplied with the int8 kernel
  as float32 matrices: each product of codes is exact in float32 and so is every sum below
  2**24 in magnitude (beyond: a few units of the accumulator, far below one output code step);
  ``torch._int_mm`` computes the same but has no fast int8 x int8 kernel on AVX2 CPUs (far
  slower than the float product there). Then,
  while the tile is in cache, the module path's requantization: per-channel scale and bias,
  rounding and clamping to the output codes, dequantization, GELU, quantization to the next
  layer's codes. Equal to the module path up to float rounding at code boundaries;
* **per frame** (layers quantized with ``per_frame``, :class:`asrc.models.int8.Int8Conv1d`;
  fused form only): each output tile is quantized while in cache for the next layer, each frame
  of each of its groups over its own range, into 8-bit codes in the same layout plus one scale
  and zero point per frame and group (so a layer's output channels must cover whole groups of
  the next layer's input, as every asrc CNN's do). A window then mixes frames of different
  scales, so the conv is one oneDNN int8 matmul per kernel tap ``j`` (the codes of frames
  ``t * stride + j``, a strided view, against tap ``j`` of the kernel, weight scales inside:
  ``sum(u w) * s_w``), from which the frames' zero points are taken out (``- zp * sum(w) *
  s_w``, a rank-one update) before the taps are summed with the frames' scales; then the bias
  and the GELU, while the tile is in cache;
* the first (float) layer's per-channel normalisation (wav2vec2-base's group norm) is folded
  into its kernel for each utterance: the statistics of a linear conv's output follow from the
  mean and covariance of its input windows (``k x k``, cheap), so the layer is one float
  product per tile + GELU + quantization, and its float output is never written out whole.

It is what an int8 model runs on CPU when the inference fast path is on (module doc of
:mod:`asrc.models.wav2vec2`); :func:`asrc.models.wav2vec2.plain_ops`, exports and forward hooks
on the CNN's modules (calibration) get the modules.
"""

import functools
import weakref
from typing import List, Optional, Tuple

import torch
import torch.ao.nn.quantized as nnq
from torch import Tensor

_CHUNK_BYTES = 1 << 21  # float32 bytes of one output tile (rows x channels of a group): 2 MiB, the best of 0.25-8 on base


@functools.lru_cache(maxsize=None)
def cpu_has_vnni() -> bool:
    """True when this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI): its int8 dot products
    accumulate in 32 bits, so full 8-bit activations cannot saturate. Without it (AVX2 only,
    e.g. many AMD EPYC and older Xeon machines) u8 x s8 products are summed in pairs into int16
    and saturate once activation codes go past 127: 7-bit activations are exact there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni"})
    except OSError:
        pass
    return False


def saturation_free(input_qmax: int) -> bool:
    """Whether this CPU's int8 kernels (torch's quantized conv, oneDNN's matmul) compute exactly
    on uint8 input codes up to ``input_qmax``: always with VNNI (32-bit sums); without it (AVX2:
    u8 x s8 products summed in pairs into int16) only for 7-bit codes (``2 * 127 * 128 < 2**15``)."""
    return input_qmax <= 127 or cpu_has_vnni()


def clamp_codes_(codes: Tensor, qmax: int) -> Tensor:
    """uint8 activation codes clamped in place to ``qmax`` (7-bit activations: values past the
    calibrated range clip at code 127 as in fake quantization, not at 255)."""
    return codes if qmax >= 255 else codes.clamp_(max=qmax)


#: The smallest activation scale (torch's observers' eps).
_ACTIVATION_EPS = torch.finfo(torch.float32).eps


def affine_qparams(lo, hi, quant_max: int):
    """``(scale, zero_point)`` of uint8 per-tensor affine activations covering ``[lo, hi]``
    (widened to include 0), exactly as torch's ``MinMaxObserver`` computes them.

    ``lo``/``hi`` may be Python numbers (-> float, int) or tensors (-> tensors, for
    fake quantization on any device)."""
    if isinstance(lo, Tensor):
        lo_neg, hi_pos = lo.clamp(max=0.0), hi.clamp(min=0.0)
        scale = ((hi_pos - lo_neg) / float(quant_max)).clamp(min=_ACTIVATION_EPS)
        zero_point = (-torch.round(lo_neg / scale)).clamp(0, quant_max).to(torch.int32)
        return scale, zero_point
    lo_neg = torch.tensor(min(float(lo), 0.0), dtype=torch.float32)
    hi_pos = torch.tensor(max(float(hi), 0.0), dtype=torch.float32)
    scale, zero_point = affine_qparams(lo_neg, hi_pos, quant_max)
    return float(scale), int(zero_point)


def frame_qparams(x: Tensor, quant_max: int, dim: int) -> Tuple[Tensor, Tensor]:
    """Per-frame uint8 activation ``(scale, zero_point)`` (float tensors, ``dim`` kept with size 1):
    each frame's values along ``dim`` (the channels of a conv group) over their own range, widened
    to include 0 (:func:`affine_qparams`)."""
    lo, hi = x.amin(dim, keepdim=True), x.amax(dim, keepdim=True)  # faster than aminmax(dim) on CPU
    scale, zp = affine_qparams(lo, hi, quant_max)
    return scale, zp.float()


def _rows_per_chunk(channels: int) -> int:
    return max(64, _CHUNK_BYTES // (4 * max(1, channels)))


def weight_scales(w: Tensor) -> Tensor:
    """Float scales ``[out]`` of a qint8 weight, per output channel or its one per-tensor scale repeated."""
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return w.q_per_channel_scales().float().contiguous()
    return torch.full((w.shape[0],), float(w.q_scale()))


def window_weights(conv) -> Tuple[Tensor, Tensor, Tensor, List[slice]]:
    """The int8 kernel of an :class:`asrc.models.int8.Int8Conv1d` as rows over an input window:
    ``(codes [out, kernel x in/groups] int8, row j * in/groups + c for frame j of the window and
    channel c of the group; weight scales [out]; float bias [out], zeros without one; the
    output channels of each group)``."""
    w = conv.conv.weight()  # qint8 [out, in/groups, kernel], per-channel or per-tensor scales
    codes = w.int_repr()
    out_ch, in_g, k = codes.shape
    bias = conv.bias()
    bias = torch.zeros(out_ch) if bias is None else bias.detach().float()
    og = out_ch // conv.conv.groups
    return (codes.permute(0, 2, 1).reshape(out_ch, k * in_g), weight_scales(w), bias,
            [slice(g * og, (g + 1) * og) for g in range(conv.conv.groups)])


def onednn_group_weights(mats: Tensor, scales: Tensor, bias: Tensor, groups: List[slice]) -> list:
    """Per group, the arguments of ``torch.ops.onednn.qlinear_pointwise`` that describe its weights:
    ``(packed int8 weight, weight scales, weight zero points, bias)``."""
    return [(torch.ops.onednn.qlinear_prepack(mats[c].contiguous(), None), scales[c].contiguous(),
             torch.zeros(c.stop - c.start, dtype=torch.long), bias[c].contiguous()) for c in groups]


class _Layer:
    """One int8 conv layer (2..N) as the chain runs it: ``fused`` (oneDNN's packed weights) or
    exact (float32 kernel codes and the requantization's per-channel factors); activation
    codes stored as uint8 codes minus ``shift``."""

    def __init__(self, conv, next_conv, fused: bool, shift: int):
        q = conv.conv  # torch.ao.nn.quantized.Conv1d
        self.packed = q._packed_params  # identity of the weights the chain was built from
        self.kernel, self.stride, self.groups = q.kernel_size[0], q.stride[0], q.groups
        if q.padding[0] != 0 or q.dilation[0] != 1:
            raise ValueError("padding / dilation")
        mats, w_scale, bias, groups = window_weights(conv)
        self.out_channels = mats.shape[0]
        if conv.per_frame:  # one oneDNN matmul per group and kernel tap; zero points, scales, bias outside it
            self.next_qmax = None if next_conv is None else next_conv.input_qmax
            per = mats.shape[1] // self.kernel
            self.taps, self.correction = [], []
            for c in groups:
                zero = torch.zeros(c.stop - c.start, dtype=torch.long)
                taps, colsums = [], []
                for j in range(self.kernel):
                    w = mats[c, j * per:(j + 1) * per].contiguous()
                    taps.append((torch.ops.onednn.qlinear_prepack(w, None), w_scale[c].contiguous(), zero))
                    colsums.append(-(w.int().sum(1).float() * w_scale[c]))
                self.taps.append(taps)
                # [scale * zero point of each tap's frame..., 1] @ correction = the zero points' part + bias
                self.correction.append(torch.stack(colsums + [bias[c]]).contiguous())
            return
        in_scale, in_zp = conv.input_qparams()
        self.in_qparams = (float(in_scale), int(in_zp))
        self.next_qparams = None if next_conv is None else _stored_qparams(next_conv, shift)
        if fused:  # oneDNN's int8 matmul with scales, bias, GELU and output quantization inside
            self.fused = onednn_group_weights(mats, w_scale, bias, groups)
            return
        self.out_scale, out_zp = conv.output_qparams()
        self.weights = [mats[c].t().float().contiguous() for c in groups]
        # z = acc * alpha + beta is the conv output in units of the output scale
        s = in_scale * w_scale
        colsum = mats.int().sum(1).float()
        self.alpha = [(s[c] / self.out_scale).contiguous() for c in groups]
        self.beta = [(((128 - in_zp) * s[c] * colsum[c] + bias[c]) / self.out_scale).contiguous() for c in groups]
        # the quint8 output codes, relative to the zero point
        self.lo, self.hi = float(-out_zp), float(255 - out_zp)

    def out_frames(self, frames: int) -> int:
        return (frames - self.kernel) // self.stride + 1


def quint8_codes(q: Tensor) -> Tensor:
    """The uint8 codes of a quint8 tensor as a view of its storage (``int_repr()`` copies, at
    ~3x the cost of the quantization itself)."""
    return torch.empty(0, dtype=torch.uint8, device=q.device).set_(q.untyped_storage(), q.storage_offset(), q.shape,
                                                                   q.stride())


@functools.lru_cache(maxsize=None)
def fused_available() -> bool:
    """Whether this torch has oneDNN's quantized linear ops (x86 builds with mkldnn)."""
    ops = getattr(torch.ops, "onednn", None)
    try:
        return torch.backends.mkldnn.is_available() and ops is not None and hasattr(ops, "qlinear_pointwise") \
            and hasattr(ops, "qlinear_prepack")
    except (AttributeError, RuntimeError):
        return False


def _stored_qparams(conv, shift: int) -> Tuple[float, int, int]:
    """``(scale, zero point, largest code)`` of the input codes of ``conv`` as the chain stores
    them: quint8 codes ``u`` as ``u - shift``."""
    scale, zp = conv.input_qparams()
    return float(scale), int(zp) - shift, int(conv.input_qmax) - shift


class Int8ConvChain:
    """The CNN front end of an int8 model as one int8 chain; see the module doc.

    ``supported(extractor)`` says whether a :class:`asrc.models.wav2vec2.ConvFeatureExtractor`
    has the structure the chain runs: a float first layer (channel norm or none, GELU) and
    :class:`asrc.models.int8.Int8Conv1d` layers 2..N without norms, all quantized per tensor or
    all per frame (the latter only where the fused form runs).
    """

    def __init__(self, extractor, fused: Optional[bool] = None):
        blocks = list(extractor.conv_layers)
        first = blocks[0]
        self.k0, self.s0 = first.kernel, first.stride
        w0 = first.conv.weight.detach().float()  # [C0, 1, k0]
        self.w0 = w0[:, 0, :].contiguous()  # [C0, k0]
        self.b0 = None if first.conv.bias is None else first.conv.bias.detach().float()
        norm = first.norm
        self.norm = None if norm is None else (norm.weight.detach().float(), norm.bias.detach().float(), norm.eps)
        # fused: uint8 codes between layers, oneDNN's fused int8 matmul + GELU + quantization (the
        # conv output is not rounded to its uint8 codes before the GELU, as torch's quantized conv
        # must); exact: int8 codes (uint8 - 128) times the kernel's as float32 matrices (exact
        # sums on every CPU) and the module path's rounding
        self.fused = self.fusable(extractor) if fused is None else bool(fused)
        if self.fused and not fused_available():
            raise ValueError("oneDNN's quantized linear is not available in this torch build")
        convs = [b.conv for b in blocks[1:]]
        self.per_frame = bool(convs[0].per_frame)
        if self.per_frame and not self.fused:
            raise ValueError("per-frame int8 convs run in the fused form only")
        self.shift, self.dtype = (0, torch.uint8) if self.fused else (128, torch.int8)
        self.layers = [_Layer(c, convs[i + 1] if i + 1 < len(convs) else None, self.fused, self.shift)
                       for i, c in enumerate(convs)]
        self.first_qparams = convs[0].input_qmax if self.per_frame else _stored_qparams(convs[0], self.shift)

    @staticmethod
    def fusable(extractor) -> bool:
        """Whether the fused form runs ``extractor``'s layers exactly here: oneDNN's ops exist and
        their uint8 x int8 sums cannot saturate (7-bit input codes, or a CPU with VNNI)."""
        return fused_available() and all(saturation_free(b.conv.input_qmax) for b in list(extractor.conv_layers)[1:])

    @staticmethod
    def supported(extractor) -> bool:
        # Duck-typed (asrc.models.int8 and .wav2vec2 import this module): an Int8Conv1d holds a
        # quantized conv and its activation qparams; MaskedChannelNorm normalises per channel.
        blocks = list(extractor.conv_layers)
        if len(blocks) < 2 or type(blocks[0].conv) is not torch.nn.Conv1d or blocks[0].conv.in_channels != 1:
            return False
        if blocks[0].norm is not None and not getattr(blocks[0].norm, "per_channel_over_time", False):
            return False
        if not all(isinstance(getattr(b.conv, "conv", None), nnq.Conv1d) and hasattr(b.conv, "input_qparams")
                   and b.norm is None for b in blocks[1:]):
            return False
        per_frame = {bool(getattr(b.conv, "per_frame", False)) for b in blocks[1:]}
        if per_frame == {False}:
            return True
        # per frame: each layer's output groups cover whole input groups of the next (module doc)
        aligned = all((b.conv.conv.out_channels // b.conv.conv.groups) % (n.conv.conv.in_channels // n.conv.conv.groups)
                      == 0 for b, n in zip(blocks[1:-1], blocks[2:]))
        return per_frame == {True} and aligned and Int8ConvChain.fusable(extractor)

    def current(self, extractor) -> bool:
        """Whether the chain was built from the weights ``extractor`` holds now."""
        blocks = list(extractor.conv_layers)[1:]
        return len(blocks) == len(self.layers) and all(
            b.conv.conv._packed_params is layer.packed for b, layer in zip(blocks, self.layers))

    # ---- the first layer: float conv with its norm folded in ----
    def _first_layer(self, wav: Tensor, valid_samples: int) -> Tuple[Tensor, Tensor]:
        """``(windows [frames, k0 + 1], kernel [k0 + 1, C0])`` of the first layer for one
        utterance: the input windows less the mean of the valid samples, with a column of ones,
        and the kernel (norm folded in) with the bias as its last row, so that one product per
        tile gives the layer's output before its GELU (no bias broadcast, no strided copy). The
        norm's statistics come from the mean and covariance of the centred windows (``k0 x k0``)."""
        frames = (wav.shape[0] - self.k0) // self.s0 + 1
        valid_frames = max(0, (valid_samples - self.k0) // self.s0 + 1)
        centre = float(wav[:valid_samples].mean()) if valid_samples > 0 else 0.0
        windows = torch.empty(frames, self.k0 + 1)
        torch.sub(wav.as_strided((frames, self.k0), (self.s0, 1)), centre, out=windows[:, :self.k0])
        windows[:, self.k0] = 1.0
        w = self.w0.double()  # [C0, k0]
        b = 0.0 if self.b0 is None else self.b0.double()
        # conv(x) = conv(x - centre) + centre * sum(w): the offset joins the bias
        bias = b + centre * w.sum(1)
        if self.norm is not None:
            gamma, beta, eps = self.norm
            x = windows[:max(valid_frames, 1), :self.k0]
            n = x.shape[0]
            mean = x.sum(0).double() / n
            cov = (x.t() @ x).double() / n - torch.outer(mean, mean)
            mu = w @ mean + bias
            var = ((w @ cov) * w).sum(1).clamp(min=0.0)
            inv = gamma.double() * torch.rsqrt(var + eps)
            w = w * inv[:, None]
            bias = beta.double() + (bias - mu) * inv
        kernel = torch.cat([w.t(), bias[None]]).float()
        return windows, kernel.contiguous()

    def _run_one(self, wav: Tensor, valid_samples: int) -> Tensor:
        """One utterance ``[samples]`` -> features ``[frames, channels]`` (float)."""
        windows, kernel = self._first_layer(wav, valid_samples)
        frames = windows.shape[0]
        c0 = kernel.shape[1]
        first = self.layers[0]
        x = torch.empty(first.groups, frames, c0 // first.groups, dtype=self.dtype)
        if self.per_frame:  # the codes with their scales and zero points per group and frame
            x = (x, torch.empty(first.groups, frames), torch.empty(first.groups, frames))
        rows = _rows_per_chunk(c0)
        z_buf = torch.empty(rows, c0)
        for r in range(0, frames, rows):
            n = min(rows, frames - r)
            z = torch.mm(windows[r:r + n], kernel, out=z_buf[:n])
            torch.ops.aten.gelu_(z)
            self._store(x, z, r, 0, self.first_qparams)
        run = self._run_per_frame if self.per_frame else self._run_fused if self.fused else self._run_layer
        for i, layer in enumerate(self.layers):
            x = run(layer, x, self.layers[i + 1].groups if i + 1 < len(self.layers) else 0)
        return x

    def _store(self, x, z: Tensor, row: int, channel: int, qparams):
        """Quantize the float tile ``z`` (rows ``row..``, channels ``channel..``; overwritten) into
        ``x``, laid out ``[group, frame, channels of the group]`` for the layer that reads it."""
        if self.per_frame:  # qparams: the largest code
            self._store_frames(x, z, row, channel, qparams)
            return
        scale, zp, hi = qparams
        if self.shift == 0:  # uint8 codes: torch's vectorised quantization, its bytes viewed
            codes = quint8_codes(torch.quantize_per_tensor(z, scale, zp, torch.quint8))
            self._put(x, clamp_codes_(codes, hi), row, channel)
            return
        z.mul_(1.0 / scale).round_().add_(zp).clamp_(-self.shift, hi)
        self._put(x, z, row, channel)

    @staticmethod
    def _store_frames(x, z: Tensor, row: int, channel: int, qmax: int):
        """Per frame: ``x = (codes, scales, zero points)`` <- the float tile ``z`` (whole groups of
        channels), each frame of each group quantized over its own range (as
        :meth:`asrc.models.int8.Int8Conv1d.forward_per_frame`)."""
        codes, scales, zps = x
        per = codes.shape[2]
        n, width = z.shape
        for g in range(channel // per, (channel + width) // per):
            zg = z[:, g * per - channel:(g + 1) * per - channel]
            scale, zp = frame_qparams(zg, qmax, dim=1)  # [n, 1]
            # round(z / scale + zp): torch's vectorised quantization of the shifted values, its bytes viewed
            # (mul + add_ runs at twice the speed of addcmul with these broadcasts)
            shifted = torch.mul(zg, scale.reciprocal()).add_(zp)
            q = quint8_codes(torch.quantize_per_tensor(shifted, 1.0, 0, torch.quint8))
            codes[g, row:row + n].copy_(clamp_codes_(q, qmax))
            scales[g, row:row + n] = scale[:, 0]
            zps[g, row:row + n] = zp[:, 0]

    @staticmethod
    def _put(x: Tensor, z: Tensor, row: int, channel: int):
        """``x [group, frame, channels of the group]`` <- the tile ``z`` at rows ``row..``, channels ``channel..``."""
        _, _, per = x.shape
        n, width = z.shape
        for g in range(channel // per, (channel + width - 1) // per + 1):
            lo, hi = max(channel, g * per), min(channel + width, (g + 1) * per)
            x[g, row:row + n, lo - g * per:hi - g * per].copy_(z[:, lo - channel:hi - channel])

    @staticmethod
    def _tiles(layer: _Layer, x: Tensor, next_groups: int):
        """The output buffer of ``layer`` on ``x [group, frame, channels of the group]`` (the
        next layer's layout, or float ``[frame, channel]`` when ``next_groups`` is 0) and its
        input tiles: ``(group, first output frame, frames, windows [frames, kernel x channels])``."""
        _, frames, per = x.shape
        out_frames = layer.out_frames(frames)
        if next_groups:
            out = torch.empty(next_groups, out_frames, layer.out_channels // next_groups, dtype=x.dtype)
        else:
            out = torch.empty(out_frames, layer.out_channels)
        width = layer.kernel * per
        rows = min(_rows_per_chunk(layer.out_channels // layer.groups), out_frames)
        buf = torch.empty(rows, width, dtype=x.dtype)

        def tiles():
            for g in range(layer.groups):
                xg = x[g]
                for r in range(0, out_frames, rows):
                    n = min(rows, out_frames - r)
                    view = xg.as_strided((n, width), (layer.stride * per, 1),
                                         xg.storage_offset() + r * layer.stride * per)
                    # kernel == stride: the windows are the rows themselves, nothing to copy
                    yield g, r, n, view if view.is_contiguous() else buf[:n].copy_(view)

        return out, tiles()

    def _run_layer(self, layer: _Layer, x: Tensor, next_groups: int) -> Tensor:
        """Layer ``layer`` on ``x [group, frame, channels of the group]`` (int8 codes) -> the
        same layout for a next layer of ``next_groups`` groups, or float ``[frame, channel]``
        when ``next_groups`` is 0 (the last layer)."""
        og = layer.out_channels // layer.groups
        out, tiles = self._tiles(layer, x, next_groups)
        codes_buf = acc_buf = z_buf = None
        for g, r, n, a in tiles:
            if acc_buf is None:
                codes_buf = torch.empty(a.shape)
                acc_buf, z_buf = torch.empty(a.shape[0], og), torch.empty(a.shape[0], og)
            acc = torch.mm(codes_buf[:n].copy_(a), layer.weights[g], out=acc_buf[:n])
            z = torch.addcmul(layer.beta[g], acc, layer.alpha[g], out=z_buf[:n])
            z.round_().clamp_(layer.lo, layer.hi).mul_(layer.out_scale)
            self._emit(out, z, r, g * og, next_groups, layer.next_qparams)
        return out

    def _emit(self, out, z: Tensor, row: int, channel: int, next_groups: int, qparams):
        """GELU of the float output tile ``z`` (in place), then stored for the next layer
        (:meth:`_store`) or, after the last (``next_groups`` 0), written to the float output."""
        torch.ops.aten.gelu_(z)
        if next_groups:
            self._store(out, z, row, channel, qparams)
        else:
            out[row:row + z.shape[0], channel:channel + z.shape[1]] = z

    def _run_fused(self, layer: _Layer, x: Tensor, next_groups: int) -> Tensor:
        """:meth:`_run_layer` with oneDNN's fused int8 matmul on uint8 codes."""
        og = layer.out_channels // layer.groups
        out, tiles = self._tiles(layer, x, next_groups)
        (out_scale, out_zp, out_hi), out_dtype = ((layer.next_qparams, None) if next_groups
                                                  else ((1.0, 0, 255), torch.float32))
        in_scale, in_zp = layer.in_qparams
        for g, r, n, a in tiles:
            packed, w_scale, w_zp, bias = layer.fused[g]
            y = torch.ops.onednn.qlinear_pointwise(a, in_scale, in_zp, packed, w_scale, w_zp, bias, out_scale, out_zp,
                                                   out_dtype, "gelu", [], "none")
            if next_groups:
                self._put(out, clamp_codes_(y, out_hi), r, g * og)
            else:
                out[r:r + n, g * og:(g + 1) * og] = y
        return out

    def _run_per_frame(self, layer: _Layer, x, next_groups: int):
        """:meth:`_run_fused` for per-frame layers (module doc): ``x = (codes [group, frame, channels
        of the group], scales [group, frame], zero points [group, frame])`` -> the same for the next
        layer, or float ``[frame, channel]`` after the last; one int8 matmul per kernel tap."""
        codes, scale, zp = x
        groups, frames, per = codes.shape
        og = layer.out_channels // layer.groups
        out_frames = layer.out_frames(frames)
        if next_groups:
            per_next = layer.out_channels // next_groups
            out = (torch.empty(next_groups, out_frames, per_next, dtype=torch.uint8),
                   torch.empty(next_groups, out_frames), torch.empty(next_groups, out_frames))
        else:
            out = torch.empty(out_frames, layer.out_channels)
        rows = min(_rows_per_chunk(og), out_frames)
        step = layer.stride
        buf = torch.empty(rows, per, dtype=torch.uint8)
        k = layer.kernel
        sz_buf = torch.empty(rows, k + 1)
        sz_buf[:, k] = 1.0
        for g in range(groups):
            cg = codes[g]
            for r in range(0, out_frames, rows):
                n = min(rows, out_frames - r)
                acc = None
                sz = sz_buf[:n]
                for j, (packed, w_scale, w_zp) in enumerate(layer.taps[g]):
                    first = r * step + j  # input frames first, first + step, ... feed tap j
                    view = cg.as_strided((n, per), (step * per, 1), cg.storage_offset() + first * per)
                    a = view if view.is_contiguous() else buf[:n].copy_(view)
                    # sum over the frame's channels of u * w * s_w (x_scale 1, zero point 0: the codes as they are)
                    y = torch.ops.onednn.qlinear_pointwise(a, 1.0, 0, packed, w_scale, w_zp, None, 1.0, 0,
                                                           torch.float32, "none", [], "")
                    s_rows = scale[g, first:first + step * n:step]
                    torch.mul(s_rows, zp[g, first:first + step * n:step], out=sz[:, j])
                    acc = y.mul_(s_rows[:, None]) if acc is None else acc.addcmul_(y, s_rows[:, None])
                acc.addmm_(sz, layer.correction[g])  # - sum_j scale * zp * sum(w) * s_w + bias
                self._emit(out, acc, r, g * og, next_groups, layer.next_qmax)
        return out

    def __call__(self, wav: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """``wav [batch, samples]`` (float32, CPU) -> features ``[batch, channels, frames]``."""
        feats = []
        for i in range(wav.shape[0]):
            valid = wav.shape[1] if lengths is None else int(lengths[i])
            feats.append(self._run_one(wav[i].contiguous(), valid))
        out = feats[0].unsqueeze(0) if len(feats) == 1 else torch.stack(feats)
        return out.transpose(1, 2)


# extractor -> its chain; outside the module: copies and pickles of a model do not carry
# oneDNN's packed weights, and the chain is no part of the state dict
_CHAINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def hooked(module) -> bool:
    """Whether a forward hook watches ``module`` or one of its submodules (or every module: a
    global hook). Hooks observe the modules' inputs and outputs (calibration), so a fast form
    that bypasses the modules must not run then."""
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def cached_fast_form(cache: "weakref.WeakKeyDictionary", module, current, supported, build):
    """The fast form ``build(module)`` of ``module``, kept in ``cache`` while ``current(form)``
    holds (it was built from the weights the module holds now); None when ``module`` is hooked
    or not ``supported(module)``."""
    if hooked(module):
        return None
    form = cache.get(module)
    if form is not None and current(form):
        return form
    if not supported(module):
        return None
    form = build(module)
    cache[module] = form
    return form


def int8_chain(extractor) -> Optional[Int8ConvChain]:
    """The (cached) chain of ``extractor``, or None when its structure is not one the chain runs
    or a forward hook watches one of its modules."""
    return cached_fast_form(_CHAINS, extractor,
                            lambda chain: chain.current(extractor) and chain.fused == Int8ConvChain.fusable(extractor)
                            and chain.per_frame == bool(extractor.conv_layers[1].conv.per_frame),
                            Int8ConvChain.supported, Int8ConvChain)


__all__ = ["Int8ConvChain", "affine_qparams", "cached_fast_form", "frame_qparams", "hooked", "int8_chain",
           "onednn_group_weights", "window_weights"]
