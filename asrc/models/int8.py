"""Int8 modules that stand in for float ones in quantized models (:mod:`asrc.models.quantized`).

Each keeps the call signature of the module it replaces, so the model code runs unchanged:

``FoldedPositionalConv``
    :class:`asrc.models.wav2vec2.PositionalConv` with its weight norm computed once
    (``weight_g * weight_v / ||weight_v||``) into a plain ``nn.Conv1d`` kernel. Same output,
    no per-call norm, and a plain conv that static quantization and export understand.
``Int8Conv1d``
    ``nn.Conv1d`` with float input and output computed as quantize -> int8 conv -> dequantize
    (per-tensor affine uint8 activations, per-output-channel symmetric int8 weights, int32
    accumulation), with the activation scales fixed by calibration.
"""

import torch
import torch.ao.nn.quantized as nnq
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.quantization.observer import PerChannelMinMaxObserver

from asrc.models.wav2vec2 import PositionalConv


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
        y = self.conv(x.transpose(1, 2))
        if self.kernel % 2 == 0:  # padding k//2 on both sides of an even kernel gives one frame too many
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class Int8Conv1d(nn.Module):
    """Static int8 ``Conv1d`` with float input and output; ``x [batch, channel, frame]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        self.quant = nnq.Quantize(1.0, 0, torch.quint8)
        self.conv = nnq.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=padding,
                               groups=groups, bias=bias)

    @classmethod
    def from_float(cls, conv: nn.Conv1d, input_observer, output_observer) -> "Int8Conv1d":
        """Quantize ``conv`` with activation ranges from calibrated observers."""
        if conv.padding_mode != "zeros" or not isinstance(conv.padding, tuple):
            raise ValueError(f"Int8Conv1d supports zero padding of a fixed size, got {conv.padding_mode!r} "
                             f"padding={conv.padding!r}")
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0],
                conv.groups, conv.bias is not None)
        in_scale, in_zp = input_observer.calculate_qparams()
        out_scale, out_zp = output_observer.calculate_qparams()
        weight_observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        weight = conv.weight.detach().float()
        weight_observer(weight)
        w_scale, w_zp = weight_observer.calculate_qparams()
        qweight = torch.quantize_per_channel(weight, w_scale.double(), w_zp, 0, torch.qint8)
        bias = conv.bias.detach().float() if conv.bias is not None else None
        q.conv.set_weight_bias(qweight, bias)
        q.conv.scale = float(out_scale)
        q.conv.zero_point = int(out_zp)
        q.quant.scale.fill_(float(in_scale))
        q.quant.zero_point.fill_(int(in_zp))
        return q

    def weight(self) -> Tensor:
        """The int8 kernel, dequantized (for inspection and tests)."""
        return self.conv.weight().dequantize()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.quant(x)).dequantize()
